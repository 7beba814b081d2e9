"""The entries (SQLite): `entries`, `entry_feeds`, `ledger`, `dirty`, and the feeds' queries."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence

from aggregator.archive import Key, Row
from aggregator.entries import Decision, EntryColumns, SeedCopy, from_micros
from aggregator.feeds import KINDS, FeedKey
from aggregator.model import Article
from aggregator.plan import FeedFilter, LedgerRow
from aggregator.store.rows import EntryRows, StoredEntry, entry_rows, story_article
from aggregator.store.sqlite.db import Database
from aggregator.store.sqlite.schema import LISTING_INDEXES

PROVIDER_NAME = "$.provider[0]"
PROVIDER_DOMAIN = "$.provider[1]"
"""Where a stored article (`model.article_to_json`) holds its provider's name and domain."""

_FILTER = """
    (:min_quality <= 0 OR COALESCE(e.quality, 0) >= :min_quality)
    AND (:require_published = 0 OR e.is_published = 1)
    AND (:after IS NULL OR e.published_us >= :after)
    AND e.published_us <= :before
    AND e.hidden = 0
"""


class SqliteEntries:
    """`EntryStore` on the state file."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def loading(self, count: int) -> contextlib.AbstractContextManager[None]:
        # In the refresh's transaction: the indexes that list entries by date and URL.
        return self._db.indexes_after("entries", LISTING_INDEXES, count)

    def dirty(self) -> list[str]:
        with self._db.reading() as db:
            return [row[0] for row in db.execute("SELECT entry_id FROM dirty ORDER BY entry_id")]

    def mark_all_dirty(self) -> None:
        with self._db.writing() as db:
            db.execute("INSERT OR IGNORE INTO dirty SELECT entry_id FROM entries")

    def mark_dated_between(self, after_us: int, until_us: int) -> None:
        with self._db.writing() as db:
            db.execute(
                "INSERT OR IGNORE INTO dirty SELECT entry_id FROM seeds"
                " WHERE published_us > ? AND published_us <= ? AND entry_id IS NOT NULL",
                (after_us, until_us),
            )

    def clear_dirty(self) -> None:
        with self._db.writing() as db:
            db.execute("DELETE FROM dirty")

    def copies(self, entry_ids: Sequence[str]) -> list[SeedCopy]:
        select = (
            "SELECT entry_id, source, published_us, quality, is_published, shown,"
            f" original_url, web_url, json_extract(article, '{PROVIDER_DOMAIN}')"
            " FROM seeds WHERE entry_id IN"
        )
        with self._db.reading():
            return [
                SeedCopy(
                    entry_id=entry_id,
                    source=source,
                    published_us=published_us,
                    quality=quality,
                    is_published=None if flag is None else bool(flag),
                    shown=shown,
                    original_url=original,
                    web_url=web,
                    provider_domain=domain if isinstance(domain, str) else None,
                )
                for entry_id, source, published_us, quality, flag, shown, original, web, domain in (
                    self._db.in_chunks(select, entry_ids)
                )
            ]

    def provider_names(self) -> list[tuple[str, str | None, int]]:
        with self._db.reading() as db:
            rows = db.execute(
                f"SELECT m.provider, json_extract(s.article, '{PROVIDER_NAME}'), COUNT(*)"
                " FROM members m JOIN entries e ON e.entry_id = m.story"
                " JOIN seeds s ON s.source = m.source"
                " WHERE m.provider IS NOT NULL AND e.hidden = 0 GROUP BY 1, 2"
            ).fetchall()
        return [(key, name if isinstance(name, str) else None, count) for key, name, count in rows]

    def spellings(self, entry_ids: Sequence[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        select = (
            "SELECT s.entry_id, t.spelling FROM seed_topics t JOIN seeds s"
            " ON s.source = t.source WHERE s.entry_id IN"
        )
        with self._db.reading():
            for entry_id, spelling in self._db.in_chunks(select, entry_ids):
                found.setdefault(entry_id, set()).add(spelling)
        return found

    def columns(self, entry_ids: Sequence[str]) -> dict[str, EntryColumns]:
        select = (
            "SELECT entry_id, source, published_us, quality, is_published, original_url,"
            " web_url, link, hidden, related FROM entries WHERE entry_id IN"
        )
        with self._db.reading():
            return {
                entry_id: EntryColumns(
                    source=source,
                    published_us=published_us,
                    quality=quality,
                    is_published=None if flag is None else bool(flag),
                    original_url=original,
                    web_url=web,
                    link=link,
                    hidden=bool(hidden),
                    related=related,
                )
                for (
                    entry_id,
                    source,
                    published_us,
                    quality,
                    flag,
                    original,
                    web,
                    link,
                    hidden,
                    related,
                ) in self._db.in_chunks(select, entry_ids)
            }

    def feeds_of(self, entry_ids: Sequence[str]) -> dict[str, frozenset[FeedKey]]:
        found: dict[str, set[FeedKey]] = {}
        select = "SELECT kind, key, entry_id FROM entry_feeds WHERE entry_id IN"
        with self._db.reading():
            for kind, key, entry_id in self._db.in_chunks(select, entry_ids):
                found.setdefault(entry_id, set()).add(FeedKey(kind, key))
        return {entry_id: frozenset(feeds) for entry_id, feeds in found.items()}

    def ledger(self, entry_ids: Sequence[str]) -> dict[str, LedgerRow]:
        select = (
            "SELECT entry_id, content_hash, first_seen_us, updated_us FROM ledger WHERE entry_id IN"
        )
        with self._db.reading():
            return {
                entry_id: LedgerRow(content_hash, from_micros(first_seen), from_micros(updated))
                for entry_id, content_hash, first_seen, updated in (
                    self._db.in_chunks(select, entry_ids)
                )
            }

    def apply(self, decisions: Sequence[Decision]) -> None:
        rows = entry_rows(decisions)
        with self._db.writing() as db:
            write_entry_rows(db, rows)

    def entries(self, ids: Sequence[str]) -> list[StoredEntry]:
        with self._db.reading():
            return self._entries(ids)

    def _entries(self, ids: Sequence[str]) -> list[StoredEntry]:
        found: dict[str, tuple[Article, int, str | None]] = {}
        feeds: dict[str, set[FeedKey]] = {}
        select = (
            "SELECT e.entry_id, s.article, l.updated_us, e.link, e.related FROM entries e"
            " JOIN ledger l ON l.entry_id = e.entry_id JOIN seeds s ON s.source = e.source"
            " WHERE e.entry_id IN"
        )
        for entry_id, text, updated, link, related in self._db.in_chunks(select, ids):
            if text is not None:  # None: its seed was forgotten, not yet refreshed
                found[entry_id] = (story_article(text, related), updated, link)
        select = "SELECT kind, key, entry_id FROM entry_feeds WHERE entry_id IN"
        for kind, key, entry_id in self._db.in_chunks(select, ids):
            feeds.setdefault(entry_id, set()).add(FeedKey(kind, key))
        return [
            StoredEntry(
                entry_id,
                found[entry_id][0],
                frozenset(feeds.get(entry_id, ())),
                from_micros(found[entry_id][1]),
                found[entry_id][2],
            )
            for entry_id in ids
            if entry_id in found
        ]

    def feed_page(
        self, feed: FeedKey, flt: FeedFilter, limit: int, newer_than: Key | None = None
    ) -> tuple[list[StoredEntry], int]:
        params = _filter_params(feed, flt)
        params["limit"] = limit
        source, where = _feed_source(feed)
        bound = ""
        if newer_than is not None:
            params["bound_us"], params["bound_id"] = newer_than
            bound = (
                " AND (e.published_us > :bound_us"
                " OR (e.published_us = :bound_us AND e.entry_id < :bound_id))"
            )
        with self._db.reading() as db:
            rows = db.execute(
                f"SELECT e.entry_id FROM {source} WHERE {where}{bound}"
                " ORDER BY e.published_us DESC, e.entry_id LIMIT :limit",
                params,
            ).fetchall()
            (total,) = db.execute(f"SELECT COUNT(*) FROM {source} WHERE {where}", params).fetchone()
            entries = self._entries([row[0] for row in rows])
        return entries, total

    def feed_rows(self, feed: FeedKey, flt: FeedFilter) -> list[Row]:
        params = _filter_params(feed, flt)
        source, where = _feed_source(feed)
        with self._db.reading() as db:
            rows = db.execute(
                f"SELECT e.published_us, e.entry_id, l.updated_us, l.content_hash FROM {source}"
                f" JOIN ledger l ON l.entry_id = e.entry_id WHERE {where}"
                " ORDER BY e.published_us DESC, e.entry_id",
                params,
            ).fetchall()
        return [Row(*row) for row in rows]

    def earliest_held_back(self, flt: FeedFilter) -> int | None:
        with self._db.reading() as db:
            (earliest,) = db.execute(
                "SELECT MIN(published_us) FROM seeds WHERE published_us > ?",
                (flt.published_before_us,),
            ).fetchone()
        return None if earliest is None else int(earliest)


def _filter_params(feed: FeedKey, flt: FeedFilter) -> dict[str, object]:
    return {
        "kind": feed.kind,
        "key": feed.key,
        "min_quality": flt.min_quality,
        "require_published": int(flt.require_published),
        "after": flt.published_after_us,
        "before": flt.published_before_us,
    }


def _feed_source(feed: FeedKey) -> tuple[str, str]:
    """The FROM and WHERE of a feed's entries."""
    kind = KINDS.get(feed.kind)
    if kind is not None and kind.every_entry:
        return "entries e", _FILTER
    return (
        "entry_feeds f JOIN entries e ON e.entry_id = f.entry_id",
        f"f.kind = :kind AND f.key = :key AND {_FILTER}",
    )


def write_entry_rows(db: sqlite3.Connection, rows: EntryRows) -> None:
    """Write what `entry_rows` made (in a transaction)."""
    db.executemany("DELETE FROM entries WHERE entry_id = ?", zip(rows.gone))
    db.executemany("DELETE FROM entry_feeds WHERE entry_id = ?", zip(rows.gone))
    db.executemany("INSERT OR REPLACE INTO ledger VALUES (?, ?, ?, ?)", rows.ledger)
    db.executemany(
        "INSERT OR REPLACE INTO entries (entry_id, source, published_us, quality,"
        " is_published, original_url, web_url, link, hidden, related)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows.entries,
    )
    db.executemany("DELETE FROM entry_feeds WHERE entry_id = ?", zip(rows.moved))
    db.executemany("INSERT INTO entry_feeds (kind, key, entry_id) VALUES (?, ?, ?)", rows.feeds)
