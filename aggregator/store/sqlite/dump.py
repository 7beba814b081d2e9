"""The SQLite state's raw rows, table by table, for `aggregator state copy`
(`aggregator.store.copy`): a consistent snapshot to read, one transaction to replace.

Tables and columns are named by the caller (the copy's table list); only constant
names from that list are ever put into SQL, every value goes through a placeholder.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from aggregator.store.sqlite import SqliteStore
from aggregator.store.sqlite.db import Database

KINDS = {"INTEGER": "int", "REAL": "float", "TEXT": "text"}
"""Declared column type → the kind the copy compares."""


class SqliteRows:
    """Reads (and, in `replacing`, writes) the raw rows of one open connection."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def count(self, table: str) -> int:
        (found,) = self._db.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        return int(found)

    def rows(
        self, table: str, columns: Sequence[str], key: Sequence[str], batch: int
    ) -> Iterator[tuple[object, ...]]:
        """The table's rows in key order, `batch` at a time from the file. Its errors name
        this file even when another store's write is what consumes the rows."""
        with self._db.errors():
            cursor = self._db.db.execute(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(key)}"
            )
            try:
                while chunk := cursor.fetchmany(batch):
                    yield from chunk
            finally:
                cursor.close()

    def delete(self, table: str) -> None:
        self._db.db.execute(f"DELETE FROM {table}")

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        marks = ", ".join("?" * len(columns))
        self._db.db.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
        )


class SqliteDump:
    """The raw rows of a `SqliteStore` (open: created or migrated to the current schema)."""

    def __init__(self, store: SqliteStore) -> None:
        self._db: Database = store._db
        self.name = self._db.path

    def identity(self) -> tuple[object, ...]:
        """What tells this state file from another whatever its path's spelling."""
        found = os.stat(self._db.path)
        return ("sqlite", found.st_dev, found.st_ino)

    def describe(self) -> dict[str, tuple[dict[str, str], tuple[str, ...]]]:
        """table → (column → kind, primary key columns in order), as the file has them."""
        shapes: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {}
        with self._db.reading() as db:
            names = [
                name
                for (name,) in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            for name in names:
                info = db.execute(f"PRAGMA table_info({name})").fetchall()
                columns = {row[1]: KINDS.get(str(row[2]).upper(), str(row[2])) for row in info}
                key = tuple(row[1] for row in sorted(info, key=lambda row: row[5]) if row[5])
                shapes[name] = (columns, key)
        return shapes

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[SqliteRows]:
        """The rows as of one moment: a read transaction (WAL: writers go on meanwhile)."""
        with self._db.lock, self._db.errors():
            self._db.check_file()
            self._db.db.execute("BEGIN")
            try:
                self._db.db.execute("SELECT COUNT(*) FROM meta").fetchone()  # the snapshot starts
                yield SqliteRows(self._db)
            finally:
                with contextlib.suppress(sqlite3.Error):
                    self._db.db.execute("ROLLBACK")  # nothing was written

    @contextlib.contextmanager
    def replacing(self) -> Iterator[SqliteRows]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._db.transaction():
            yield SqliteRows(self._db)

    def close(self) -> None:
        self._db.close()
