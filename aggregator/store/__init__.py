"""The state store: the protocol (`StateStore`), its SQLite and in-memory engines.

    open_store(path)   the SQLite store on a file (the one the service uses)
    MemoryStore()      an in-memory store (tests)

Every engine raises `StateError` (aggregator.errors) when the state is unusable.
"""

from __future__ import annotations

from pathlib import Path

from aggregator.errors import StateError
from aggregator.store.memory import MemoryStore
from aggregator.store.protocol import (
    EntryStore,
    FeedStateStore,
    LinkStore,
    SeedStore,
    SettingsStore,
    StateStore,
    ThumbnailStore,
)
from aggregator.store.rows import Counts, Duplicate, Rejected, SpellingCount, StoredEntry
from aggregator.store.sqlite import SCHEMA_VERSION, SqliteStore

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
    "open_store",
]


def open_store(path: Path | str) -> StateStore:
    """The SQLite state store on the file at `path` (created, or migrated, as needed).

    Raises `StateError` when the file cannot be used (unwritable, not a state
    file, from a newer version).
    """
    return SqliteStore(path)
