"""The link checker's state per URL, and the hosts' pauses (PostgreSQL): `links`,
`host_pauses`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime

from aggregator.entries import from_micros
from aggregator.links import LinkState, state_from_json, state_to_json
from aggregator.plan import to_micros
from aggregator.store.postgres.bulk import insert_text
from aggregator.store.postgres.db import Database, many
from aggregator.urls import host_of


class PostgresLinks:
    """`LinkStore` on the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def ensure(self, urls: Iterable[str]) -> None:
        with self._db.writing() as db:
            insert_text(
                db, "links (url, host)", [(u, _host(u)) for u in urls], "ON CONFLICT DO NOTHING"
            )

    def link_states(self, urls: Sequence[str]) -> dict[str, LinkState]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT url, state FROM links WHERE state IS NOT NULL AND url = ANY(%s)",
                (list(urls),),
            )
            return {url: state_from_json(url, text) for url, text in rows}

    def due_links(self, now: datetime, limit: int, everything: bool = False) -> list[str]:
        where = "" if everything else "WHERE next_check_us <= %(now)s"
        with self._db.reading() as db:
            rows = db.execute(
                f"SELECT url FROM links {where} ORDER BY checked, next_check_us, url"
                " LIMIT %(limit)s",
                {"now": to_micros(now), "limit": limit},
            )
            return [row[0] for row in rows]

    def save_link_states(
        self,
        states: Sequence[LinkState],
        deferred: Mapping[str, datetime],
        due: Collection[str] = (),
    ) -> None:
        rows = []
        for state in states:
            assert state.next_check is not None
            rows.append(
                (state.url, _host(state.url), to_micros(state.next_check), state_to_json(state))
            )
        with self._db.writing() as db:
            many(
                db,
                "INSERT INTO links (url, host, checked, next_check_us, state)"
                " VALUES (%s, %s, 1, %s, %s) ON CONFLICT (url) DO UPDATE SET checked = 1,"
                " next_check_us = excluded.next_check_us, state = excluded.state",
                rows,
            )
            if due:
                urls = list(due)
                db.execute(
                    "INSERT INTO dirty SELECT entry_id FROM entries"
                    " WHERE original_url = ANY(%s) OR web_url = ANY(%s) ON CONFLICT DO NOTHING",
                    (urls, urls),
                )
            many(
                db,
                "UPDATE links SET next_check_us = %s WHERE url = %s",
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
            many(
                db,
                "INSERT INTO host_pauses VALUES (%s, %s)",
                [(host, to_micros(until)) for host, until in pauses.items()],
            )


def _host(url: str) -> str:
    try:
        return host_of(url)
    except ValueError:
        return ""
