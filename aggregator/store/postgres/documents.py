"""The published documents (PostgreSQL): `documents`, a change log followers mirror.

Each row is the latest change at its path; `seq` (from `documents_seq`) grows with every
change, so "the changes after N" is one indexed range. A withdrawn document keeps its row
with no body, so that followers see the removal. Every write notifies `aggregator_documents`
(delivered at commit, once per transaction).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from aggregator.store.postgres.db import Database
from aggregator.store.shared import Document, Stamp

CHANNEL = "aggregator_documents"
"""The LISTEN/NOTIFY channel of new documents."""

_PUBLISH = """
INSERT INTO documents (path, body, content_type, etag, modified, term, seq, at)
VALUES (%s, %s, %s, %s, %s, (SELECT term FROM leadership WHERE id = 1),
        nextval('documents_seq'), clock_timestamp())
ON CONFLICT (path) DO UPDATE SET
    body = excluded.body, content_type = excluded.content_type, etag = excluded.etag,
    modified = excluded.modified, term = excluded.term, seq = excluded.seq, at = excluded.at
"""


class PostgresDocuments:
    """`DocumentLog` on the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def publish(self, path: str, body: bytes, content_type: str, stamp: Stamp) -> None:
        with self._db.writing() as db:
            db.execute(_PUBLISH, (path, body, content_type, stamp.etag, stamp.modified))
            db.execute("SELECT pg_notify(%s, '')", (CHANNEL,))

    def withdraw(self, paths: Collection[str]) -> None:
        if not paths:
            return
        with self._db.writing() as db:
            found = db.execute(
                "UPDATE documents SET body = NULL, etag = '', seq = nextval('documents_seq'),"
                " term = (SELECT term FROM leadership WHERE id = 1), at = clock_timestamp()"
                " WHERE path = ANY(%s) AND body IS NOT NULL",
                (sorted(paths),),
            )
            if found.rowcount:
                db.execute("SELECT pg_notify(%s, '')", (CHANNEL,))

    def index(self) -> dict[str, Stamp]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT path, etag, modified FROM documents WHERE body IS NOT NULL"
            ).fetchall()
        return {str(path): Stamp(str(etag), int(modified)) for path, etag, modified in rows}

    def changes(self, after: int, limit: int) -> list[Document]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT seq, path, body, content_type, etag, modified, term, at FROM documents"
                " WHERE seq > %s ORDER BY seq LIMIT %s",
                (after, limit),
            ).fetchall()
        return [
            Document(
                seq=int(seq),
                path=str(path),
                body=None if body is None else bytes(body),
                content_type=str(kind),
                etag=str(etag),
                modified=int(modified),
                term=int(term),
                at=at,
            )
            for seq, path, body, kind, etag, modified, term, at in rows
        ]

    def pending(self, after: int) -> tuple[int, datetime | None]:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT COUNT(*), MIN(at) FROM documents WHERE seq > %s", (after,)
            ).fetchone()
        if row is None:
            return 0, None
        return int(row[0]), row[1]
