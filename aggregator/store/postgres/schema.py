"""The database's schema: versioned migrations recorded in `schema_migrations`, applied under
an advisory lock so that two processes opening the same database at once migrate it once.

Migration 1 holds the tables of the SQLite engine (see `aggregator.store.sqlite.schema`) at its
schema 5; migration 2 adds what several instances share (the leader's term, the published
documents); migration 3 what stories need (as SQLite's schema 6). Text columns use the "C"
collation, so that text orders by bytes as in SQLite.
Moments are integer microseconds (BIGINT).
"""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow

from aggregator.errors import StateError

SCHEMA_VERSION = 3

LOCK_KEY = 0x61676772  # "aggr"
"""The `pg_advisory_xact_lock` key migrations hold."""

_T = 'TEXT COLLATE "C"'

MIGRATIONS: dict[int, list[str]] = {
    1: [
        f"""CREATE TABLE seeds (
            source       {_T} PRIMARY KEY,
            size         BIGINT NOT NULL,
            mtime_ns     BIGINT NOT NULL,
            digest       {_T} NOT NULL,
            error        {_T},
            warnings     {_T} NOT NULL DEFAULT '[]',
            entry_id     {_T},
            article      {_T},
            published_us BIGINT,
            quality      DOUBLE PRECISION,
            is_published INTEGER,
            shown        {_T},
            original_url {_T},
            web_url      {_T}
        )""",
        "CREATE INDEX seeds_entry ON seeds(entry_id) WHERE entry_id IS NOT NULL",
        f"""CREATE TABLE seed_topics (
            source   {_T} NOT NULL,
            spelling {_T} NOT NULL,
            PRIMARY KEY (source, spelling)
        )""",
        f"""CREATE TABLE entries (
            entry_id     {_T} PRIMARY KEY,
            source       {_T} NOT NULL,
            published_us BIGINT NOT NULL,
            quality      DOUBLE PRECISION,
            is_published INTEGER,
            original_url {_T},
            web_url      {_T},
            link         {_T},
            hidden       INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX entries_order ON entries(published_us DESC, entry_id)",
        "CREATE INDEX entries_original ON entries(original_url)",
        "CREATE INDEX entries_web ON entries(web_url)",
        f"""CREATE TABLE entry_feeds (
            kind     {_T} NOT NULL,
            key      {_T} NOT NULL,
            entry_id {_T} NOT NULL,
            PRIMARY KEY (kind, key, entry_id)
        )""",
        "CREATE INDEX entry_feeds_entry ON entry_feeds(entry_id)",
        f"""CREATE TABLE ledger (
            entry_id      {_T} PRIMARY KEY,
            content_hash  {_T} NOT NULL,
            first_seen_us BIGINT NOT NULL,
            updated_us    BIGINT NOT NULL
        )""",
        f"CREATE TABLE dirty (entry_id {_T} PRIMARY KEY)",
        f"""CREATE TABLE topic_slugs (
            key  {_T} PRIMARY KEY,
            slug {_T} NOT NULL UNIQUE
        )""",
        f"CREATE TABLE meta (key {_T} PRIMARY KEY, value {_T} NOT NULL)",
        f"""CREATE TABLE links (
            url           {_T} PRIMARY KEY,
            host          {_T} NOT NULL,
            checked       INTEGER NOT NULL DEFAULT 0,
            next_check_us BIGINT NOT NULL DEFAULT 0,
            state         {_T}
        )""",
        "CREATE INDEX links_due ON links(checked, next_check_us)",
        f"""CREATE TABLE thumbs (
            url         {_T} PRIMARY KEY,
            file        {_T},
            tries       INTEGER NOT NULL DEFAULT 0,
            next_try_us BIGINT NOT NULL DEFAULT 0,
            detail      {_T} NOT NULL DEFAULT ''
        )""",
        f"""CREATE TABLE feed_archives (
            kind    {_T} NOT NULL,
            key     {_T} NOT NULL,
            bounds  {_T} NOT NULL DEFAULT '[]',
            digests {_T} NOT NULL DEFAULT '[]',
            PRIMARY KEY (kind, key)
        )""",
        f"""CREATE TABLE feed_stamps (
            kind       {_T} NOT NULL,
            key        {_T} NOT NULL,
            ids        {_T} NOT NULL,
            floor_us   BIGINT,
            updated_us BIGINT,
            PRIMARY KEY (kind, key)
        )""",
        f"CREATE TABLE host_pauses (host {_T} PRIMARY KEY, until_us BIGINT NOT NULL)",
    ],
    # Several instances on one database (aggregator.cluster): the leader's term, and the
    # documents it published, which followers mirror into their own output directories.
    2: [
        f"""CREATE TABLE leadership (
            id       INTEGER PRIMARY KEY CHECK (id = 1),
            term     BIGINT NOT NULL,
            holder   {_T} NOT NULL DEFAULT '',
            since    TIMESTAMPTZ NOT NULL DEFAULT now()
        )""",
        "INSERT INTO leadership (id, term) VALUES (1, 0)",
        "CREATE SEQUENCE documents_seq",
        f"""CREATE TABLE documents (
            path         {_T} PRIMARY KEY,
            body         BYTEA,
            content_type {_T} NOT NULL DEFAULT '',
            etag         {_T} NOT NULL DEFAULT '',
            modified     BIGINT NOT NULL,
            term         BIGINT NOT NULL,
            seq          BIGINT NOT NULL,
            at           TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
        )""",
        "CREATE INDEX documents_changes ON documents(seq)",
    ],
    # Stories (aggregator.stories), as the SQLite engine's schema 6.
    3: [
        f"""CREATE TABLE seed_related (
            source     {_T} NOT NULL,
            related_id {_T} NOT NULL,
            PRIMARY KEY (source, related_id)
        )""",
        "CREATE INDEX seed_related_id ON seed_related(related_id)",
        f"""CREATE TABLE members (
            article  {_T} PRIMARY KEY,
            story    {_T} NOT NULL,
            source   {_T} NOT NULL,
            provider {_T}
        )""",
        "CREATE INDEX members_story ON members(story)",
        "CREATE INDEX seeds_published ON seeds(published_us) WHERE published_us IS NOT NULL",
        f"ALTER TABLE entries ADD COLUMN related {_T}",
        "UPDATE seeds SET mtime_ns = -1, digest = ''",
    ],
}


def migrate(db: psycopg.Connection[TupleRow], shown: str) -> int:
    """Bring the database to `SCHEMA_VERSION` in one transaction holding the migration lock;
    returns how many migrations were applied.

    Raises `StateError` for a database from a newer version; psycopg.Error when it
    cannot be read or written.
    """
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        version = int(str(row[0])) if row is not None else 0
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{shown}: state database is from a newer aggregator (schema {version}, "
                f"this one knows {SCHEMA_VERSION})"
            )
        applied = 0
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (target,))
            applied += 1
        return applied
