"""The seed files read (PostgreSQL): `seeds` and `seed_topics`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence

from aggregator.model import Article, LoadedSeed, article_from_json
from aggregator.scan import SeedFile
from aggregator.store.postgres.bulk import insert_text
from aggregator.store.postgres.db import Database, many
from aggregator.store.rows import Duplicate, Rejected, SpellingCount


class PostgresSeeds:
    """`SeedStore` on the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def seed_stats(self) -> dict[str, tuple[int, int]]:
        with self._db.reading() as db:
            rows = db.execute("SELECT source, size, mtime_ns FROM seeds")
            return {source: (size, mtime) for source, size, mtime in rows}

    def digests(self, sources: Sequence[str]) -> dict[str, str]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT source, digest FROM seeds WHERE source = ANY(%s)", (list(sources),)
            )
            return {source: digest for source, digest in rows}

    def touch(self, files: Iterable[SeedFile]) -> None:
        with self._db.writing() as db:
            many(
                db,
                "UPDATE seeds SET size = %s, mtime_ns = %s WHERE source = %s",
                [(f.size, f.mtime_ns, f.source) for f in files],
            )

    def store_seeds(self, batch: Sequence[tuple[SeedFile, LoadedSeed]]) -> None:
        sources = [file.source for file, _ in batch]
        with self._db.writing() as db:
            dirty: set[str] = {
                row[0]
                for row in db.execute(
                    "SELECT entry_id FROM seeds WHERE source = ANY(%s) AND entry_id IS NOT NULL",
                    (sources,),
                )
            }
            good = [(f, s.record, s) for f, s in batch if s.record is not None]
            bad = [(f, s) for f, s in batch if s.record is None]
            # A rejected seed keeps its last good record (if any) and gets the error.
            many(
                db,
                "INSERT INTO seeds (source, size, mtime_ns, digest, error, warnings)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (source) DO UPDATE SET"
                " size = excluded.size, mtime_ns = excluded.mtime_ns,"
                " digest = excluded.digest, error = excluded.error,"
                " warnings = excluded.warnings",
                [
                    (f.source, f.size, f.mtime_ns, s.digest, s.error, _json_list(s.warnings))
                    for f, s in bad
                ],
            )
            many(
                db,
                "INSERT INTO seeds (source, size, mtime_ns, digest, error, warnings,"
                " entry_id, article, published_us, quality, is_published, shown, original_url,"
                " web_url) VALUES (%s, %s, %s, %s, NULL, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (source) DO UPDATE SET size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, digest = excluded.digest, error = NULL,"
                " warnings = excluded.warnings, entry_id = excluded.entry_id,"
                " article = excluded.article, published_us = excluded.published_us,"
                " quality = excluded.quality, is_published = excluded.is_published,"
                " shown = excluded.shown, original_url = excluded.original_url,"
                " web_url = excluded.web_url",
                [
                    (
                        f.source,
                        f.size,
                        f.mtime_ns,
                        s.digest,
                        _json_list(s.warnings),
                        r.entry_id,
                        r.article_json,
                        r.published_us,
                        r.quality,
                        None if r.is_published is None else int(r.is_published),
                        r.shown,
                        r.original_url,
                        r.web_url,
                    )
                    for f, r, s in good
                ],
            )
            if good:
                db.execute(
                    "DELETE FROM seed_topics WHERE source = ANY(%s)",
                    ([f.source for f, _, _ in good],),
                )
                db.execute(
                    "DELETE FROM seed_related WHERE source = ANY(%s)",
                    ([f.source for f, _, _ in good],),
                )
            insert_text(
                db,
                "seed_related (source, related_id)",
                [(f.source, other) for f, r, _ in good for other in r.related_ids],
                "ON CONFLICT DO NOTHING",
            )
            insert_text(
                db,
                "seed_topics (source, spelling)",
                [(f.source, name) for f, r, _ in good for name in r.topics],
                "ON CONFLICT DO NOTHING",
            )
            dirty.update(r.entry_id for _, r, _ in good)
            if dirty:
                db.execute(
                    "INSERT INTO dirty SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                    (sorted(dirty),),
                )

    def loading(self, count: int) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # each batch is one round trip already

    def forget_seeds(self, sources: Iterable[str]) -> None:
        gone = list(sources)
        if not gone:
            return
        with self._db.writing() as db:
            db.execute(
                "INSERT INTO dirty SELECT entry_id FROM seeds"
                " WHERE source = ANY(%s) AND entry_id IS NOT NULL ON CONFLICT DO NOTHING",
                (gone,),
            )
            db.execute("DELETE FROM seeds WHERE source = ANY(%s)", (gone,))
            db.execute("DELETE FROM seed_topics WHERE source = ANY(%s)", (gone,))
            db.execute("DELETE FROM seed_related WHERE source = ANY(%s)", (gone,))

    def spelling_counts(self) -> list[SpellingCount]:
        with self._db.reading() as db:
            rows = db.execute("SELECT spelling, COUNT(*) FROM seed_topics GROUP BY spelling")
            return [SpellingCount(spelling, int(count)) for spelling, count in rows]

    def rejected(self) -> list[Rejected]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT source, error FROM seeds WHERE error IS NOT NULL ORDER BY source"
            )
            return [Rejected(source, error) for source, error in rows]

    def duplicates(self) -> list[Duplicate]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT s.source, m.source FROM seeds s JOIN members m"
                " ON m.article = s.entry_id WHERE s.source != m.source ORDER BY s.source"
            )
            return [Duplicate(source, used) for source, used in rows]

    def articles(self, sources: Sequence[str]) -> dict[str, Article]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT source, article FROM seeds WHERE article IS NOT NULL AND source = ANY(%s)",
                (list(sources),),
            )
            return {source: article_from_json(text) for source, text in rows}


def _json_list(items: Sequence[str]) -> str:
    return json.dumps(list(items), ensure_ascii=False)
