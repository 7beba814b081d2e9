"""Stories (SQLite): `seed_related` (written with the seeds) and `members`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from aggregator.store.rows import Member
from aggregator.store.sqlite.db import Database

MANY = 1000
"""From this many articles, `SqliteStories.links` may read every link at once."""
WHOLE_SHARE = 6
"""It does when the articles asked about are at least a sixth of those stored: a lookup
per article asked about costs about six times a link read in one pass."""
_STORED = "SELECT COUNT(*) FROM seeds WHERE entry_id IS NOT NULL"
_EVERY_LINK = (
    "SELECT s.entry_id, r.related_id FROM seed_related r JOIN seeds s ON s.source = r.source"
    " WHERE s.entry_id IS NOT NULL"
    " AND r.related_id IN (SELECT entry_id FROM seeds WHERE entry_id IS NOT NULL)"
)
"""Every (article, stored article among its related) pair, once per seed that lists it."""


class SqliteStories:
    """`StoryStore` on the state file."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def published(self, articles: Sequence[str]) -> dict[str, int]:
        # A seed has an article id when, and only when, it has an article (a rejected seed
        # keeps its last good one): the covering index `seeds_entry` answers.
        select = "SELECT entry_id, MIN(published_us) FROM seeds WHERE entry_id IN"
        with self._db.reading():
            return dict(self._db.in_chunks(select, articles, " GROUP BY entry_id"))

    def links(self, articles: Sequence[str]) -> list[tuple[str, str]]:
        if len(articles) >= MANY:
            with self._db.reading() as db:
                (stored,) = db.execute(_STORED).fetchone()
                if len(articles) * WHOLE_SHARE >= stored:
                    # Most articles: every link in one pass over the related ids (about a
                    # microsecond each), kept when one end was asked about.
                    pairs: list[tuple[str, str]] = db.execute(_EVERY_LINK).fetchall()
                    asked = set(articles)
                    return [p for p in pairs if p[0] in asked or p[1] in asked]
        held = "EXISTS (SELECT 1 FROM seeds t WHERE t.entry_id = r.related_id)"
        citing = (
            "SELECT s.entry_id, r.related_id FROM seed_related r"
            f" JOIN seeds s ON s.source = r.source WHERE {held} AND s.entry_id IN"
        )
        cited = (
            "SELECT s.entry_id, r.related_id FROM seed_related r"
            f" JOIN seeds s ON s.source = r.source WHERE s.entry_id IS NOT NULL AND {held}"
            " AND r.related_id IN"
        )
        with self._db.reading():
            found = list(self._db.in_chunks(citing, articles))
            found.extend(self._db.in_chunks(cited, articles))
        return [(a, b) for a, b in found]

    def stories_of(self, articles: Sequence[str]) -> dict[str, str]:
        select = "SELECT article, story FROM members WHERE article IN"
        with self._db.reading():
            return dict(self._db.in_chunks(select, articles))

    def members(self, stories: Sequence[str]) -> dict[str, set[str]]:
        select = "SELECT story, article FROM members WHERE story IN"
        found: dict[str, set[str]] = {}
        with self._db.reading():
            for story, article in self._db.in_chunks(select, stories):
                found.setdefault(story, set()).add(article)
        return found

    def keep_members(self, members: Sequence[Member], forget: Sequence[str]) -> None:
        with self._db.writing() as db:
            db.executemany("DELETE FROM members WHERE article = ?", [(a,) for a in forget])
            write_members(db, members)


def write_members(db: sqlite3.Connection, members: Sequence[Member]) -> None:
    """Record `members` (in a transaction)."""
    db.executemany("INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?)", members)
