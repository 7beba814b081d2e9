"""The SQLite state store: one file, one class per concern sharing one connection."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from aggregator.entries import Decision
from aggregator.store.protocol import WorkerAccess
from aggregator.store.rows import Counts, EntryRows, Member, entry_rows
from aggregator.store.sqlite.db import Database
from aggregator.store.sqlite.entries import SqliteEntries, write_entry_rows
from aggregator.store.sqlite.feeds import SqliteFeeds
from aggregator.store.sqlite.links import SqliteLinks, link_rows, write_link_rows
from aggregator.store.sqlite.schema import SCHEMA_VERSION
from aggregator.store.sqlite.seeds import SqliteSeeds
from aggregator.store.sqlite.settings import SqliteSettings
from aggregator.store.sqlite.stories import SqliteStories, write_members
from aggregator.store.sqlite.thumbnails import SqliteThumbnails

__all__ = ["SCHEMA_VERSION", "SqliteReader", "SqliteStore", "worker_access"]


class SqliteStore:
    """`StateStore` on a SQLite file (WAL). Every method is one transaction unless inside
    `transaction()`; a lock serializes threads.

    Raises `StateError` when the file cannot be opened, is not a state file, is
    from a newer version, or is not writable.
    """

    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        """`read_only`: see `Database`."""
        self._db = Database(path, read_only=read_only)
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

    def write_decided(self, rows: object) -> None:
        """Write what `decided_rows` made: see `WorkerAccess.write`."""
        assert isinstance(rows, DecidedRows)
        with self._db.writing() as db:
            write_link_rows(db, rows.links)
            write_entry_rows(db, rows.entries)
            write_members(db, rows.members)

    def checkpoint_apart(self) -> None:
        self._db.checkpoint_apart()

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class SqliteReader:
    """Opens the state file at `path` read-only (`SqliteStore(path, read_only=True)`): how
    a worker process reads the state while another process writes it. Picklable."""

    path: str

    def __call__(self) -> SqliteStore:
        return SqliteStore(self.path, read_only=True)


class DecidedRows(NamedTuple):
    """What `SqliteStore.write_decided` writes, made by `decided_rows`."""

    links: list[tuple[str, str]]
    entries: EntryRows
    members: Sequence[Member]


def decided_rows(
    urls: Sequence[str], decisions: Sequence[Decision], members: Sequence[Member]
) -> DecidedRows:
    """The rows of `links.ensure(urls)`, `entries.apply(decisions)` and
    `stories.keep_members(members, [])` (in a worker process: see `WorkerAccess`)."""
    return DecidedRows(link_rows(urls), entry_rows(decisions), members)


def worker_access(store: SqliteStore) -> WorkerAccess | None:
    """How worker processes read and help write `store` (None: an in-memory database)."""
    if store.path == ":memory:":
        return None
    return WorkerAccess(
        SqliteReader(store.path), decided_rows, store.write_decided, store.checkpoint_apart
    )
