"""The SQLite state store: one file, one class per concern sharing one connection."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from aggregator.store.rows import Counts
from aggregator.store.sqlite.db import Database
from aggregator.store.sqlite.entries import SqliteEntries
from aggregator.store.sqlite.feeds import SqliteFeeds
from aggregator.store.sqlite.links import SqliteLinks
from aggregator.store.sqlite.schema import SCHEMA_VERSION
from aggregator.store.sqlite.seeds import SqliteSeeds
from aggregator.store.sqlite.settings import SqliteSettings
from aggregator.store.sqlite.stories import SqliteStories
from aggregator.store.sqlite.thumbnails import SqliteThumbnails

__all__ = ["SCHEMA_VERSION", "SqliteStore"]


class SqliteStore:
    """`StateStore` on a SQLite file (WAL). Every method is one transaction unless inside
    `transaction()`; a lock serializes threads.

    Raises `StateError` when the file cannot be opened, is not a state file, is
    from a newer version, or is not writable.
    """

    def __init__(self, path: Path | str) -> None:
        self._db = Database(path)
        self.seeds = SqliteSeeds(self._db)
        self.entries = SqliteEntries(self._db)
        self.links = SqliteLinks(self._db)
        self.thumbnails = SqliteThumbnails(self._db)
        self.stories = SqliteStories(self._db)
        self.feeds = SqliteFeeds(self._db)
        self.settings = SqliteSettings(self._db)

    @property
    def path(self) -> str:
        return self._db.path

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._db.transaction():
            yield

    def check_file(self) -> None:
        self._db.check_file()

    def counts(self) -> Counts:
        with self._db.reading() as db:
            # Two counts on indexes (`seeds_rejected` is partial) rather than one on the rows.
            (seeds,) = db.execute("SELECT COUNT(*) FROM seeds").fetchone()
            (rejected,) = db.execute(
                "SELECT COUNT(*) FROM seeds WHERE error IS NOT NULL"
            ).fetchone()
            (entries,) = db.execute("SELECT COUNT(*) FROM entries").fetchone()
        return Counts(seeds, entries, rejected)

    def close(self) -> None:
        self._db.close()
