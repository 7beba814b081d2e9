"""Stories (PostgreSQL): `seed_related` (written with the seeds) and `members`."""

from __future__ import annotations

from collections.abc import Sequence

from aggregator.store.postgres.db import Database
from aggregator.store.rows import Member


class PostgresStories:
    """`StoryStore` on the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def published(self, articles: Sequence[str]) -> dict[str, int]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT entry_id, MIN(published_us) FROM seeds WHERE article IS NOT NULL"
                " AND entry_id = ANY(%s) GROUP BY entry_id",
                (list(articles),),
            )
            return {article: int(published) for article, published in rows}

    def links(self, articles: Sequence[str]) -> list[tuple[str, str]]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT s.entry_id, r.related_id FROM seed_related r"
                " JOIN seeds s ON s.source = r.source"
                " WHERE s.entry_id = ANY(%(ids)s)"
                " AND EXISTS (SELECT 1 FROM seeds t WHERE t.entry_id = r.related_id)"
                " UNION ALL"
                " SELECT s.entry_id, r.related_id FROM seed_related r"
                " JOIN seeds s ON s.source = r.source"
                " WHERE s.entry_id IS NOT NULL AND r.related_id = ANY(%(ids)s)"
                " AND EXISTS (SELECT 1 FROM seeds t WHERE t.entry_id = r.related_id)",
                {"ids": list(articles)},
            )
            return [(a, b) for a, b in rows]

    def stories_of(self, articles: Sequence[str]) -> dict[str, str]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT article, story FROM members WHERE article = ANY(%s)", (list(articles),)
            )
            return {article: story for article, story in rows}

    def members(self, stories: Sequence[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT story, article FROM members WHERE story = ANY(%s)", (list(stories),)
            )
            for story, article in rows:
                found.setdefault(story, set()).add(article)
        return found

    def keep_members(self, members: Sequence[Member], forget: Sequence[str]) -> None:
        gone = sorted(set(forget) | {m.article for m in members})
        if not gone:
            return
        with self._db.writing() as db:
            db.execute("DELETE FROM members WHERE article = ANY(%s)", (gone,))
            if members:
                db.execute(
                    "INSERT INTO members (article, story, source, provider) SELECT * FROM"
                    " unnest(%s::text[], %s::text[], %s::text[], %s::text[])",
                    [list(column) for column in zip(*members, strict=True)],
                )
