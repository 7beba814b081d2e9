"""What only the SQLite store promises: the file under it, and its errors."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from aggregator.errors import StateError
from aggregator.store import SqliteStore
from aggregator.store.sqlite import db as db_module
from aggregator.store.sqlite.schema import LISTING_INDEXES, LOOKUP_INDEXES


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_state_file_deleted_or_replaced_under_the_store_is_refused(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "state.sqlite3"
    store = SqliteStore(path)
    try:
        store.feeds.keep_topic_slugs({"a": "a"})
        os.unlink(path)
        if how == "replaced":
            SqliteStore(path).close()
        with pytest.raises(StateError, match=f"was {how}"):
            store.feeds.keep_topic_slugs({"b": "b"})
        with pytest.raises(StateError, match="restart the service"):
            store.counts()
        with pytest.raises(StateError), store.transaction():
            pass
    finally:
        store.close()


def test_what_a_transaction_writes_is_seen_by_another_connection_only_once_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    store, other = SqliteStore(path), SqliteStore(path)
    try:
        with store.transaction():
            store.feeds.keep_topic_slugs({"a": "a"})
            with store.transaction():
                store.feeds.keep_topic_slugs({"b": "b"})
            assert other.feeds.topic_slugs() == {}
        assert other.feeds.topic_slugs() == {"a": "a", "b": "b"}
    finally:
        store.close()
        other.close()


def _checkpointing() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "state-checkpoints"]


def test_with_checkpoints_apart_a_thread_copies_the_commits_into_the_file(tmp_path: Path) -> None:
    """A cold build's state (`checkpoint_apart`): what each commit wrote reaches the state
    file while the store stays open, copied by a thread of its own, which ends with it."""
    path = tmp_path / "state.sqlite3"
    store = SqliteStore(path)
    try:
        store.checkpoint_apart()
        assert len(_checkpointing()) == 1
        empty = path.stat().st_size
        slugs = {f"topic-{n:06}": f"slug-{n:06}-{'x' * 40}" for n in range(40_000)}
        with store.transaction():
            store.feeds.keep_topic_slugs(slugs)
        deadline = time.monotonic() + 10
        while path.stat().st_size < empty + 2_000_000 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.stat().st_size >= empty + 2_000_000
        other = SqliteStore(path)
        try:
            assert other.feeds.topic_slugs() == slugs
        finally:
            other.close()
    finally:
        store.close()
    assert _checkpointing() == []
    assert not Path(f"{path}-wal").exists()
    reopened = SqliteStore(path)
    try:
        assert len(reopened.feeds.topic_slugs()) == len(slugs)
    finally:
        reopened.close()


def test_with_checkpoints_apart_the_log_does_not_grow_with_every_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back-to-back transactions (the thread still copying the last when the next begins)
    would each add to the end of the log: past its limit, a transaction waits for the
    checkpoint under way, and the log is rewound."""
    monkeypatch.setattr(db_module, "WAL_LIMIT", 4_000_000)
    path = tmp_path / "state.sqlite3"
    store = SqliteStore(path)
    try:
        store.checkpoint_apart()
        largest = 0
        for batch in range(40):
            slugs = {f"t-{batch}-{n:05}": f"{'x' * 900}-{batch}-{n}" for n in range(1000)}
            with store.transaction():
                store.feeds.keep_topic_slugs(slugs)
            largest = max(largest, Path(f"{path}-wal").stat().st_size)
        # 40 transactions of about 1 MB each: without the wait, a log of about 40 MB.
        assert largest < 4_000_000 + 3_000_000
        assert len(store.feeds.topic_slugs()) == 40_000
    finally:
        store.close()


def test_the_lookup_indexes_are_there_after_a_large_load_and_every_open(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = SqliteStore(path)
    wanted = set(LOOKUP_INDEXES)

    def indexes() -> set[str]:
        return indexes_of(path) & wanted

    assert indexes() == wanted
    with store.seeds.loading(10_000):
        assert indexes() == set()  # an empty state: built at the end instead
    assert indexes() == wanted
    with store.transaction(), store.entries.loading(10_000):
        pass  # dropped and built again inside the one transaction: no other reader sees it
    assert indexes_of(path) >= set(LISTING_INDEXES)
    with sqlite3.connect(path) as db:  # as a process that died inside the load leaves it
        db.execute("DROP INDEX seed_related_id")
    store.close()
    SqliteStore(path).close()
    assert indexes() == wanted


def indexes_of(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        return {name for (name,) in rows}


def test_indexes_built_after_a_large_load_are_those_the_migrations_make(tmp_path: Path) -> None:
    fresh, loaded = tmp_path / "fresh.sqlite3", tmp_path / "loaded.sqlite3"
    SqliteStore(fresh).close()
    store = SqliteStore(loaded)
    with store.seeds.loading(10_000):
        pass
    with store.transaction(), store.entries.loading(10_000):
        pass
    store.close()

    def schema(path: Path) -> list[tuple[str, str]]:
        with sqlite3.connect(path) as db:
            return sorted(db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"))

    assert schema(loaded) == schema(fresh)
