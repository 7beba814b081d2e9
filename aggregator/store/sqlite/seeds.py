"""The seed files read (SQLite): `seeds` and `seed_topics`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence

from aggregator.model import Article, LoadedSeed, article_from_json
from aggregator.scan import SeedFile, no_cycle_collection
from aggregator.store.rows import Duplicate, Rejected, SpellingCount
from aggregator.store.sqlite.db import Database, chunks, marks
from aggregator.store.sqlite.schema import LOOKUP_INDEXES


class SqliteSeeds:
    """`SeedStore` on the state file."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def loading(self, count: int) -> contextlib.AbstractContextManager[None]:
        # Storing 100,000 seeds into a new state: 7.5 s of CPU with the indexes kept up row
        # by row, 5.4 s with them built at the end.
        return self._db.indexes_after("seeds", LOOKUP_INDEXES, count)

    def seed_stats(self) -> dict[str, tuple[int, int]]:
        # One pass over the covering index `seeds_stat`, not over the rows.
        with self._db.reading() as db, no_cycle_collection():
            rows = db.execute("SELECT source, size, mtime_ns FROM seeds").fetchall()
            return {source: (size, mtime) for source, size, mtime in rows}

    def digests(self, sources: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._db.reading() as db:
            for chunk in chunks(sources):
                rows = db.execute(
                    f"SELECT source, digest FROM seeds WHERE source IN ({marks(len(chunk))})",
                    chunk,
                )
                found.update(rows)
        return found

    def touch(self, files: Iterable[SeedFile]) -> None:
        with self._db.writing() as db:
            db.executemany(
                "UPDATE seeds SET size = ?, mtime_ns = ? WHERE source = ?",
                [(f.size, f.mtime_ns, f.source) for f in files],
            )

    def store_seeds(self, batch: Sequence[tuple[SeedFile, LoadedSeed]]) -> None:
        sources = [file.source for file, _ in batch]
        with self._db.writing() as db:
            dirty: set[str] = set()
            stored: set[str] = set()  # the sources stored before: they may have topics
            for chunk in chunks(sources):
                for source, entry_id in db.execute(
                    f"SELECT source, entry_id FROM seeds WHERE source IN ({marks(len(chunk))})",
                    chunk,
                ):
                    stored.add(source)
                    if entry_id is not None:
                        dirty.add(entry_id)
            good = [(f, s.record, s) for f, s in batch if s.record is not None]
            bad = [(f, s) for f, s in batch if s.record is None]
            # A rejected seed keeps its last good record (if any) and gets the error.
            db.executemany(
                "INSERT INTO seeds (source, size, mtime_ns, digest, error, warnings)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET"
                " size = excluded.size, mtime_ns = excluded.mtime_ns,"
                " digest = excluded.digest, error = excluded.error,"
                " warnings = excluded.warnings",
                [
                    (f.source, f.size, f.mtime_ns, s.digest, s.error, _json_list(s.warnings))
                    for f, s in bad
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO seeds (source, size, mtime_ns, digest, error, warnings,"
                " entry_id, article, published_us, quality, is_published, shown, original_url,"
                " web_url) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f.source,
                        f.size,
                        f.mtime_ns,
                        s.digest,
                        _json_list(s.warnings),
                        r.entry_id,
                        r.article_json,
                        r.published_us,
                        r.quality,
                        None if r.is_published is None else int(r.is_published),
                        r.shown,
                        r.original_url,
                        r.web_url,
                    )
                    for f, r, s in good
                ],
            )
            again = [(f.source,) for f, _, _ in good if f.source in stored]
            db.executemany("DELETE FROM seed_topics WHERE source = ?", again)
            db.executemany("DELETE FROM seed_related WHERE source = ?", again)
            db.executemany(
                "INSERT OR IGNORE INTO seed_related (source, related_id) VALUES (?, ?)",
                [(f.source, other) for f, r, _ in good for other in r.related_ids],
            )
            db.executemany(
                "INSERT OR IGNORE INTO seed_topics (source, spelling) VALUES (?, ?)",
                [(f.source, name) for f, r, _ in good for name in r.topics],
            )
            dirty.update(r.entry_id for _, r, _ in good)
            db.executemany("INSERT OR IGNORE INTO dirty VALUES (?)", [(i,) for i in dirty])

    def forget_seeds(self, sources: Iterable[str]) -> None:
        with self._db.writing() as db:
            for source in sources:
                db.execute(
                    "INSERT OR IGNORE INTO dirty SELECT entry_id FROM seeds"
                    " WHERE source = ? AND entry_id IS NOT NULL",
                    (source,),
                )
                db.execute("DELETE FROM seeds WHERE source = ?", (source,))
                db.execute("DELETE FROM seed_topics WHERE source = ?", (source,))
                db.execute("DELETE FROM seed_related WHERE source = ?", (source,))

    def spelling_counts(self) -> list[SpellingCount]:
        with self._db.reading() as db:
            rows = db.execute("SELECT spelling, COUNT(*) FROM seed_topics GROUP BY spelling")
            return [SpellingCount(spelling, count) for spelling, count in rows]

    def rejected(self) -> list[Rejected]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT source, error FROM seeds WHERE error IS NOT NULL ORDER BY source"
            )
            return [Rejected(source, error) for source, error in rows]

    def duplicates(self) -> list[Duplicate]:
        with self._db.reading() as db:
            # Members first, each looked up in the covering index `seeds_entry`: ordered by
            # source instead, SQLite would read every seed's row.
            rows = db.execute(
                "SELECT s.source, m.source FROM members m CROSS JOIN seeds s"
                " ON s.entry_id = m.article WHERE s.source != m.source ORDER BY s.source"
            )
            return [Duplicate(source, used) for source, used in rows]

    def articles(self, sources: Sequence[str]) -> dict[str, Article]:
        select = "SELECT source, article FROM seeds WHERE article IS NOT NULL AND source IN"
        with self._db.reading():
            return {
                source: article_from_json(text)
                for source, text in self._db.in_chunks(select, sources)
            }


def _json_list(items: Sequence[str]) -> str:
    return json.dumps(list(items), ensure_ascii=False) if items else "[]"
