"""The recorded settings and the "reread if changed" marks (PostgreSQL): `meta`."""

from __future__ import annotations

from aggregator.store.postgres.db import Connection, Database

_RECORD = "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


class PostgresSettings:
    """`SettingsStore` on the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def settings_changed(self, name: str, value: str) -> bool:
        with self._db.writing() as db:
            before = _recorded(db, name)
            if before == value:
                return False
            db.execute(_RECORD, (name, value))
            return before is not None

    def recorded(self, name: str) -> str | None:
        with self._db.reading() as db:
            return _recorded(db, name)

    def setdefault(self, name: str, value: str) -> str:
        with self._db.writing() as db:
            db.execute(
                "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (name, value)
            )
            recorded = _recorded(db, name)
        return value if recorded is None else recorded

    def reread_all_if_changed(self, name: str, value: str) -> bool:
        with self._db.writing() as db:
            if _recorded(db, name) == value:
                return False
            db.execute("UPDATE seeds SET mtime_ns = -1, digest = ''")
            db.execute(_RECORD, (name, value))
            return True

    def reread_rejected_if_changed(self, settings: str) -> bool:
        with self._db.writing() as db:
            before = _recorded(db, "seed_settings")
            if before == settings:
                return False
            db.execute("UPDATE seeds SET mtime_ns = -1, digest = '' WHERE error IS NOT NULL")
            db.execute(_RECORD, ("seed_settings", settings))
            return before is not None


def _recorded(db: Connection, name: str) -> str | None:
    """The value recorded under `name`; None: none."""
    row = db.execute("SELECT value FROM meta WHERE key = %s", (name,)).fetchone()
    return None if row is None else str(row[0])
