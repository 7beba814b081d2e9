"""Thumbnails made and failed fetches (PostgreSQL): `thumbs`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from aggregator.plan import to_micros
from aggregator.store.postgres.db import Database
from aggregator.store.rows import thumbnails_due

_KEEP = (
    "INSERT INTO thumbs (url, file, tries, next_try_us, detail) VALUES (%s, %s, %s, %s, %s)"
    " ON CONFLICT (url) DO UPDATE SET file = excluded.file, tries = excluded.tries,"
    " next_try_us = excluded.next_try_us, detail = excluded.detail"
)


class PostgresThumbnails:
    """`ThumbnailStore` on the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def thumbnails(self, urls: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(urls))
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT url, file FROM thumbs WHERE file IS NOT NULL AND url = ANY(%s)", (wanted,)
            )
            return {url: file for url, file in rows}

    def thumbnails_due(self, urls: Iterable[str], now: datetime, limit: int) -> list[str]:
        wanted = list(dict.fromkeys(urls))
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT url, file, next_try_us FROM thumbs WHERE url = ANY(%s)", (wanted,)
            )
            known: dict[str, tuple[str | None, int]] = {
                url: (file, next_try) for url, file, next_try in rows
            }
        return thumbnails_due(wanted, known, to_micros(now), limit)

    def keep_thumbnail(self, url: str, file: str) -> None:
        with self._db.writing() as db:
            db.execute(_KEEP, (url, file, 0, 0, ""))

    def thumbnail_tries(self, urls: Sequence[str]) -> dict[str, int]:
        tries = dict.fromkeys(urls, 0)
        with self._db.reading() as db:
            rows = db.execute("SELECT url, tries FROM thumbs WHERE url = ANY(%s)", (list(urls),))
            for url, count in rows:
                tries[url] = count
        return tries

    def thumbnail_failed(self, url: str, detail: str, tries: int, next_try: datetime) -> None:
        with self._db.writing() as db:
            db.execute(_KEEP, (url, None, tries, to_micros(next_try), detail[:300]))

    def forget_thumbnails_of(self, urls: Sequence[str]) -> None:
        with self._db.writing() as db:
            db.execute("DELETE FROM thumbs WHERE url = ANY(%s)", (list(urls),))

    def forget_thumbnails(self, keep_files: Iterable[str], wanted: Iterable[str]) -> None:
        kept, still = set(keep_files), set(wanted)
        with self._db.writing() as db:
            gone = [
                url
                for url, file in db.execute("SELECT url, file FROM thumbs")
                if (file is not None and file not in kept) or (file is None and url not in still)
            ]
            if gone:
                db.execute("DELETE FROM thumbs WHERE url = ANY(%s)", (gone,))
