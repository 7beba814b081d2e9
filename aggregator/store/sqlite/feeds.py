"""What is kept per feed (SQLite): `topic_slugs`, `feed_stamps`, `feed_archives`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from aggregator.archive import Key
from aggregator.feeds import FeedKey
from aggregator.plan import FeedStamp
from aggregator.store.rows import archive_columns, archive_of, stamp_columns, stamp_of
from aggregator.store.sqlite.db import Database


class SqliteFeeds:
    """`FeedStateStore` on the state file."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def topic_slugs(self) -> dict[str, str]:
        with self._db.reading() as db:
            return dict(db.execute("SELECT key, slug FROM topic_slugs"))

    def keep_topic_slugs(self, slugs: Mapping[str, str]) -> None:
        with self._db.writing() as db:
            db.executemany("INSERT OR IGNORE INTO topic_slugs VALUES (?, ?)", slugs.items())

    def feed_stamp(self, feed: FeedKey) -> FeedStamp | None:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT ids, floor_us, updated_us FROM feed_stamps WHERE kind = ? AND key = ?",
                (feed.kind, feed.key),
            ).fetchone()
        if row is None:
            return None
        ids, floor, updated = row
        return stamp_of(ids, floor, updated)

    def keep_feed_stamp(self, feed: FeedKey, stamp: FeedStamp) -> None:
        with self._db.writing() as db:
            db.execute(
                "INSERT OR REPLACE INTO feed_stamps VALUES (?, ?, ?, ?, ?)",
                (feed.kind, feed.key, *stamp_columns(stamp)),
            )

    def archive(self, feed: FeedKey) -> tuple[list[Key], list[str]]:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT bounds, digests FROM feed_archives WHERE kind = ? AND key = ?",
                (feed.kind, feed.key),
            ).fetchone()
        if row is None:
            return [], []
        return archive_of(row[0], row[1])

    def keep_archive(self, feed: FeedKey, bounds: Sequence[Key], digests: Sequence[str]) -> None:
        with self._db.writing() as db:
            db.execute(
                "INSERT OR REPLACE INTO feed_archives (kind, key, bounds, digests)"
                " VALUES (?, ?, ?, ?)",
                (feed.kind, feed.key, *archive_columns(bounds, digests)),
            )

    def forget_archives(self, keep: Iterable[FeedKey]) -> None:
        kept = set(keep)
        with self._db.writing() as db:
            gone = [
                (kind, key)
                for kind, key in db.execute("SELECT kind, key FROM feed_archives")
                if FeedKey(kind, key) not in kept
            ]
            db.executemany("DELETE FROM feed_archives WHERE kind = ? AND key = ?", gone)
