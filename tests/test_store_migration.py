"""Opening a state file of an older schema carries what it holds over to the new tables."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregator.feeds import ALL, topic_feed
from aggregator.plan import FeedStamp, to_micros
from aggregator.store import SqliteStore
from aggregator.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def schema_4(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    for version in range(1, 5):
        db.executescript(MIGRATIONS[version])
    db.execute("PRAGMA user_version = 4")
    return db


def test_schema_4_feeds_archives_stamps_and_pauses_move_to_their_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = schema_4(path)
    db.executemany(
        "INSERT INTO entry_topics (key, entry_id) VALUES (?, ?)",
        [("ai", "e1"), ("go", "e1"), ("go", "e2")],
    )
    db.executemany(
        "INSERT INTO archives (topic, bounds, digests) VALUES (?, ?, ?)",
        [("", '[[5, "e1"]]', '["d1", "d2"]'), ("go", "[]", '["g"]')],
    )
    stamp_all = {"ids": ["e1", "e2"], "floor": to_micros(T0), "updated": to_micros(T0) + 7}
    stamp_go: dict[str, object] = {"ids": [], "floor": None, "updated": None}
    pauses = {"a.example": (T0 + timedelta(hours=1)).isoformat(), "1.2.3.4": T0.isoformat()}
    db.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [
            ("feed_stamp:", json.dumps(stamp_all)),
            ("feed_stamp:go", json.dumps(stamp_go)),
            ("host_pauses", json.dumps(pauses)),
            ("entry_rules", "kept"),
        ],
    )
    db.close()

    store = SqliteStore(path)
    try:
        assert store.entries.feeds_of(["e1", "e2", "e3"]) == {
            "e1": frozenset({topic_feed("ai"), topic_feed("go")}),
            "e2": frozenset({topic_feed("go")}),
        }
        assert store.feeds.archive(ALL) == ([(5, "e1")], ["d1", "d2"])
        assert store.feeds.archive(topic_feed("go")) == ([], ["g"])
        assert store.feeds.feed_stamp(ALL) == FeedStamp(
            ("e1", "e2"), T0, T0 + timedelta(microseconds=7)
        )
        assert store.feeds.feed_stamp(topic_feed("go")) == FeedStamp((), None, None)
        assert store.links.pauses() == {"a.example": T0 + timedelta(hours=1), "1.2.3.4": T0}
    finally:
        store.close()
    with sqlite3.connect(path) as check:
        meta = dict(check.execute("SELECT key, value FROM meta"))
        assert meta.get("entry_rules") == "kept"
        assert "host_pauses" not in meta and "feed_stamp:" not in meta
        (version,) = check.execute("PRAGMA user_version").fetchone()
        tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master")}
    assert version == SCHEMA_VERSION
    assert "entry_topics" not in tables and "archives" not in tables


def test_a_schema_4_file_without_meta_values_opens_empty(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    schema_4(path).close()
    store = SqliteStore(path)
    try:
        assert store.links.pauses() == {}
        assert store.feeds.feed_stamp(ALL) is None
        assert store.feeds.archive(ALL) == ([], [])
    finally:
        store.close()
