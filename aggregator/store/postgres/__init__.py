"""The PostgreSQL state store: one database, one class per concern sharing its connections;
several instances can share it (`aggregator.store.shared.SharedStore`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from aggregator.store.postgres.db import Database
from aggregator.store.postgres.documents import PostgresDocuments
from aggregator.store.postgres.entries import PostgresEntries
from aggregator.store.postgres.feeds import PostgresFeeds
from aggregator.store.postgres.leadership import PostgresElection, PostgresNotifications
from aggregator.store.postgres.links import PostgresLinks
from aggregator.store.postgres.schema import SCHEMA_VERSION
from aggregator.store.postgres.seeds import PostgresSeeds
from aggregator.store.postgres.settings import PostgresSettings
from aggregator.store.postgres.stories import PostgresStories
from aggregator.store.postgres.thumbnails import PostgresThumbnails
from aggregator.store.rows import Counts
from aggregator.urls import hide_password as redact

__all__ = ["SCHEMA_VERSION", "PostgresStore", "redact"]


class PostgresStore:
    """`StateStore` on a PostgreSQL database (psycopg 3). Every method is one transaction
    unless inside `transaction()`; a lock serializes threads.

    Raises `StateError` when the database cannot be reached or is from a newer version;
    its message names the URL without its password.
    """

    def __init__(self, url: str) -> None:
        self._db = Database(url)
        self.seeds = PostgresSeeds(self._db)
        self.entries = PostgresEntries(self._db)
        self.links = PostgresLinks(self._db)
        self.thumbnails = PostgresThumbnails(self._db)
        self.stories = PostgresStories(self._db)
        self.feeds = PostgresFeeds(self._db)
        self.settings = PostgresSettings(self._db)
        self.documents = PostgresDocuments(self._db)

    @property
    def path(self) -> str:
        """The database URL, without its password."""
        return self._db.shown

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._db.transaction():
            yield

    def check_file(self) -> None:
        self._db.check_file()

    def fence(self, term: int | None) -> None:
        self._db.fence(term)

    def election(self, lease: float, name: str = "", service: bool = True) -> PostgresElection:
        return PostgresElection(self._db.url, self._db.shown, lease, name, service)

    def notifications(self) -> PostgresNotifications:
        return PostgresNotifications(self._db.url, self._db.shown)

    def counts(self) -> Counts:
        with self._db.reading() as db:
            seeds = db.execute("SELECT COUNT(*), COUNT(error) FROM seeds").fetchone()
            entries = db.execute("SELECT COUNT(*) FROM entries").fetchone()
        assert seeds is not None and entries is not None
        return Counts(int(seeds[0]), int(entries[0]), int(seeds[1]))

    def close(self) -> None:
        self._db.close()
