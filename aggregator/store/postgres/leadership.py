"""Leadership of a shared database, and notifications of new documents (PostgreSQL).

`PostgresElection` holds a session-level advisory lock on a connection of its own: the
server releases it when that connection dies (the process killed: its socket closes) or
when the session stays idle past the lease (`idle_session_timeout`: the process paused,
the network cut), so there is never more than one holder and never a stale one. Winning
raises the term in `leadership`; a write transaction still in flight from the previous
leader holds a share lock on that row (see `db.Database`), and is ended by the winner
rather than waited for.

`PostgresNotifications` LISTENs on `documents.CHANNEL` on a connection of its own.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow

from aggregator.errors import StateError
from aggregator.store.postgres.db import CONNECT_TIMEOUT, KEEPALIVES, _line
from aggregator.store.postgres.documents import CHANNEL

LEADER_KEY = 0x61676C64  # "agld"
"""The advisory lock key leadership holds (the migration lock is another)."""
SERVICE_PREFIX = "aggregator run: "
"""The application name of a service instance's election session (then its name)."""
COMMAND_PREFIX = "aggregator command: "
"""The application name of a one-off command's election session."""
_TAKE_OVER_TRIES = 10

_END_OLD_WRITERS = """
SELECT pg_terminate_backend(pid) FROM pg_locks
WHERE locktype = 'relation' AND relation = 'leadership'::regclass
  AND mode = 'RowShareLock' AND pid <> pg_backend_pid()
"""
"""Ends the sessions holding the term row for a write (an earlier leader's, in flight)."""


class _Session:
    """One autocommit connection of its own, opened on first use and again after a loss."""

    def __init__(self, url: str, shown: str, options: dict[str, Any]) -> None:
        self._url = url
        self._shown = shown
        self._options = options
        self.conn: psycopg.Connection[TupleRow] | None = None

    def open(self) -> psycopg.Connection[TupleRow]:
        if self.conn is None or self.conn.closed:
            try:
                self.conn = psycopg.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT,
                    **KEEPALIVES,
                    **self._options,
                )
            except psycopg.Error as exc:
                raise self.error(exc) from None
        return self.conn

    def error(self, exc: psycopg.Error) -> StateError:
        self.close()
        return StateError(f"{self._shown}: state database error ({_line(exc)})")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class PostgresElection:
    """`Election` on the database."""

    def __init__(self, url: str, shown: str, lease: float, name: str, service: bool = True) -> None:
        millis = max(1000, round(lease * 1000))
        # The application name tells the instances apart in pg_stat_activity, and
        # services from one-off commands (see `services`). The user timeout bounds how
        # long a write to a vanished server may hang.
        prefix = SERVICE_PREFIX if service else COMMAND_PREFIX
        options = {"tcp_user_timeout": millis, "application_name": (prefix + name)[:63]}
        self._session = _Session(url, shown, options)
        self._lease_ms = millis
        self._leading = False

    def try_lead(self, holder: str) -> int | None:
        try:
            conn = self._session.open()
            conn.execute(f"SET idle_session_timeout = {self._lease_ms}")
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_KEY,)).fetchone()
            if row is None or not row[0]:
                return None
            self._leading = True
            conn.execute("SET lock_timeout = 1000")
            for _ in range(_TAKE_OVER_TRIES):
                try:
                    won = conn.execute(
                        "UPDATE leadership SET term = term + 1, holder = %s, since = now()"
                        " WHERE id = 1 RETURNING term",
                        (holder,),
                    ).fetchone()
                except pg_errors.LockNotAvailable:
                    conn.execute(_END_OLD_WRITERS)
                    continue
                assert won is not None
                return int(won[0])
        except psycopg.Error as exc:
            self._leading = False
            raise self._session.error(exc) from None
        self.close()
        raise StateError("could not take over leadership: the term is locked by old writers")

    def renew(self) -> int:
        try:
            row = self._session.open().execute("SELECT term FROM leadership WHERE id = 1")
            found = row.fetchone()
        except psycopg.Error as exc:
            self._leading = False
            raise self._session.error(exc) from None
        return int(found[0]) if found is not None else 0

    def leader(self) -> tuple[int, str]:
        try:
            row = self._session.open().execute("SELECT term, holder FROM leadership WHERE id = 1")
            found = row.fetchone()
        except psycopg.Error as exc:
            raise self._session.error(exc) from None
        return (int(found[0]), str(found[1])) if found is not None else (0, "")

    def services(self) -> list[str]:
        try:
            rows = self._session.open().execute(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND starts_with(application_name, %s)",
                (SERVICE_PREFIX,),
            )
            found = rows.fetchall()
        except psycopg.Error as exc:
            raise self._session.error(exc) from None
        return sorted(str(name)[len(SERVICE_PREFIX) :] for (name,) in found)

    def close(self) -> None:
        # Unlocked before the connection closes: the server releases a closed session's
        # locks only once its backend has exited, which the next candidate could beat.
        if self._leading and self._session.conn is not None and not self._session.conn.closed:
            with contextlib.suppress(psycopg.Error):
                self._session.conn.execute("SELECT pg_advisory_unlock(%s)", (LEADER_KEY,))
        self._leading = False
        self._session.close()


class PostgresNotifications:
    """`Notifications` on the database."""

    def __init__(self, url: str, shown: str) -> None:
        self._session = _Session(url, shown, {})
        self._listening = False

    def wait(self, timeout: float) -> bool:
        try:
            conn = self._session.open()
            if not self._listening:
                conn.execute(f"LISTEN {CHANNEL}")
                self._listening = True
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error as exc:
            self._listening = False
            raise self._session.error(exc) from None
        return False

    def close(self) -> None:
        self._listening = False
        self._session.close()
