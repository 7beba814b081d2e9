"""The recorded settings and the "reread if changed" marks (SQLite): `meta`."""

from __future__ import annotations

from aggregator.store.sqlite.db import Database


class SqliteSettings:
    """`SettingsStore` on the state file."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def settings_changed(self, name: str, value: str) -> bool:
        with self._db.writing() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
            if row is not None and row[0] == value:
                return False
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
            return row is not None

    def recorded(self, name: str) -> str | None:
        with self._db.reading() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def setdefault(self, name: str, value: str) -> str:
        with self._db.writing() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
            if row is not None:
                return str(row[0])
            db.execute("INSERT INTO meta VALUES (?, ?)", (name, value))
            return value

    def reread_all_if_changed(self, name: str, value: str) -> bool:
        with self._db.writing() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
            if row is not None and row[0] == value:
                return False
            db.execute("UPDATE seeds SET mtime_ns = -1, digest = ''")
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
            return True

    def reread_rejected_if_changed(self, settings: str) -> bool:
        with self._db.writing() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'seed_settings'").fetchone()
            if row is not None and row[0] == settings:
                return False
            db.execute("UPDATE seeds SET mtime_ns = -1, digest = '' WHERE error IS NOT NULL")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('seed_settings', ?)", (settings,))
            return row is not None
