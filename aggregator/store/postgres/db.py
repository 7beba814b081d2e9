"""The PostgreSQL connection shared by the concerns: one lock, one transaction scope, errors.

psycopg stays inside `aggregator.store.postgres`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence

import psycopg
from psycopg.rows import TupleRow

from aggregator.errors import StateError
from aggregator.store.postgres.schema import migrate
from aggregator.urls import hide_password as redact

Connection = psycopg.Connection[TupleRow]
"""The connection type the concerns are given."""


def many(db: Connection, statement: str, rows: Iterable[Sequence[object]]) -> None:
    """Run `statement` once per row (pipelined by psycopg); nothing when there are no rows."""
    batch = list(rows)
    if batch:
        with db.cursor() as cursor:
            cursor.executemany(statement, batch)


class Database:
    """The database's connection (autocommit off). Every `writing` block is one transaction
    (or a part of the `transaction()` around it); a lock serializes threads.

    Raises `StateError` when the database cannot be reached or is from a newer version.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redact(url)
        self.lock = threading.RLock()
        self._depth = 0
        """How many `transaction()` blocks are open."""
        try:
            self.db = psycopg.connect(url, autocommit=False, connect_timeout=10)
        except psycopg.Error as exc:
            raise StateError(
                f"{self.shown}: cannot connect to the state database ({_line(exc)})"
            ) from None
        try:
            with self.errors():
                migrate(self.db, self.shown)
        except BaseException:
            self.db.close()
            raise

    def check_file(self) -> None:
        """Raise `StateError` when the connection to the database is lost or closed."""
        if self.db.closed or self.db.broken:
            raise StateError(f"{self.shown}: the connection to the state database is lost")

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction around the block (a savepoint inside another); rolled back when
        the block raises (the exception propagates)."""
        with self.lock, self.errors(), self.db.transaction():
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """The connection, in a transaction: its own, or the `transaction()` open around it."""
        with self.lock:
            if self._depth:
                with self.errors():
                    yield self.db
                return
            with self.transaction():
                yield self.db

    reading = writing
    """The connection, for reads: the same as for writes (PostgreSQL reads in a
    transaction too, so that several reads of one call see one snapshot)."""

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn psycopg's errors into `StateError` naming the database (no password)."""
        try:
            yield
        except psycopg.Error as exc:
            raise StateError(f"{self.shown}: state database error ({_line(exc)})") from None


def _line(exc: BaseException) -> str:
    """The first line of an error's message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
