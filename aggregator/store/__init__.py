"""The state store: the protocol (`StateStore`), its SQLite and in-memory engines.

    open_store(path)   the SQLite store on a file (the one the service uses), or the
                       PostgreSQL store for a postgresql:// or postgres:// URL
    MemoryStore()      an in-memory store (tests)
    worker_access(store)  how worker processes read and help write the state, if they can
    opened_here(reader)   in a worker process: the state as `WorkerAccess.reader` opens it

Every engine raises `StateError` (aggregator.errors) when the state is unusable.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aggregator.errors import StateError
from aggregator.store.protocol import (
    EntryStore,
    FeedStateStore,
    LinkStore,
    SeedStore,
    SettingsStore,
    StateStore,
    ThumbnailStore,
    WorkerAccess,
)
from aggregator.store.rows import Counts, Duplicate, Rejected, SpellingCount, StoredEntry
from aggregator.store.sqlite import SCHEMA_VERSION, SqliteStore
from aggregator.store.sqlite import worker_access as sqlite_worker_access

if TYPE_CHECKING:
    from aggregator.store.memory import MemoryStore

__all__ = [
    "SCHEMA_VERSION",
    "Counts",
    "Duplicate",
    "EntryStore",
    "FeedStateStore",
    "LinkStore",
    "MemoryStore",
    "Rejected",
    "SeedStore",
    "SettingsStore",
    "SpellingCount",
    "SqliteStore",
    "StateError",
    "StateStore",
    "StoredEntry",
    "ThumbnailStore",
    "WorkerAccess",
    "is_postgres_url",
    "open_store",
    "opened_here",
    "worker_access",
]


def __getattr__(name: str) -> Any:
    """`MemoryStore`, imported when first asked for (tests use it; commands do not)."""
    if name == "MemoryStore":
        from aggregator.store.memory import MemoryStore

        return MemoryStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_postgres_url(location: Path | str) -> bool:
    """True when `location` is a `postgresql://` or `postgres://` URL (not a file path)."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_store(path: Path | str) -> StateStore:
    """The state store at `path`: the PostgreSQL store for a `postgresql://` or
    `postgres://` URL, else the SQLite store on that file (created, or migrated, as needed).

    Raises `StateError` when the store cannot be used (unwritable, not a state
    file, from a newer version, a database that cannot be reached).
    """
    if isinstance(path, str) and is_postgres_url(path):
        # psycopg is imported only by those who use PostgreSQL.
        from aggregator.store.postgres import PostgresStore

        return PostgresStore(path)
    return SqliteStore(path)


def worker_access(store: StateStore) -> WorkerAccess | None:
    """How worker processes read and help write `store`'s state while `store` writes it
    (see `WorkerAccess`), or None when they cannot: only a SQLite file on disk can."""
    return sqlite_worker_access(store) if isinstance(store, SqliteStore) else None


_opened: dict[Callable[[], StateStore], StateStore] = {}
"""The states this (worker) process reads, by how each was opened."""


def opened_here(reader: Callable[[], StateStore]) -> StateStore:
    """The state as `reader` (a `WorkerAccess.reader`) opens it, opened once per process:
    a worker keeps its read-only connection from one job to the next."""
    store = _opened.get(reader)
    if store is None:
        store = _opened[reader] = reader()
    return store
