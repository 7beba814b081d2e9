"""The state file's schema: one migration per version, applied in order when a file is opened.

seeds         one row per seed file: size, mtime, content digest, the last
              good parsed record, the current error (if any)
seed_topics   the topic spellings each seed uses
entries       one row per story (see `aggregator.stories`): the lead's copy, the
              columns the feed filters and ordering need, the story's coverage
entry_feeds   which feeds (kind, key) each entry is in, for the kinds that
              store their members (the `all` kind stores nothing)
seed_related  the article ids of each seed's related URLs (what links stories)
members       per article: the story (entry id) it was last given, the seed whose
              copy is used, its provider
ledger        per entry id: hash of what readers see, first seen, updated;
              kept when the entry goes away, so a returning entry keeps its dates
dirty         entries whose seeds changed and that refresh has yet to
              bring up to date (written in the same transaction as the
              seeds, so a crash in between loses nothing)
links         per article URL: the link checker's state (verdict, redirects,
              validators, history) and when it is due
host_pauses   per host name or server: until when it asked to be left alone
thumbs        per image URL: its thumbnail file, or its failed fetches
topic_slugs   the file name each topic was given, kept for good so that no
              look-alike topic can ever take over a feed's URL
feed_stamps   per feed: the entries it showed and when it last lost one
              (its `updated` never goes back)
feed_archives per feed: the closed archive pages' bounds and digests
meta          the settings the stored data depends on
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from aggregator.errors import StateError
from aggregator.feeds import ALL_KIND, TOPIC_KIND
from aggregator.plan import to_micros

SCHEMA_VERSION = 8

STAMP_PREFIX = "feed_stamp:"
"""Prefix of the `meta` keys that held each feed's stamp before schema 5 (then its topic
key; "": all)."""
PAUSES_KEY = "host_pauses"
"""The `meta` key that held the host pauses (JSON: host → ISO moment) before schema 5."""

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE seeds (
        source       TEXT PRIMARY KEY,
        size         INTEGER NOT NULL,
        mtime_ns     INTEGER NOT NULL,
        digest       TEXT NOT NULL,
        error        TEXT,
        warnings     TEXT NOT NULL DEFAULT '[]',
        entry_id     TEXT,
        article      TEXT,
        published_us INTEGER,
        quality      REAL,
        is_published INTEGER,
        shown        TEXT
    );
    CREATE INDEX seeds_entry ON seeds(entry_id) WHERE entry_id IS NOT NULL;
    CREATE TABLE seed_topics (
        source   TEXT NOT NULL,
        spelling TEXT NOT NULL,
        PRIMARY KEY (source, spelling)
    ) WITHOUT ROWID;
    CREATE TABLE entries (
        entry_id     TEXT PRIMARY KEY,
        source       TEXT NOT NULL,
        published_us INTEGER NOT NULL,
        quality      REAL,
        is_published INTEGER
    );
    CREATE INDEX entries_order ON entries(published_us DESC, entry_id);
    CREATE TABLE entry_topics (
        key      TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        PRIMARY KEY (key, entry_id)
    ) WITHOUT ROWID;
    CREATE INDEX entry_topics_entry ON entry_topics(entry_id);
    CREATE TABLE ledger (
        entry_id      TEXT PRIMARY KEY,
        content_hash  TEXT NOT NULL,
        first_seen_us INTEGER NOT NULL,
        updated_us    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE dirty (entry_id TEXT PRIMARY KEY) WITHOUT ROWID;
    """,
    2: """
    CREATE TABLE topic_slugs (
        key  TEXT PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE
    ) WITHOUT ROWID;
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    3: """
    ALTER TABLE seeds ADD COLUMN original_url TEXT;
    ALTER TABLE seeds ADD COLUMN web_url TEXT;
    ALTER TABLE entries ADD COLUMN original_url TEXT;
    ALTER TABLE entries ADD COLUMN web_url TEXT;
    ALTER TABLE entries ADD COLUMN link TEXT;
    ALTER TABLE entries ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX entries_original ON entries(original_url);
    CREATE INDEX entries_web ON entries(web_url);
    CREATE TABLE links (
        url           TEXT PRIMARY KEY,
        host          TEXT NOT NULL,
        checked       INTEGER NOT NULL DEFAULT 0,
        next_check_us INTEGER NOT NULL DEFAULT 0,
        state         TEXT
    );
    CREATE INDEX links_due ON links(checked, next_check_us);
    UPDATE seeds SET mtime_ns = -1, digest = '';
    """,
    4: """
    CREATE TABLE archives (
        topic   TEXT PRIMARY KEY,
        bounds  TEXT NOT NULL DEFAULT '[]',
        digests TEXT NOT NULL DEFAULT '[]'
    ) WITHOUT ROWID;
    CREATE TABLE thumbs (
        url         TEXT PRIMARY KEY,
        file        TEXT,
        tries       INTEGER NOT NULL DEFAULT 0,
        next_try_us INTEGER NOT NULL DEFAULT 0,
        detail      TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    """,
    5: f"""
    CREATE TABLE entry_feeds (
        kind     TEXT NOT NULL,
        key      TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        PRIMARY KEY (kind, key, entry_id)
    ) WITHOUT ROWID;
    CREATE INDEX entry_feeds_entry ON entry_feeds(entry_id);
    INSERT INTO entry_feeds (kind, key, entry_id)
        SELECT '{TOPIC_KIND}', key, entry_id FROM entry_topics;
    DROP TABLE entry_topics;
    CREATE TABLE feed_archives (
        kind    TEXT NOT NULL,
        key     TEXT NOT NULL,
        bounds  TEXT NOT NULL DEFAULT '[]',
        digests TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;
    INSERT INTO feed_archives (kind, key, bounds, digests)
        SELECT CASE topic WHEN '' THEN '{ALL_KIND}' ELSE '{TOPIC_KIND}' END, topic, bounds,
        digests FROM archives;
    DROP TABLE archives;
    CREATE TABLE feed_stamps (
        kind       TEXT NOT NULL,
        key        TEXT NOT NULL,
        ids        TEXT NOT NULL,
        floor_us   INTEGER,
        updated_us INTEGER,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;
    CREATE TABLE host_pauses (
        host     TEXT PRIMARY KEY,
        until_us INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    6: """
    CREATE TABLE seed_related (
        source     TEXT NOT NULL,
        related_id TEXT NOT NULL,
        PRIMARY KEY (source, related_id)
    ) WITHOUT ROWID;
    CREATE INDEX seed_related_id ON seed_related(related_id);
    CREATE TABLE members (
        article  TEXT PRIMARY KEY,
        story    TEXT NOT NULL,
        source   TEXT NOT NULL,
        provider TEXT
    ) WITHOUT ROWID;
    CREATE INDEX members_story ON members(story);
    CREATE INDEX seeds_published ON seeds(published_us) WHERE published_us IS NOT NULL;
    ALTER TABLE entries ADD COLUMN related TEXT;
    UPDATE seeds SET mtime_ns = -1, digest = '';
    """,
    # Indexes that answer what every build asks (the stat table, the rejected seeds, the
    # duplicates) without reading the seeds' rows, which hold each parsed article.
    7: """
    CREATE INDEX seeds_stat ON seeds(source, size, mtime_ns);
    CREATE INDEX seeds_rejected ON seeds(source, error) WHERE error IS NOT NULL;
    DROP INDEX IF EXISTS seeds_entry;
    CREATE INDEX seeds_entry ON seeds(entry_id, source) WHERE entry_id IS NOT NULL;
    """,
    # The dates of the articles a refresh asks about, from the index alone: the seeds'
    # rows hold whole articles, and reading 100,000 of them took 0.65 s, the index 0.16.
    8: """
    DROP INDEX IF EXISTS seeds_entry;
    CREATE INDEX seeds_entry ON seeds(entry_id, source, published_us) WHERE entry_id IS NOT NULL;
    """,
}


def _carry_meta_over(db: sqlite3.Connection) -> None:
    """Schema 5: move the feed stamps and host pauses kept as JSON in `meta` to their tables."""
    stamps = db.execute(
        "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(STAMP_PREFIX), STAMP_PREFIX)
    ).fetchall()
    for name, value in stamps:
        key = name[len(STAMP_PREFIX) :]
        data = json.loads(value)
        db.execute(
            "INSERT OR REPLACE INTO feed_stamps VALUES (?, ?, ?, ?, ?)",
            (
                TOPIC_KIND if key else ALL_KIND,
                key,
                json.dumps(list(data["ids"]), separators=(",", ":")),
                data["floor"],
                data["updated"],
            ),
        )
    row = db.execute("SELECT value FROM meta WHERE key = ?", (PAUSES_KEY,)).fetchone()
    if row is not None:
        pauses: dict[str, str] = json.loads(row[0])
        db.executemany(
            "INSERT OR REPLACE INTO host_pauses VALUES (?, ?)",
            [(host, to_micros(datetime.fromisoformat(until))) for host, until in pauses.items()],
        )
    db.execute(
        "DELETE FROM meta WHERE key = ? OR substr(key, 1, ?) = ?",
        (PAUSES_KEY, len(STAMP_PREFIX), STAMP_PREFIX),
    )


_AFTER: dict[int, Callable[[sqlite3.Connection], None]] = {5: _carry_meta_over}
"""The steps of a migration that SQL alone cannot take, run after its statements."""


LOOKUP_INDEXES = {
    "seeds_entry": "CREATE INDEX IF NOT EXISTS seeds_entry ON seeds(entry_id, source, published_us)"
    " WHERE entry_id IS NOT NULL",
    "seeds_published": "CREATE INDEX IF NOT EXISTS seeds_published ON seeds(published_us)"
    " WHERE published_us IS NOT NULL",
    "seed_related_id": "CREATE INDEX IF NOT EXISTS seed_related_id ON seed_related(related_id)",
}
BULK_LOAD = 5000
"""Rows loaded at once into an empty table from which its indexes are built after the load,
not row by row (`SqliteSeeds.loading`, `SqliteEntries.loading`)."""

LISTING_INDEXES = {
    "entries_order": "CREATE INDEX IF NOT EXISTS entries_order"
    " ON entries(published_us DESC, entry_id)",
    "entries_original": "CREATE INDEX IF NOT EXISTS entries_original ON entries(original_url)",
    "entries_web": "CREATE INDEX IF NOT EXISTS entries_web ON entries(web_url)",
}
"""The indexes that list entries by date and find them by URL: a large refresh of an empty
state builds them at its end, inside its transaction (`SqliteEntries.loading`)."""
"""The indexes that find seeds by article id or date, as the migrations create them: a
large load into an empty state drops them and builds them at its end, in one sort each,
rather than row by row in random order (`SqliteSeeds.loading`). Every open makes sure
they are there, should a process have died in between."""


def migrate(
    db: sqlite3.Connection,
    path: str,
    writing: Callable[[], AbstractContextManager[sqlite3.Connection]],
) -> None:
    """Bring the file to `SCHEMA_VERSION`, one migration (one transaction) at a time.

    Raises `StateError` for a file from a newer version; sqlite3.Error when the
    file is not a state file.
    """
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StateError(
            f"{path}: state file is from a newer aggregator (schema {version}, "
            f"this one knows {SCHEMA_VERSION})"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with writing() as conn:
            for statement in MIGRATIONS[target].split(";"):
                if statement.strip():
                    conn.execute(statement)
            if target in _AFTER:
                _AFTER[target](conn)
            conn.execute(f"PRAGMA user_version = {target}")
    if not db.execute(
        "SELECT count(*) = ? FROM sqlite_master WHERE type = 'index' AND name IN (?, ?, ?)",
        (len(LOOKUP_INDEXES), *LOOKUP_INDEXES),
    ).fetchone()[0]:
        with writing() as conn:
            for statement in LOOKUP_INDEXES.values():
                conn.execute(statement)
