"""Thumbnails made and failed fetches (SQLite): `thumbs`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from aggregator.plan import to_micros
from aggregator.store.rows import thumbnails_due
from aggregator.store.sqlite.db import Database


class SqliteThumbnails:
    """`ThumbnailStore` on the state file."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def thumbnails(self, urls: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(urls))
        with self._db.reading():
            select = "SELECT url, file FROM thumbs WHERE file IS NOT NULL AND url IN"
            return dict(self._db.in_chunks(select, wanted))

    def thumbnails_due(self, urls: Iterable[str], now: datetime, limit: int) -> list[str]:
        wanted = list(dict.fromkeys(urls))
        with self._db.reading():
            select = "SELECT url, file, next_try_us FROM thumbs WHERE url IN"
            known: dict[str, tuple[str | None, int]] = {
                url: (file, next_try) for url, file, next_try in self._db.in_chunks(select, wanted)
            }
        return thumbnails_due(wanted, known, to_micros(now), limit)

    def keep_thumbnail(self, url: str, file: str) -> None:
        with self._db.writing() as db:
            db.execute(
                "INSERT OR REPLACE INTO thumbs (url, file, tries, next_try_us, detail)"
                " VALUES (?, ?, 0, 0, '')",
                (url, file),
            )

    def thumbnail_tries(self, urls: Sequence[str]) -> dict[str, int]:
        tries = dict.fromkeys(urls, 0)
        with self._db.reading():
            select = "SELECT url, tries FROM thumbs WHERE url IN"
            for url, count in self._db.in_chunks(select, urls):
                tries[url] = count
        return tries

    def thumbnail_failed(self, url: str, detail: str, tries: int, next_try: datetime) -> None:
        with self._db.writing() as db:
            db.execute(
                "INSERT OR REPLACE INTO thumbs (url, file, tries, next_try_us, detail)"
                " VALUES (?, NULL, ?, ?, ?)",
                (url, tries, to_micros(next_try), detail[:300]),
            )

    def forget_thumbnails_of(self, urls: Sequence[str]) -> None:
        with self._db.writing() as db:
            db.executemany("DELETE FROM thumbs WHERE url = ?", [(u,) for u in urls])

    def forget_thumbnails(self, keep_files: Iterable[str], wanted: Iterable[str]) -> None:
        kept, still = set(keep_files), set(wanted)
        with self._db.writing() as db:
            gone = [
                url
                for url, file in db.execute("SELECT url, file FROM thumbs")
                if (file is not None and file not in kept) or (file is None and url not in still)
            ]
            db.executemany("DELETE FROM thumbs WHERE url = ?", [(u,) for u in gone])
