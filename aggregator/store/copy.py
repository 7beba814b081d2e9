"""`aggregator state copy`: the whole state, every table, from one store to another
(SQLite file or PostgreSQL database, either way), verified.

    TABLES               the tables the engines share, each with its columns and key:
                         what "the state" is (tests check it against both schemas)
    copy_state(a, b)     open both (the target created or migrated first), copy, verify
    copy_between(a, b)   the same between two opened `Dumpable` stores
    table_digests(s)     rows and digest per table of one store, as the copy verifies them

The source is read in key order, a batch at a time, inside one snapshot; the target is
written in one transaction: emptied first (only with `force` when it holds any state),
filled, then read back and compared with the source table by table (row count and a
blake2b digest over a canonical encoding of the rows). Any difference rolls the whole
copy back and is an error naming the table: the target is as it was.

The engines' own tables (the PostgreSQL engine's `schema_migrations`, and those of
running several instances) are not state and are not copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aggregator.errors import AggregatorError, InUseError, StateError
from aggregator.store import is_postgres_url, open_store
from aggregator.urls import database_url_problem, hide_password

BATCH = 5000
"""Rows read from the source at a time."""
DIGEST_SIZE = 32


@dataclass(frozen=True)
class Table:
    """A table of the state: its columns (name → kind: int, float or text) and its key."""

    name: str
    columns: dict[str, str]
    key: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.columns)


def _table(name: str, key: str, /, **columns: str) -> Table:
    """The table `name` keyed by the columns named in `key` (space-separated)."""
    return Table(name, columns, tuple(key.split()))


TABLES: tuple[Table, ...] = (
    _table(
        "seeds",
        "source",
        source="text",
        size="int",
        mtime_ns="int",
        digest="text",
        error="text",
        warnings="text",
        entry_id="text",
        article="text",
        published_us="int",
        quality="float",
        is_published="int",
        shown="text",
        original_url="text",
        web_url="text",
    ),
    _table("seed_topics", "source spelling", source="text", spelling="text"),
    _table("seed_related", "source related_id", source="text", related_id="text"),
    _table("members", "article", article="text", story="text", source="text", provider="text"),
    _table(
        "entries",
        "entry_id",
        entry_id="text",
        source="text",
        published_us="int",
        quality="float",
        is_published="int",
        original_url="text",
        web_url="text",
        link="text",
        hidden="int",
        related="text",
    ),
    _table("entry_feeds", "kind key entry_id", kind="text", key="text", entry_id="text"),
    _table(
        "ledger",
        "entry_id",
        entry_id="text",
        content_hash="text",
        first_seen_us="int",
        updated_us="int",
    ),
    _table("dirty", "entry_id", entry_id="text"),
    _table("topic_slugs", "key", key="text", slug="text"),
    _table("meta", "key", key="text", value="text"),
    _table(
        "links",
        "url",
        url="text",
        host="text",
        checked="int",
        next_check_us="int",
        state="text",
    ),
    _table("host_pauses", "host", host="text", until_us="int"),
    _table(
        "thumbs",
        "url",
        url="text",
        file="text",
        tries="int",
        next_try_us="int",
        detail="text",
    ),
    _table(
        "feed_stamps",
        "kind key",
        kind="text",
        key="text",
        ids="text",
        floor_us="int",
        updated_us="int",
    ),
    _table("feed_archives", "kind key", kind="text", key="text", bounds="text", digests="text"),
)
"""Every table of the state, in the order they are copied and listed."""


ENGINE_TABLES = frozenset({"schema_migrations", "leadership", "documents"})
"""Tables an engine keeps for itself (not state, not copied): every table of either engine
is in `TABLES` or here (tests check it), so a migration adding a table makes its author
decide which it is. `leadership` and `documents` belong to the instances sharing a
PostgreSQL state: the files the next leader renders are published anew."""


class SameStateError(AggregatorError):
    """The source and the target are the same state (a usage error)."""


class Rows(Protocol):
    """Raw rows of an open store, inside a snapshot or a write transaction."""

    def count(self, table: str) -> int: ...

    def rows(
        self, table: str, columns: Sequence[str], key: Sequence[str], batch: int
    ) -> Iterator[tuple[object, ...]]:
        """The table's rows in key order (bytes order of text), read `batch` at a time."""
        ...

    def delete(self, table: str) -> None:
        """Remove every row (only in `replacing`)."""
        ...

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        """Add the rows, consumed as they come (only in `replacing`)."""
        ...


class Dumpable(Protocol):
    """A store whose raw rows can be read and replaced: what each engine gives the copy
    (`aggregator.store.sqlite.dump`, `aggregator.store.postgres.dump`)."""

    @property
    def name(self) -> str:
        """The file path or the URL, without its password."""
        ...

    def identity(self) -> tuple[object, ...]:
        """Equal for two opened stores exactly when they are the same state."""
        ...

    def describe(self) -> dict[str, tuple[dict[str, str], tuple[str, ...]]]:
        """table → (column → kind, key columns): the schema as the store has it."""
        ...

    def snapshot(self) -> AbstractContextManager[Rows]:
        """The rows as of one moment, for reading."""
        ...

    def replacing(self) -> AbstractContextManager[Rows]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Copied:
    """One table as copied: how many rows, and their digest (hex), on both sides."""

    table: str
    rows: int
    digest: str


@dataclass(frozen=True)
class CopyReport:
    source: str
    target: str
    tables: tuple[Copied, ...]
    replaced: bool
    """True when the target held state that the copy replaced (`force`)."""

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables)


def copy_state(source: str, target: str, force: bool = False) -> CopyReport:
    """Copy the whole state at `source` (a SQLite file path or a PostgreSQL URL) into
    `target`, created or migrated to the current schema first; verify it.

    A SQLite target is locked (`aggregator.locks`) for the copy: a running service holding
    it makes this fail with `InUseError`. A PostgreSQL target must have no instance running.

    Raises `SameStateError` when both name the same state; `StateError` when either cannot
    be used, the source holds no state or is not a state file, the target holds state and
    `force` is not given, or the verification fails (the target is then left as it was).
    """
    for location in (source, target):
        problem = database_url_problem(location)
        if problem is not None:
            raise StateError(f"{_shown(location)}: {problem}")
    if _spelled_alike(source, target):
        raise SameStateError(
            f"{_shown(source)}: --from and --to are the same state; nothing to copy"
        )
    if not is_postgres_url(source) and not Path(source).is_file():
        raise StateError(f"{source}: no such state file")
    with contextlib.ExitStack() as stack:
        reader = open_dumpable(source)
        stack.callback(reader.close)
        new_file = not is_postgres_url(target) and not os.path.lexists(target)
        if not is_postgres_url(target):
            from aggregator.locks import acquire

            try:
                held = acquire(Path(target))
            except OSError as exc:
                raise StateError(f"{target}: cannot lock the state file ({exc.strerror})") from None
            stack.callback(held.release)
        try:
            writer = open_dumpable(target)
            stack.callback(writer.close)
            if reader.identity() == writer.identity():
                raise SameStateError(
                    f"{writer.name}: --from and --to are the same state; nothing to copy"
                )
            if is_postgres_url(target):
                _refuse_while_served(target)
            return copy_between(reader, writer, force)
        except BaseException:
            if new_file:
                stack.close()
                _remove_new_file(Path(target))
            raise
    raise AssertionError("unreachable")  # pragma: no cover (the with block returns or raises)


def copy_between(source: Dumpable, target: Dumpable, force: bool = False) -> CopyReport:
    """Copy every table of `source` into `target` in one transaction and verify it (see
    `copy_state`, which opens the two)."""
    with source.snapshot() as reading:
        held = {table.name: reading.count(table.name) for table in TABLES}
        if not any(held.values()):
            raise StateError(
                f"{source.name}: holds no state (every table is empty); nothing to copy"
            )
        with target.replacing() as writing:
            present = [table.name for table in TABLES if writing.count(table.name)]
            if present and not force:
                raise StateError(
                    f"{target.name}: already holds state ({', '.join(present)}); "
                    "give --force to replace it"
                )
            for table in TABLES:
                writing.delete(table.name)
                writing.insert(
                    table.name,
                    table.names,
                    reading.rows(table.name, table.names, table.key, BATCH),
                )
            copied = []
            for table in TABLES:
                expected = _summary(table, reading)
                found = _summary(table, writing)
                if found != expected:
                    raise StateError(
                        f"{target.name}: the copy does not match {source.name} in table "
                        f"{table.name} ({found[0]} rows, digest {found[1][:12]}; the source has "
                        f"{expected[0]} rows, digest {expected[1][:12]}); nothing was written"
                    )
                copied.append(Copied(table.name, *expected))
    return CopyReport(source.name, target.name, tuple(copied), bool(present))


def table_digests(store: Dumpable) -> dict[str, tuple[int, str]]:
    """table → (rows, digest) of one store, as `copy_between` computes them."""
    with store.snapshot() as reading:
        return {table.name: _summary(table, reading) for table in TABLES}


def open_dumpable(location: str) -> Dumpable:
    """The store at `location` (see `open_store`) with its raw rows' access."""
    store = open_store(location)
    try:
        if is_postgres_url(location):
            from aggregator.store.postgres import PostgresStore
            from aggregator.store.postgres.dump import PostgresDump

            assert isinstance(store, PostgresStore)
            return PostgresDump(store)
        from aggregator.store.sqlite import SqliteStore
        from aggregator.store.sqlite.dump import SqliteDump

        assert isinstance(store, SqliteStore)
        return SqliteDump(store)
    except BaseException:
        store.close()
        raise


def _summary(table: Table, rows: Rows) -> tuple[int, str]:
    """How many rows the table has, and the digest of their canonical encoding in key order.

    The row count is SQL's own (`COUNT(*)`), the digest is over a separate read of every
    row; a count that disagrees with the rows read makes the digest differ too.
    """
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE, person=b"aggr-state")
    kinds = tuple(table.columns.values())
    read = 0
    for row in rows.rows(table.name, table.names, table.key, BATCH):
        digest.update(encode_row(row, kinds))
        read += 1
    digest.update(b"#" + str(read).encode())
    return rows.count(table.name), digest.hexdigest()


def encode_row(row: Sequence[object], kinds: Sequence[str]) -> bytes:
    """A row's canonical bytes, alike for both engines: each value tagged with its type,
    floats by their exact bits (an integer in a float column as that float), text as
    length-prefixed UTF-8, NULL as its own tag."""
    parts = []
    for value, kind in zip(row, kinds, strict=True):
        if value is None:
            parts.append(b"N")
        elif isinstance(value, bool):
            parts.append(b"I" + str(int(value)).encode() + b";")
        elif kind == "float" and isinstance(value, int | float):
            parts.append(b"F" + struct.pack(">d", float(value)))
        elif isinstance(value, int):
            parts.append(b"I" + str(value).encode() + b";")
        elif isinstance(value, float):
            parts.append(b"F" + struct.pack(">d", value))
        elif isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
            parts.append(b"T" + str(len(data)).encode() + b":" + data)
        elif isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            parts.append(b"B" + str(len(data)).encode() + b":" + data)
        else:
            raise StateError(f"unexpected value of type {type(value).__name__} in the state")
    return b"R" + b"".join(parts)


def _spelled_alike(source: str, target: str) -> bool:
    """True when the two locations are the same spelling (a URL) or the same file."""
    if is_postgres_url(source) or is_postgres_url(target):
        return source.strip() == target.strip()
    if os.path.realpath(source) == os.path.realpath(target):
        return True
    try:
        return os.path.samefile(source, target)
    except OSError:
        return False


def _refuse_while_served(url: str) -> None:
    """Raise `InUseError` when instances of the service run on the database at `url`: the
    leader keeps what it read of the seeds in memory, and would never put back what a
    copy replaced."""
    from aggregator.store.postgres.leadership import PostgresElection

    election = PostgresElection(url, hide_password(url), 5, "state copy", service=False)
    try:
        running = election.services()
    finally:
        election.close()
    if running:
        raise InUseError(hide_password(url), None, holder=", ".join(running), service=True)


def _shown(location: str) -> str:
    return hide_password(location) if "://" in location else location


def _remove_new_file(path: Path) -> None:
    """Remove the state file a failed copy created (and SQLite's files beside it)."""
    for name in (str(path), f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)
