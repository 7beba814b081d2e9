"""The entries (PostgreSQL): `entries`, `entry_feeds`, `ledger`, `dirty`, and the feeds'
queries."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from aggregator.archive import Key, Row
from aggregator.entries import Decision, EntryColumns, SeedCopy, from_micros
from aggregator.feeds import KINDS, FeedKey
from aggregator.model import Article
from aggregator.plan import FeedFilter, LedgerRow
from aggregator.store.postgres.bulk import insert_text
from aggregator.store.postgres.db import Connection, Database, many
from aggregator.store.rows import StoredEntry, entry_rows, story_article


class PostgresEntries:
    """`EntryStore` on the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def loading(self, count: int) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # each batch is one round trip already

    def dirty(self) -> list[str]:
        with self._db.reading() as db:
            return [row[0] for row in db.execute("SELECT entry_id FROM dirty ORDER BY entry_id")]

    def mark_all_dirty(self) -> None:
        with self._db.writing() as db:
            db.execute("INSERT INTO dirty SELECT entry_id FROM entries ON CONFLICT DO NOTHING")

    def mark_dated_between(self, after_us: int, until_us: int) -> None:
        with self._db.writing() as db:
            db.execute(
                "INSERT INTO dirty SELECT DISTINCT entry_id FROM seeds"
                " WHERE published_us > %s AND published_us <= %s AND entry_id IS NOT NULL"
                " ON CONFLICT DO NOTHING",
                (after_us, until_us),
            )

    def clear_dirty(self) -> None:
        with self._db.writing() as db:
            db.execute("DELETE FROM dirty")

    def copies(self, entry_ids: Sequence[str]) -> list[SeedCopy]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT entry_id, source, published_us, quality, is_published, shown,"
                " original_url, web_url, article::json -> 'provider' ->> 1"
                " FROM seeds WHERE entry_id = ANY(%s)",
                (list(entry_ids),),
            )
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
                    provider_domain=domain,
                )
                for (
                    entry_id,
                    source,
                    published_us,
                    quality,
                    flag,
                    shown,
                    original,
                    web,
                    domain,
                ) in rows
            ]

    def provider_names(self) -> list[tuple[str, str | None, int]]:
        # The article is stored as model.article_to_json writes it: provider = [name, domain].
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT m.provider, s.article::json -> 'provider' ->> 0, COUNT(*)"
                " FROM members m JOIN entries e ON e.entry_id = m.story"
                " JOIN seeds s ON s.source = m.source"
                " WHERE m.provider IS NOT NULL AND e.hidden = 0 GROUP BY 1, 2"
            ).fetchall()
        return [(key, name, int(count)) for key, name, count in rows]

    def spellings(self, entry_ids: Sequence[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT s.entry_id, t.spelling FROM seed_topics t JOIN seeds s"
                " ON s.source = t.source WHERE s.entry_id = ANY(%s)",
                (list(entry_ids),),
            )
            for entry_id, spelling in rows:
                found.setdefault(entry_id, set()).add(spelling)
        return found

    def columns(self, entry_ids: Sequence[str]) -> dict[str, EntryColumns]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT entry_id, source, published_us, quality, is_published, original_url,"
                " web_url, link, hidden, related FROM entries WHERE entry_id = ANY(%s)",
                (list(entry_ids),),
            )
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
                ) in rows
            }

    def feeds_of(self, entry_ids: Sequence[str]) -> dict[str, frozenset[FeedKey]]:
        with self._db.reading() as db:
            found = _feeds(db, entry_ids)
        return {entry_id: frozenset(feeds) for entry_id, feeds in found.items()}

    def ledger(self, entry_ids: Sequence[str]) -> dict[str, LedgerRow]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT entry_id, content_hash, first_seen_us, updated_us FROM ledger"
                " WHERE entry_id = ANY(%s)",
                (list(entry_ids),),
            )
            return {
                entry_id: LedgerRow(content_hash, from_micros(first_seen), from_micros(updated))
                for entry_id, content_hash, first_seen, updated in rows
            }

    def apply(self, decisions: Sequence[Decision]) -> None:
        gone, ledger, rows, moved, members = entry_rows(decisions)
        with self._db.writing() as db:
            if gone:
                db.execute("DELETE FROM entries WHERE entry_id = ANY(%s)", (gone,))
                db.execute("DELETE FROM entry_feeds WHERE entry_id = ANY(%s)", (gone,))
            many(
                db,
                "INSERT INTO ledger VALUES (%s, %s, %s, %s) ON CONFLICT (entry_id) DO UPDATE"
                " SET content_hash = excluded.content_hash,"
                " first_seen_us = excluded.first_seen_us, updated_us = excluded.updated_us",
                ledger,
            )
            many(
                db,
                "INSERT INTO entries (entry_id, source, published_us, quality,"
                " is_published, original_url, web_url, link, hidden, related)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (entry_id) DO UPDATE"
                " SET source = excluded.source, published_us = excluded.published_us,"
                " quality = excluded.quality, is_published = excluded.is_published,"
                " original_url = excluded.original_url, web_url = excluded.web_url,"
                " link = excluded.link, hidden = excluded.hidden, related = excluded.related",
                rows,
            )
            if moved:
                db.execute("DELETE FROM entry_feeds WHERE entry_id = ANY(%s)", (moved,))
            insert_text(db, "entry_feeds (kind, key, entry_id)", members)

    def entries(self, ids: Sequence[str]) -> list[StoredEntry]:
        with self._db.reading() as db:
            return _entries(db, ids)

    def feed_page(
        self, feed: FeedKey, flt: FeedFilter, limit: int, newer_than: Key | None = None
    ) -> tuple[list[StoredEntry], int]:
        params = _filter_params(feed, flt)
        params["limit"] = limit
        source, where = _feed_source(feed, flt)
        bound = ""
        if newer_than is not None:
            params["bound_us"], params["bound_id"] = newer_than
            bound = (
                " AND (e.published_us > %(bound_us)s"
                " OR (e.published_us = %(bound_us)s AND e.entry_id < %(bound_id)s))"
            )
        with self._db.reading() as db:
            rows = db.execute(
                f"SELECT e.entry_id FROM {source} WHERE {where}{bound}"
                " ORDER BY e.published_us DESC, e.entry_id LIMIT %(limit)s",
                params,
            ).fetchall()
            counted = db.execute(f"SELECT COUNT(*) FROM {source} WHERE {where}", params).fetchone()
            total = 0 if counted is None else int(counted[0])
            entries = _entries(db, [row[0] for row in rows])
        return entries, total

    def feed_rows(self, feed: FeedKey, flt: FeedFilter) -> list[Row]:
        params = _filter_params(feed, flt)
        source, where = _feed_source(feed, flt)
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
            row = db.execute(
                "SELECT MIN(published_us) FROM seeds WHERE published_us > %s",
                (flt.published_before_us,),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])


def _feeds(db: Connection, ids: Sequence[str]) -> dict[str, set[FeedKey]]:
    """Entry id → the feeds it is stored in, for those of `ids` in any."""
    found: dict[str, set[FeedKey]] = {}
    rows = db.execute(
        "SELECT kind, key, entry_id FROM entry_feeds WHERE entry_id = ANY(%s)", (list(ids),)
    )
    for kind, key, entry_id in rows:
        found.setdefault(entry_id, set()).add(FeedKey(kind, key))
    return found


def _entries(db: Connection, ids: Sequence[str]) -> list[StoredEntry]:
    """The stored entries with these ids, in this order (unknown ids left out)."""
    found: dict[str, tuple[Article, int, str | None]] = {}
    rows = db.execute(
        "SELECT e.entry_id, s.article, l.updated_us, e.link, e.related FROM entries e"
        " JOIN ledger l ON l.entry_id = e.entry_id JOIN seeds s ON s.source = e.source"
        " WHERE e.entry_id = ANY(%s)",
        (list(ids),),
    )
    for entry_id, text, updated, link, related in rows:
        if text is not None:  # None: its seed was forgotten, not yet refreshed
            found[entry_id] = (story_article(text, related), updated, link)
    feeds = _feeds(db, ids)
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


def _filter_params(feed: FeedKey, flt: FeedFilter) -> dict[str, object]:
    return {
        "kind": feed.kind,
        "key": feed.key,
        "min_quality": flt.min_quality,
        "after": flt.published_after_us,
        "before": flt.published_before_us,
    }


def _filter(flt: FeedFilter) -> str:
    """The WHERE conditions of `flt` on `entries e` (only those that filter anything)."""
    parts = ["e.published_us <= %(before)s", "e.hidden = 0"]
    if flt.min_quality > 0:
        parts.append("COALESCE(e.quality, 0) >= %(min_quality)s")
    if flt.require_published:
        parts.append("e.is_published = 1")
    if flt.published_after_us is not None:
        parts.append("e.published_us >= %(after)s")
    return " AND ".join(parts)


def _feed_source(feed: FeedKey, flt: FeedFilter) -> tuple[str, str]:
    """The FROM and WHERE of a feed's entries."""
    kind = KINDS.get(feed.kind)
    if kind is not None and kind.every_entry:
        return "entries e", _filter(flt)
    return (
        "entry_feeds f JOIN entries e ON e.entry_id = f.entry_id",
        f"f.kind = %(kind)s AND f.key = %(key)s AND {_filter(flt)}",
    )
