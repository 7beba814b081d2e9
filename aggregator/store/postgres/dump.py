"""The PostgreSQL state's raw rows, table by table, for `aggregator state copy`
(`aggregator.store.copy`): a consistent snapshot to read, one transaction to replace.

Tables and columns are named by the caller (the copy's table list); only constant
names from that list are ever put into SQL, every value goes through psycopg's
adaptation (`COPY ... FROM STDIN` to write, a server-side cursor to read).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Sequence

from psycopg import sql

from aggregator.store.postgres import PostgresStore
from aggregator.store.postgres.db import Connection, Database

KINDS = {"bigint": "int", "integer": "int", "double precision": "float", "text": "text"}
"""information_schema data type → the kind the copy compares."""

_cursors = itertools.count(1)
"""Numbers the server-side cursors (each open one needs its own name)."""


class PostgresRows:
    """Reads (and, in `replacing`, writes) the raw rows in one open transaction."""

    def __init__(self, database: Database, conn: Connection) -> None:
        self._db: Connection = conn
        self._errors = database.errors

    def count(self, table: str) -> int:
        found = self._db.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table)))
        row = found.fetchone()
        assert row is not None
        return int(str(row[0]))

    def rows(
        self, table: str, columns: Sequence[str], key: Sequence[str], batch: int
    ) -> Iterator[tuple[object, ...]]:
        """The table's rows in key order (bytes order: the columns collate "C"), `batch` at a
        time from the server. Its errors name this database even when another store's write
        is what consumes the rows."""
        query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, key)),
        )
        with (
            self._errors(),
            self._db.cursor(name=f"aggregator_copy_{next(_cursors)}") as cursor,
        ):
            cursor.itersize = batch
            cursor.execute(query)
            while chunk := cursor.fetchmany(batch):
                yield from chunk

    def delete(self, table: str) -> None:
        self._db.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with self._db.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)


class PostgresDump:
    """The raw rows of a `PostgresStore` (open: migrated to the current schema)."""

    def __init__(self, store: PostgresStore) -> None:
        self._db: Database = store._db
        self.name = self._db.shown

    def identity(self) -> tuple[object, ...]:
        """What tells this database (and schema) from another whatever the URL's spelling."""
        with self._db.reading() as db:
            row = db.execute(
                "SELECT inet_server_addr()::text, inet_server_port(), current_database(), "
                "current_schema()"
            ).fetchone()
        assert row is not None
        return ("postgres", *row)

    def describe(self) -> dict[str, tuple[dict[str, str], tuple[str, ...]]]:
        """table → (column → kind, primary key columns in order), as the database has them
        (its current schema)."""
        shapes: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {}
        with self._db.reading() as db:
            for table, column, kind in db.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
            ):
                shapes.setdefault(str(table), ({}, ()))[0][str(column)] = KINDS.get(
                    str(kind), str(kind)
                )
            for table, column in db.execute(
                "SELECT tc.table_name, kcu.column_name "
                "FROM information_schema.table_constraints tc "
                "JOIN information_schema.key_column_usage kcu "
                "ON kcu.constraint_name = tc.constraint_name "
                "AND kcu.table_schema = tc.table_schema AND kcu.table_name = tc.table_name "
                "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema() "
                "ORDER BY tc.table_name, kcu.ordinal_position"
            ):
                columns, key = shapes[str(table)]
                shapes[str(table)] = (columns, (*key, str(column)))
        return shapes

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[PostgresRows]:
        """The rows as of one moment: a read-only, repeatable-read transaction."""
        with self._db.reading() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PostgresRows(self._db, conn)

    @contextlib.contextmanager
    def replacing(self) -> Iterator[PostgresRows]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._db.writing() as conn:
            yield PostgresRows(self._db, conn)

    def close(self) -> None:
        self._db.close()
