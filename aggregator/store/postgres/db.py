"""The PostgreSQL connections shared by the concerns: a pool, one transaction scope, fencing,
errors.

Connections come from a `psycopg_pool.ConnectionPool`, which checks each one before handing
it out and replaces those that broke (a database restart, a cut network), so the store
recovers without a restart of the service. A lock serializes threads, as in the SQLite
engine: one transaction at a time, reads included.

**Fencing.** With several instances on one database, only the elected leader writes
(aggregator.cluster). Each election raises the term in the `leadership` table; `fence(term)`
makes every write transaction of this store check, as it begins and again just before it
commits, that the term is still its own, holding a share lock on that row throughout. A
leader that was paused (SIGSTOP, a long GC, a cut network) and replaced meanwhile finds a
newer term there: its transaction is rolled back with `Fenced`, so it cannot overwrite its
successor's work; and the share lock lets the successor end a transaction left in flight
(see `leadership.PostgresElection`) instead of waiting on its row locks.

psycopg stays inside `aggregator.store.postgres`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from aggregator.errors import Fenced, StateError
from aggregator.store.postgres.schema import migrate
from aggregator.store.shared import NO_TERM
from aggregator.urls import hide_password as redact

Connection = psycopg.Connection[TupleRow]
"""The connection type the concerns are given."""

MIN_SERVER_VERSION = 140000
"""PostgreSQL 14: leadership lapses through `idle_session_timeout`, new in 14."""
CONNECT_TIMEOUT = 10
"""Seconds to wait for a connection (new, or from the pool) before the call fails."""
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}
"""TCP keepalives: a peer that vanished (a cut network) is noticed within about 11 s."""
IDLE_IN_TRANSACTION = "60s"
"""The server ends a session left idle inside a transaction this long (its locks go)."""


def many(db: Connection, statement: str, rows: Iterable[Sequence[object]]) -> None:
    """Run `statement` once per row (pipelined by psycopg); nothing when there are no rows."""
    batch = list(rows)
    if batch:
        with db.cursor() as cursor:
            cursor.executemany(statement, batch)


def _configure(conn: Connection) -> None:
    conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'")
    conn.commit()


class Database:
    """The database (autocommit off). Every `writing` block is one transaction (or a part of
    the `transaction()` around it); a lock serializes threads.

    Raises `StateError` when the database cannot be reached or is from a newer version.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redact(url)
        self.lock = threading.RLock()
        self._conn: Connection | None = None
        """The connection of the open transaction, if any."""
        self._fence: int | None = None
        try:
            first = psycopg.connect(
                url, autocommit=False, connect_timeout=CONNECT_TIMEOUT, **KEEPALIVES
            )
        except psycopg.Error as exc:
            raise StateError(
                f"{self.shown}: cannot connect to the state database ({_line(exc)})"
            ) from None
        try:
            if first.info.server_version < MIN_SERVER_VERSION:
                raise StateError(
                    f"{self.shown}: PostgreSQL {first.info.server_version // 10000} is too old; "
                    f"the state needs PostgreSQL {MIN_SERVER_VERSION // 10000} or newer"
                )
            with self.errors():
                migrate(first, self.shown)
        finally:
            first.close()
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            min_size=1,
            max_size=1,
            kwargs={"autocommit": False, "connect_timeout": CONNECT_TIMEOUT, **KEEPALIVES},
            configure=_configure,
            check=ConnectionPool.check_connection,
            timeout=CONNECT_TIMEOUT,
            reconnect_timeout=86_400,
            name="aggregator-state",
            open=True,
        )

    def fence(self, term: int | None) -> None:
        """Check every write transaction against `term` from now on (`NO_TERM`: refuse every
        write; None: no check, for a sole writer). Takes effect at once, even while a
        transaction is open on another thread (it is checked before that one commits)."""
        self._fence = term

    def check_file(self) -> None:
        """Raise `StateError` when the database cannot be reached."""
        with self.reading() as db:
            db.execute("SELECT 1")

    def close(self) -> None:
        with self.lock:
            self._pool.close()

    @contextlib.contextmanager
    def transaction(self, fenced: bool = True) -> Iterator[None]:
        """One transaction around the block (a savepoint inside another); rolled back when
        the block raises (the exception propagates). A fenced transaction checks the term
        when it begins and again before it commits (see the module's docstring), and
        raises `Fenced`."""
        with self.lock, self.errors():
            if self._conn is not None:
                with self._conn.transaction():
                    yield
                return
            with self._pool.connection() as conn:
                self._conn = conn
                try:
                    with conn.transaction():
                        if fenced and self._fence is not None:
                            # From its start: the share lock marks it as in flight, so
                            # that a new leader ends it rather than wait on its row locks.
                            self._check_term(conn, self._fence)
                        yield
                        if fenced and self._fence is not None:
                            self._check_term(conn, self._fence)
                finally:
                    self._conn = None

    def _check_term(self, conn: Connection, term: int) -> None:
        row = conn.execute("SELECT term FROM leadership WHERE id = 1 FOR SHARE").fetchone()
        current = int(str(row[0])) if row is not None else 0
        if current != term or term == NO_TERM:  # before any election, the term is 0 too
            what = "this instance is a follower" if term == NO_TERM else f"ours is {term}"
            raise Fenced(
                f"{self.shown}: write refused: the state database's leader term is "
                f"{current} and {what}; another instance leads"
            )

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """The connection, in a transaction: its own (fenced), or the one open around it."""
        with self.lock:
            if self._conn is not None:
                with self.errors():
                    yield self._conn
                return
            with self.transaction():
                assert self._conn is not None
                yield self._conn

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """The connection, for reads: in a transaction (its own, not fenced, or the one open
        around it), so that several reads of one call see one snapshot."""
        with self.lock:
            if self._conn is not None:
                with self.errors():
                    yield self._conn
                return
            with self.transaction(fenced=False):
                assert self._conn is not None
                yield self._conn

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
