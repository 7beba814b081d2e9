"""What only the SQLite store promises: the file under it, and its errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aggregator.errors import StateError
from aggregator.store import SqliteStore


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
