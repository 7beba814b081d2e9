"""The link checker's state per URL, and the hosts' pauses (SQLite): `links`, `host_pauses`."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime

from aggregator.entries import from_micros
from aggregator.links import LinkState, state_from_json, state_to_json
from aggregator.plan import to_micros
from aggregator.store.sqlite.db import Database
from aggregator.urls import host_of

_NONE_CHECKED = "SELECT NOT EXISTS (SELECT 1 FROM links WHERE checked = 1)"
"""Answered from the index `links_due` (checked, next_check_us)."""


class SqliteLinks:
    """`LinkStore` on the state file."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def ensure(self, urls: Iterable[str]) -> None:
        rows = link_rows(urls)
        with self._db.writing() as db:
            write_link_rows(db, rows)

    def link_states(self, urls: Sequence[str]) -> dict[str, LinkState]:
        select = "SELECT url, state FROM links WHERE state IS NOT NULL AND url IN"
        with self._db.reading() as db:
            # Only a checked link has a state (`save_link_states`); before the first check
            # (a cold build asks of every article's URLs) there is nothing to look up.
            if not urls or db.execute(_NONE_CHECKED).fetchone()[0]:
                return {}
            return {
                url: state_from_json(url, text) for url, text in self._db.in_chunks(select, urls)
            }

    def due_links(self, now: datetime, limit: int, everything: bool = False) -> list[str]:
        where = "" if everything else "WHERE next_check_us <= :now"
        with self._db.reading() as db:
            rows = db.execute(
                f"SELECT url FROM links {where} ORDER BY checked, next_check_us, url LIMIT :limit",
                {"now": to_micros(now), "limit": limit},
            )
            return [row[0] for row in rows]

    def save_link_states(
        self,
        states: Sequence[LinkState],
        deferred: Mapping[str, datetime],
        due: Collection[str] = (),
    ) -> None:
        with self._db.writing() as db:
            for state in states:
                assert state.next_check is not None
                db.execute(
                    "INSERT INTO links (url, host, checked, next_check_us, state)"
                    " VALUES (?, ?, 1, ?, ?) ON CONFLICT (url) DO UPDATE SET checked = 1,"
                    " next_check_us = excluded.next_check_us, state = excluded.state",
                    (
                        state.url,
                        _host(state.url),
                        to_micros(state.next_check),
                        state_to_json(state),
                    ),
                )
            db.executemany(
                "INSERT OR IGNORE INTO dirty SELECT entry_id FROM entries"
                " WHERE original_url = ? OR web_url = ?",
                [(url, url) for url in due],
            )
            db.executemany(
                "UPDATE links SET next_check_us = ? WHERE url = ?",
                [(to_micros(when), url) for url, when in deferred.items()],
            )

    def forget_unused_links(self) -> int:
        with self._db.writing() as db:
            cursor = db.execute(
                "DELETE FROM links WHERE url NOT IN (SELECT original_url FROM entries"
                " WHERE original_url IS NOT NULL UNION SELECT web_url FROM entries"
                " WHERE web_url IS NOT NULL)"
            )
            return cursor.rowcount

    def pauses(self) -> dict[str, datetime]:
        with self._db.reading() as db:
            return {
                host: from_micros(until)
                for host, until in db.execute("SELECT host, until_us FROM host_pauses")
            }

    def keep_pauses(self, pauses: Mapping[str, datetime]) -> None:
        with self._db.writing() as db:
            db.execute("DELETE FROM host_pauses")
            db.executemany(
                "INSERT INTO host_pauses VALUES (?, ?)",
                [(host, to_micros(until)) for host, until in pauses.items()],
            )


def _host(url: str) -> str:
    try:
        return host_of(url)
    except ValueError:
        return ""


def link_rows(urls: Iterable[str]) -> list[tuple[str, str]]:
    """The rows `SqliteLinks.ensure` writes for `urls` (see `store.rows.entry_rows`)."""
    return [(u, _host(u)) for u in urls]


def write_link_rows(db: sqlite3.Connection, rows: Sequence[tuple[str, str]]) -> None:
    """Write what `link_rows` made (in a transaction)."""
    db.executemany("INSERT OR IGNORE INTO links (url, host) VALUES (?, ?)", rows)
