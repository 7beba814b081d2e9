"""The state store: one SQLite file that remembers seeds, entries and their ledger.

sqlite3 stays inside this module. What is stored:

    seeds         one row per seed file: size, mtime, content digest, the last
                  good parsed record, the current error (if any)
    seed_topics   the topic spellings each seed uses
    entries       one row per article (duplicates merged): the copy used, the
                  columns the feed filters and ordering need
    links         per article URL: the link checker's state (verdict, redirects,
                  validators, history) and when it is due
    topic_slugs   the file name each topic was given, kept for good so that no
                  look-alike topic can ever take over a feed's URL
    meta          settings the stored data depends on, and per feed the entries it
                  showed and when it last lost one (its `updated` never goes back)
    dirty         entries whose seeds changed and that `refresh` has yet to
                  bring up to date (written in the same transaction as the
                  seeds, so a crash in between loses nothing)
    entry_topics  which topics (by key) each entry is in
    ledger        per entry id: hash of what readers see, first seen, updated;
                  kept when the entry goes away, so a returning entry keeps its dates

A seed that was good and becomes invalid keeps its last good record (and its
entry) until it is fixed or deleted: a half-saved edit does not pull an
article out of every reader's feed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aggregator.archive import Key, Row
from aggregator.errors import Interrupted, StateError
from aggregator.links import (
    DEFAULT_LINK_RULES,
    LinkRules,
    LinkState,
    Outcome,
    effective_link,
    state_from_json,
    state_to_json,
)
from aggregator.model import Article, LoadedSeed, article_from_json
from aggregator.plan import (
    FeedFilter,
    FeedStamp,
    LedgerRow,
    fingerprint,
    ledger_update,
    to_micros,
)
from aggregator.scan import SeedFile
from aggregator.topics import TopicRules
from aggregator.urls import host_of

SCHEMA_VERSION = 4
_CHUNK = 500
_STAMP = "feed_stamp:"
"""Prefix of the `meta` keys that hold each feed's `FeedStamp` (then its topic key; "": all)."""

_MIGRATIONS: dict[int, str] = {
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
}

_FILTER = """
    (:min_quality <= 0 OR COALESCE(e.quality, 0) >= :min_quality)
    AND (:require_published = 0 OR e.is_published = 1)
    AND (:after IS NULL OR e.published_us >= :after)
    AND e.published_us <= :before
    AND e.hidden = 0
"""


def from_micros(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


@dataclass
class Applied:
    """What one `apply` changed."""

    topics: set[str] = field(default_factory=set)
    """Keys of the topics whose feeds may have changed."""
    entries_changed: int = 0
    """Entries added, removed or changed (in content, topics or filter fields)."""


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: str
    article: Article
    topic_keys: tuple[str, ...]
    updated: datetime
    link: str | None = None


@dataclass(frozen=True, slots=True)
class Counts:
    seeds: int
    entries: int
    rejected: int


class Store:
    """The state file. Every method is one transaction; a lock serializes threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._identity: tuple[int, int] | None = None
        """(device, inode) of the file opened, to notice it being deleted or replaced."""
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                _check_writable(Path(self.path))
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            if self.path != ":memory:":
                found = os.stat(self.path)
                self._identity = (found.st_dev, found.st_ino)
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"{self.path}: cannot use the state file ({exc})") from None

    def check_file(self) -> None:
        """Raise `StateError` when the path no longer names the file this store has open.

        A state file deleted or replaced (a restored backup moved into place) under
        a running service would otherwise take every write into a file nobody sees
        again: each transaction checks first.
        """
        if self._identity is None:
            return
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            found = None
        except OSError as exc:
            raise StateError(f"{self.path}: cannot check the state file ({exc.strerror})") from None
        if found is None or (found.st_dev, found.st_ino) != self._identity:
            what = "deleted" if found is None else "replaced by another file"
            raise StateError(
                f"{self.path}: the state file was {what} while in use; nothing more is "
                "written to the old one: restart the service to open the file now at that path"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path}: state file is from a newer aggregator (schema {version}, "
                f"this one knows {SCHEMA_VERSION})"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._transaction():
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            self.check_file()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            self.check_file()
            yield self._db

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StateError(
                f"{self.path}: state file error ({exc}); check that it, its folder and its "
                "-wal and -shm files are writable by the user aggregator runs as and that the "
                "disk has room; if it is damaged, restore it from a backup or recover it with "
                "`sqlite3 FILE .recover` (it holds the dates readers have seen)"
            ) from None

    # -- seeds ---------------------------------------------------------------

    def seed_stats(self) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of every known seed file, by source."""
        with self._reading() as db:
            rows = db.execute("SELECT source, size, mtime_ns FROM seeds")
            return {source: (size, mtime) for source, size, mtime in rows}

    def digests(self, sources: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._reading():
            for chunk in _chunks(sources):
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT source, digest FROM seeds WHERE source IN ({marks})",
                    chunk,
                )
                found.update(rows)
        return found

    def touch(self, files: Iterable[SeedFile]) -> None:
        """Record new size/mtime for files whose bytes did not change."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE seeds SET size = ?, mtime_ns = ? WHERE source = ?",
                [(f.size, f.mtime_ns, f.source) for f in files],
            )

    def store_seeds(self, batch: Sequence[tuple[SeedFile, LoadedSeed]]) -> None:
        """Record read seed files; their entries become due for `refresh`."""
        sources = [file.source for file, _ in batch]
        with self._transaction() as db:
            dirty: set[str] = set()
            for chunk in _chunks(sources):
                marks = ",".join("?" * len(chunk))
                dirty.update(
                    row[0]
                    for row in db.execute(
                        f"SELECT entry_id FROM seeds WHERE source IN ({marks})"
                        " AND entry_id IS NOT NULL",
                        chunk,
                    )
                )
            good = [(f, s.record, s) for f, s in batch if s.record is not None]
            bad = [(f, s) for f, s in batch if s.record is None]
            # A rejected seed keeps its last good record (if any) and gets the error.
            db.executemany(
                "INSERT INTO seeds (source, size, mtime_ns, digest, error, warnings)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET"
                " size = excluded.size, mtime_ns = excluded.mtime_ns,"
                " digest = excluded.digest, error = excluded.error,"
                " warnings = excluded.warnings",
                [
                    (f.source, f.size, f.mtime_ns, s.digest, s.error, _json_list(s.warnings))
                    for f, s in bad
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO seeds (source, size, mtime_ns, digest, error, warnings,"
                " entry_id, article, published_us, quality, is_published, shown, original_url,"
                " web_url) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f.source,
                        f.size,
                        f.mtime_ns,
                        s.digest,
                        _json_list(s.warnings),
                        r.entry_id,
                        r.article_json,
                        r.published_us,
                        r.quality,
                        None if r.is_published is None else int(r.is_published),
                        r.shown,
                        r.original_url,
                        r.web_url,
                    )
                    for f, r, s in good
                ],
            )
            db.executemany(
                "DELETE FROM seed_topics WHERE source = ?", [(f.source,) for f, _, _ in good]
            )
            db.executemany(
                "INSERT OR IGNORE INTO seed_topics (source, spelling) VALUES (?, ?)",
                [(f.source, name) for f, r, _ in good for name in r.topics],
            )
            dirty.update(r.entry_id for _, r, _ in good)
            db.executemany("INSERT OR IGNORE INTO dirty VALUES (?)", [(i,) for i in dirty])

    def forget_seeds(self, sources: Iterable[str]) -> None:
        """Forget deleted seed files; their entries become due for `refresh`."""
        with self._transaction() as db:
            for source in sources:
                db.execute(
                    "INSERT OR IGNORE INTO dirty SELECT entry_id FROM seeds"
                    " WHERE source = ? AND entry_id IS NOT NULL",
                    (source,),
                )
                db.execute("DELETE FROM seeds WHERE source = ?", (source,))
                db.execute("DELETE FROM seed_topics WHERE source = ?", (source,))

    def refresh(
        self,
        rules: TopicRules,
        now: datetime,
        should_stop: Callable[[], bool] = lambda: False,
        link_rules: LinkRules = DEFAULT_LINK_RULES,
    ) -> Applied:
        """Bring every entry whose seeds changed up to date: copy used, topics, ledger.

        One transaction: when `should_stop` turns true it is rolled back and
        `Interrupted` raised, and the entries stay due for the next call.
        """
        applied = Applied()
        with self._transaction() as db:
            ids = [row[0] for row in db.execute("SELECT entry_id FROM dirty ORDER BY entry_id")]
            self._refresh(db, ids, rules, now, applied, should_stop, link_rules)
            db.execute("DELETE FROM dirty")
        return applied

    def mark_all_dirty(self) -> None:
        """Make every entry due for `refresh` (after topic or link rules changed)."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO dirty SELECT entry_id FROM entries")

    def _refresh(
        self,
        db: sqlite3.Connection,
        entry_ids: Sequence[str],
        rules: TopicRules,
        now: datetime,
        applied: Applied,
        should_stop: Callable[[], bool] = lambda: False,
        link_rules: LinkRules = DEFAULT_LINK_RULES,
    ) -> None:
        resolved: dict[str, str | None] = {}

        def key_of(spelling: str) -> str | None:
            if spelling not in resolved:
                hit = rules.resolve(spelling)
                resolved[spelling] = hit[0] if hit else None
            return resolved[spelling]

        for chunk in _chunks(entry_ids):
            if should_stop():
                raise Interrupted
            marks = ",".join("?" * len(chunk))
            copies: dict[str, tuple[Any, ...]] = {}
            for entry_id, *copy in db.execute(
                "SELECT entry_id, source, published_us, quality, is_published, shown,"
                " original_url, web_url"
                f" FROM seeds WHERE entry_id IN ({marks}) ORDER BY entry_id, source DESC",
                chunk,
            ):
                # Sources come in descending order: the copy that stays is the first by path.
                copies[entry_id] = tuple(copy)
            urls = sorted({u for c in copies.values() for u in c[5:7] if u})
            link_states = self._link_states(db, urls)
            spellings: dict[str, set[str]] = {}
            for entry_id, spelling in db.execute(
                "SELECT s.entry_id, t.spelling FROM seed_topics t JOIN seeds s"
                f" ON s.source = t.source WHERE s.entry_id IN ({marks})",
                chunk,
            ):
                key = key_of(spelling)
                if key:
                    spellings.setdefault(entry_id, set()).add(key)
            old_rows = {
                row[0]: row[1:]
                for row in db.execute(
                    "SELECT entry_id, source, published_us, quality, is_published, original_url,"
                    f" web_url, link, hidden FROM entries WHERE entry_id IN ({marks})",
                    chunk,
                )
            }
            old_keys: dict[str, set[str]] = {}
            for key, entry_id in db.execute(
                f"SELECT key, entry_id FROM entry_topics WHERE entry_id IN ({marks})", chunk
            ):
                old_keys.setdefault(entry_id, set()).add(key)
            ledger = {
                row[0]: LedgerRow(row[1], from_micros(row[2]), from_micros(row[3]))
                for row in db.execute(
                    "SELECT entry_id, content_hash, first_seen_us, updated_us"
                    f" FROM ledger WHERE entry_id IN ({marks})",
                    chunk,
                )
            }
            for entry_id in chunk:
                before_keys = old_keys.get(entry_id, set())
                if entry_id not in copies:
                    if entry_id in old_rows:
                        db.execute("DELETE FROM entries WHERE entry_id = ?", (entry_id,))
                        db.execute("DELETE FROM entry_topics WHERE entry_id = ?", (entry_id,))
                        applied.entries_changed += 1
                        applied.topics |= before_keys
                    continue
                source, published_us, quality, flag, shown, original, web = copies[entry_id]
                keys = spellings.get(entry_id, set())
                own = original or web
                link = effective_link(original, web, link_states, link_rules)
                shown_link = None if link in (None, own) else link
                previous = ledger.get(entry_id)
                row = ledger_update(
                    previous, fingerprint(shown, keys, shown_link), from_micros(published_us), now
                )
                if row != previous:
                    db.execute(
                        "INSERT OR REPLACE INTO ledger VALUES (?, ?, ?, ?)",
                        (
                            entry_id,
                            row.content_hash,
                            to_micros(row.first_seen),
                            to_micros(row.updated),
                        ),
                    )
                columns = (
                    source,
                    published_us,
                    quality,
                    flag,
                    original,
                    web,
                    shown_link,
                    int(link is None),
                )
                db.executemany(
                    "INSERT OR IGNORE INTO links (url, host) VALUES (?, ?)",
                    [(u, _host(u)) for u in (original, web) if u],
                )
                if row == previous and old_rows.get(entry_id) == columns and keys == before_keys:
                    continue
                db.execute(
                    "INSERT OR REPLACE INTO entries (entry_id, source, published_us, quality,"
                    " is_published, original_url, web_url, link, hidden)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (entry_id, *columns),
                )
                if keys != before_keys:
                    db.execute("DELETE FROM entry_topics WHERE entry_id = ?", (entry_id,))
                    db.executemany(
                        "INSERT INTO entry_topics (key, entry_id) VALUES (?, ?)",
                        [(key, entry_id) for key in sorted(keys)],
                    )
                applied.entries_changed += 1
                applied.topics |= before_keys | keys

    # -- what the feeds show ---------------------------------------------------

    def spelling_counts(self) -> list[tuple[str, int]]:
        """Every topic spelling in use, with how many seeds use it."""
        with self._reading():
            return list(
                self._db.execute("SELECT spelling, COUNT(*) FROM seed_topics GROUP BY spelling")
            )

    def settings_changed(self, name: str, value: str) -> bool:
        """Record `value` under `name`; True when a different value was recorded before."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
            if row is not None and row[0] == value:
                return False
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
            return row is not None

    def reread_all_if_changed(self, name: str, value: str) -> bool:
        """When `value` is not the one recorded under `name` (or none is), make every seed
        due to be read again: the rules that read seeds changed, and the stored records
        must follow (an upgrade that drops credentials from URLs must not keep them)."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
            if row is not None and row[0] == value:
                return False
            db.execute("UPDATE seeds SET mtime_ns = -1, digest = ''")
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
            return True

    def meta(self, name: str) -> str | None:
        with self._reading():
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def keep_meta(self, name: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def reread_rejected_if_changed(self, settings: str) -> bool:
        """When the settings reading depends on changed, make rejected seeds due again.

        (A seed rejected as too large must be read again once the limit is raised.)
        """
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'seed_settings'").fetchone()
            if row is not None and row[0] == settings:
                return False
            db.execute("UPDATE seeds SET mtime_ns = -1, digest = '' WHERE error IS NOT NULL")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('seed_settings', ?)", (settings,))
            return row is not None

    # -- links -----------------------------------------------------------------------

    def _link_states(self, db: sqlite3.Connection, urls: Sequence[str]) -> dict[str, LinkState]:
        states: dict[str, LinkState] = {}
        for chunk in _chunks(urls):
            marks = ",".join("?" * len(chunk))
            for url, text in db.execute(
                f"SELECT url, state FROM links WHERE url IN ({marks}) AND state IS NOT NULL",
                chunk,
            ):
                states[url] = state_from_json(url, text)
        return states

    def link_states(self, urls: Sequence[str]) -> dict[str, LinkState]:
        with self._reading() as db:
            return self._link_states(db, urls)

    def due_links(self, now: datetime, limit: int, everything: bool = False) -> list[str]:
        """URLs to check: never checked first, then the most overdue (all with `everything`)."""
        where = "" if everything else "WHERE next_check_us <= :now"
        with self._reading() as db:
            rows = db.execute(
                f"SELECT url FROM links {where} ORDER BY checked, next_check_us, url LIMIT :limit",
                {"now": to_micros(now), "limit": limit},
            )
            return [row[0] for row in rows]

    def save_link_states(
        self, states: Sequence[LinkState], deferred: Mapping[str, datetime]
    ) -> int:
        """Store check results; entries whose shown link may change become due for `refresh`.

        Returns how many URLs changed in a way feeds can see.
        """
        changed = 0
        with self._transaction() as db:
            old = self._link_states(db, [s.url for s in states])
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
                if _feed_view(old.get(state.url)) != _feed_view(state):
                    changed += 1
                    db.execute(
                        "INSERT OR IGNORE INTO dirty SELECT entry_id FROM entries"
                        " WHERE original_url = ? OR web_url = ?",
                        (state.url, state.url),
                    )
            db.executemany(
                "UPDATE links SET next_check_us = ? WHERE url = ?",
                [(to_micros(when), url) for url, when in deferred.items()],
            )
        return changed

    def forget_unused_links(self) -> int:
        """Drop link rows no entry refers to any more."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM links WHERE url NOT IN (SELECT original_url FROM entries"
                " WHERE original_url IS NOT NULL UNION SELECT web_url FROM entries"
                " WHERE web_url IS NOT NULL)"
            )
            return cursor.rowcount

    def topic_slugs(self) -> dict[str, str]:
        """The slug every topic ever seen was given (key → slug)."""
        with self._reading():
            return dict(self._db.execute("SELECT key, slug FROM topic_slugs"))

    def keep_topic_slugs(self, slugs: dict[str, str]) -> None:
        """Remember newly assigned slugs (existing ones never change)."""
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO topic_slugs VALUES (?, ?)", slugs.items())

    def feed_page(
        self, key: str | None, flt: FeedFilter, limit: int, newer_than: Key | None = None
    ) -> tuple[list[StoredEntry], int]:
        """The newest `limit` entries of a topic (None: of all topics) and how many there are.

        With `newer_than`, only entries placed before that key in feed order
        (the ones no closed archive page holds); the count is of them all.
        """
        params = self._filter_params(key, flt)
        params["limit"] = limit
        source, where = self._topic_source(key)
        bound = ""
        if newer_than is not None:
            params["bound_us"], params["bound_id"] = newer_than
            bound = (
                " AND (e.published_us > :bound_us"
                " OR (e.published_us = :bound_us AND e.entry_id < :bound_id))"
            )
        with self._reading():
            rows = self._db.execute(
                f"SELECT e.entry_id FROM {source} WHERE {where}{bound}"
                " ORDER BY e.published_us DESC, e.entry_id LIMIT :limit",
                params,
            ).fetchall()
            (total,) = self._db.execute(
                f"SELECT COUNT(*) FROM {source} WHERE {where}",
                params,
            ).fetchone()
            entries = self._entries([row[0] for row in rows])
        return entries, total

    def feed_rows(self, key: str | None, flt: FeedFilter) -> list[Row]:
        """Every entry a feed's filters let through, newest first, as archive paging needs them."""
        params = self._filter_params(key, flt)
        source, where = self._topic_source(key)
        with self._reading():
            rows = self._db.execute(
                f"SELECT e.published_us, e.entry_id, l.updated_us FROM {source}"
                f" JOIN ledger l ON l.entry_id = e.entry_id WHERE {where}"
                " ORDER BY e.published_us DESC, e.entry_id",
                params,
            ).fetchall()
        return [Row(*row) for row in rows]

    def earliest_held_back(self, flt: FeedFilter) -> int | None:
        """published_us of the earliest entry dated after what `flt` lets through; None: none."""
        with self._reading():
            (earliest,) = self._db.execute(
                "SELECT MIN(published_us) FROM entries WHERE published_us > ? AND hidden = 0",
                (flt.published_before_us,),
            ).fetchone()
        return None if earliest is None else int(earliest)

    def entries(self, ids: Sequence[str]) -> list[StoredEntry]:
        """The entries with these ids, in this order."""
        with self._reading():
            return self._entries(ids)

    def _entries(self, ids: Sequence[str]) -> list[StoredEntry]:
        found: dict[str, tuple[str, int, str | None]] = {}
        keys: dict[str, list[str]] = {}
        select = (
            "SELECT e.entry_id, s.article, l.updated_us, e.link FROM entries e"
            " JOIN ledger l ON l.entry_id = e.entry_id JOIN seeds s ON s.source = e.source"
            " WHERE e.entry_id IN"
        )
        for entry_id, text, updated, link in self._in_chunks(select, ids):
            found[entry_id] = (text, updated, link)
        for topic_key, entry_id in self._in_chunks(
            "SELECT key, entry_id FROM entry_topics WHERE entry_id IN", ids
        ):
            keys.setdefault(entry_id, []).append(topic_key)
        return [
            StoredEntry(
                entry_id,
                article_from_json(found[entry_id][0]),
                tuple(sorted(keys.get(entry_id, []))),
                from_micros(found[entry_id][1]),
                found[entry_id][2],
            )
            for entry_id in ids
            if entry_id in found
        ]

    @staticmethod
    def _filter_params(key: str | None, flt: FeedFilter) -> dict[str, object]:
        return {
            "key": key,
            "min_quality": flt.min_quality,
            "require_published": int(flt.require_published),
            "after": flt.published_after_us,
            "before": flt.published_before_us,
        }

    @staticmethod
    def _topic_source(key: str | None) -> tuple[str, str]:
        """The FROM and WHERE of a feed's entries (None: every entry)."""
        if key is None:
            return "entries e", _FILTER
        return (
            "entry_topics t JOIN entries e ON e.entry_id = t.entry_id",
            f"t.key = :key AND {_FILTER}",
        )

    def thumbnails(self, urls: Iterable[str]) -> dict[str, str]:
        """Image URL → its thumbnail file, for those of `urls` that have one."""
        wanted = list(dict.fromkeys(urls))
        with self._reading():
            select = "SELECT url, file FROM thumbs WHERE file IS NOT NULL AND url IN"
            return dict(self._in_chunks(select, wanted))

    def thumbnails_due(self, urls: Iterable[str], now: datetime, limit: int) -> list[str]:
        """Of `urls`, those without a thumbnail whose next try has come (never tried first)."""
        wanted = list(dict.fromkeys(urls))
        with self._reading():
            select = "SELECT url, file, next_try_us FROM thumbs WHERE url IN"
            known = {
                url: (file, next_try) for url, file, next_try in self._in_chunks(select, wanted)
            }
        cutoff = to_micros(now)
        fresh = [u for u in wanted if u not in known]
        retry = sorted(
            (u for u in wanted if u in known and known[u][0] is None and known[u][1] <= cutoff),
            key=lambda u: known[u][1],
        )
        return (fresh + retry)[:limit]

    def keep_thumbnail(self, url: str, file: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO thumbs (url, file, tries, next_try_us, detail)"
                " VALUES (?, ?, 0, 0, '')",
                (url, file),
            )

    def thumbnail_tries(self, urls: Sequence[str]) -> dict[str, int]:
        """How many fetches of each image have failed in a row (0: none, or never tried)."""
        tries = dict.fromkeys(urls, 0)
        with self._reading():
            for url, count in self._in_chunks("SELECT url, tries FROM thumbs WHERE url IN", urls):
                tries[url] = count
        return tries

    def thumbnail_failed(self, url: str, detail: str, tries: int, next_try: datetime) -> None:
        """Note a failed fetch (the `tries`-th in a row), not to be tried before `next_try`."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO thumbs (url, file, tries, next_try_us, detail)"
                " VALUES (?, NULL, ?, ?, ?)",
                (url, tries, to_micros(next_try), detail[:300]),
            )

    def forget_thumbnails_of(self, urls: Sequence[str]) -> None:
        """Forget the thumbnails of these images (their files are gone): fetch them anew."""
        with self._transaction() as db:
            db.executemany("DELETE FROM thumbs WHERE url = ?", [(u,) for u in urls])

    def forget_thumbnails(self, keep_files: Iterable[str], wanted: Iterable[str]) -> None:
        """Drop the thumbnails whose file is not in `keep_files`, and the failures of
        images no page wants any more."""
        kept, still = set(keep_files), set(wanted)
        with self._transaction() as db:
            gone = [
                url
                for url, file in db.execute("SELECT url, file FROM thumbs")
                if (file is not None and file not in kept) or (file is None and url not in still)
            ]
            db.executemany("DELETE FROM thumbs WHERE url = ?", [(u,) for u in gone])

    def forget_archives(self, keep: Iterable[str | None]) -> None:
        """Drop what is kept of the archives of every topic not in `keep` (None: `all`)."""
        kept = {key or "" for key in keep}
        with self._transaction() as db:
            gone = [t for (t,) in db.execute("SELECT topic FROM archives") if t not in kept]
            db.executemany("DELETE FROM archives WHERE topic = ?", [(t,) for t in gone])

    def _in_chunks(self, select: str, values: Sequence[str]) -> Iterator[Any]:
        """Rows of `select` ... IN (values), a chunk of values at a time (SQLite's limit)."""
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            yield from self._db.execute(f"{select} ({','.join('?' * len(chunk))})", chunk)

    def archive(self, key: str | None) -> tuple[list[Key], list[str]]:
        """The closed-page bounds and the page digests kept for a topic's archive."""
        with self._reading():
            row = self._db.execute(
                "SELECT bounds, digests FROM archives WHERE topic = ?", (key or "",)
            ).fetchone()
        if row is None:
            return [], []
        return [(int(us), str(i)) for us, i in json.loads(row[0])], list(json.loads(row[1]))

    def keep_archive(self, key: str | None, bounds: Sequence[Key], digests: Sequence[str]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO archives (topic, bounds, digests) VALUES (?, ?, ?)",
                (key or "", json.dumps([list(b) for b in bounds]), json.dumps(list(digests))),
            )

    def feed_stamp(self, key: str | None) -> FeedStamp | None:
        """What was kept of a feed (None: `all`) when it was last rendered; None if nothing."""
        value = self.meta(_STAMP + (key or ""))
        if value is None:
            return None
        data = json.loads(value)

        def moment(us: int | None) -> datetime | None:
            return None if us is None else from_micros(us)

        return FeedStamp(tuple(data["ids"]), moment(data["floor"]), moment(data["updated"]))

    def keep_feed_stamp(self, key: str | None, stamp: FeedStamp) -> None:
        def micros(moment: datetime | None) -> int | None:
            return None if moment is None else to_micros(moment)

        data = {
            "ids": list(stamp.ids),
            "floor": micros(stamp.floor),
            "updated": micros(stamp.updated),
        }
        self.keep_meta(_STAMP + (key or ""), json.dumps(data, separators=(",", ":")))

    def counts(self) -> Counts:
        with self._reading():
            (seeds, rejected) = self._db.execute(
                "SELECT COUNT(*), COUNT(error) FROM seeds"
            ).fetchone()
            (entries,) = self._db.execute("SELECT COUNT(*) FROM entries").fetchone()
        return Counts(seeds, entries, rejected)

    def rejected(self) -> list[tuple[str, str]]:
        """Every seed whose current content is rejected, with the reason."""
        with self._reading():
            return list(
                self._db.execute(
                    "SELECT source, error FROM seeds WHERE error IS NOT NULL ORDER BY source"
                )
            )

    def duplicates(self) -> list[tuple[str, str]]:
        """(source, source of the copy used instead) for every duplicate seed."""
        with self._reading():
            return list(
                self._db.execute(
                    "SELECT s.source, e.source FROM seeds s JOIN entries e"
                    " ON e.entry_id = s.entry_id WHERE s.source != e.source ORDER BY s.source"
                )
            )


def _check_writable(path: Path) -> None:
    """Refuse a state file this process cannot write, before SQLite opens it, and repair
    the -wal and -shm files an earlier read-only open left read-only.

    SQLite gives a new -shm the mode of the database file: opened while the file
    was read-only, it leaves a read-only -shm that keeps the file unusable after
    it is made writable again. Their mode is set back to the file's (the -wal
    holds committed changes and is kept; the -shm is an index rebuilt from it).
    """
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StateError(
            f"{folder}: the state file's folder is not writable by the user aggregator runs "
            "as (SQLite keeps its -wal and -shm files there): make it writable"
        )
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return  # a new state file
    if not os.access(path, os.W_OK):
        raise StateError(
            f"{path}: the state file is read-only (mode {stat.S_IMODE(mode):04o}): make it "
            "writable by the user aggregator runs as (chmod u+w); nothing in it is lost"
        )
    for suffix in ("-wal", "-shm"):
        sidecar = Path(f"{path}{suffix}")
        if sidecar.exists() and not os.access(sidecar, os.W_OK):
            try:
                os.chmod(sidecar, stat.S_IMODE(mode))
            except OSError as exc:
                raise StateError(
                    f"{sidecar}: read-only, left by an open of the state file while it was "
                    f"read-only, and it cannot be made writable ({exc.strerror}): give it the "
                    "state file's owner and mode"
                ) from None


def _feed_view(state: LinkState | None) -> tuple[object, ...]:
    """What of a URL's state can change a feed: confirmed death, a permanent new home."""
    if state is None:
        return (False, None)
    moved = state.final_url if state.permanent and state.status is Outcome.ALIVE else None
    return (state.status is Outcome.DEAD, moved)


def _host(url: str) -> str:
    try:
        return host_of(url)
    except ValueError:
        return ""


def _json_list(items: Sequence[str]) -> str:
    return json.dumps(list(items), ensure_ascii=False)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
