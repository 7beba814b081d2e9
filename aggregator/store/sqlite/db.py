"""The SQLite connection shared by the concerns: one lock, one transaction scope, errors.

sqlite3 stays inside `aggregator.store.sqlite`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aggregator.errors import StateError
from aggregator.store.sqlite.schema import BULK_LOAD, migrate

CHUNK = 500
"""Values per `IN (...)`: under SQLite's limit on variables."""
CACHE_KIB = 32 * 1024
"""The most memory SQLite keeps of the state file's pages, in KiB."""
WAL_LIMIT = 64 * 1024 * 1024
"""Bytes of write-ahead log past which a transaction waits for the checkpoint under way
before it begins, with `Database.checkpoint_apart` (SQLite's own checkpoints start at
1,000 pages, about 4 MB)."""


class Database:
    """The state file's connection. Every `writing` block is one transaction (or a part of
    the `transaction()` around it); a lock serializes threads."""

    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        """`read_only`: a second connection to a state file another connection keeps (a
        worker process's): not migrated, and no statement may write."""
        self.path = str(path)
        self.lock = threading.RLock()
        self._depth = 0
        """How many `transaction()` blocks are open."""
        self._identity: tuple[int, int] | None = None
        """(device, inode) of the file opened, to notice it being deleted or replaced."""
        self._checkpoints: _Checkpoints | None = None
        """The thread that checkpoints the write-ahead log, once `checkpoint_apart` is called."""
        try:
            if read_only:
                uri = f"{Path(self.path).absolute().as_uri()}?mode=ro"
                self.db = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False
                )
                self.db.execute("PRAGMA busy_timeout = 5000")
                self.db.execute("PRAGMA query_only = 1")
                found = os.stat(self.path)
                self._identity = (found.st_dev, found.st_ino)
                return
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                _check_writable(Path(self.path))
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA busy_timeout = 5000")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            # A page cache of up to 32 MiB (SQLite's default is 2): the indexes keyed by
            # article id take rows in random order, and with a cache smaller than them
            # every batch of a large build reads and rewrites most of their pages (storing
            # 100,000 seeds: 10.1 s of CPU with 2 MiB, 7.5 s with 32, 7.2 with 64).
            self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            if self.path != ":memory:":
                found = os.stat(self.path)
                self._identity = (found.st_dev, found.st_ino)
            migrate(self.db, self.path, self.writing)
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
        with self.lock:
            checkpoints, self._checkpoints = self._checkpoints, None
            try:
                if checkpoints is not None:
                    checkpoints.stop()
            finally:
                self.db.close()  # the last connection: checkpoints what is left

    def checkpoint_apart(self) -> None:
        """From now on, a commit does not wait for the write-ahead log to be copied into the
        state file (a checkpoint: SQLite runs one in the commit that takes the log past
        1,000 pages, and waits for the disk twice in it); a thread of this process does it
        after each commit, on a connection of its own, while this one goes on writing.

        For a long run of large transactions with nothing else to do meanwhile: a cold
        build. Durability is the same (each commit is in the log, as before; SQLite copies
        it into the file later). Starts a thread: call it after starting any process by
        fork(2), which must not copy SQLite in the middle of a call.

        The log is rewound only by a transaction that begins once a checkpoint has copied
        all of it: so that it does not grow with the whole build, a transaction that
        finds it over `WAL_LIMIT` first waits for the checkpoint under way. Where the
        thread's connection cannot be opened, commits go on checkpointing themselves."""
        with self.lock:
            if self._checkpoints is not None or self._identity is None:
                return
            try:
                checkpoints = _Checkpoints(self.path)
            except sqlite3.Error:
                return
            try:
                self.db.execute("PRAGMA wal_autocheckpoint = 0")
            except sqlite3.Error:
                checkpoints.stop()
                return
            self._checkpoints = checkpoints

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction around the block (a savepoint inside another); rolled back when
        the block raises."""
        with self.lock, self.errors():
            if self._depth == 0:
                self.check_file()
                if self._checkpoints is not None:
                    self._checkpoints.settle(f"{self.path}-wal", WAL_LIMIT)
                begin, commit, rollback = "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"
            else:
                name = f"s{self._depth}"
                begin, commit = f"SAVEPOINT {name}", f"RELEASE {name}"
                rollback = f"ROLLBACK TO {name}; RELEASE {name}"
            self.db.execute(begin)
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                with contextlib.suppress(sqlite3.Error):
                    for statement in rollback.split("; "):
                        self.db.execute(statement)
                raise
            self._depth -= 1
            self.db.execute(commit)
            if self._checkpoints is not None and not self._depth:
                self._checkpoints.due()

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """The connection, in a transaction: its own, or the `transaction()` open around it."""
        with self.lock:
            if self._depth:
                with self.errors():
                    yield self.db
                return
            with self.transaction():
                yield self.db

    @contextlib.contextmanager
    def indexes_after(self, table: str, indexes: Mapping[str, str], count: int) -> Iterator[None]:
        """A block that loads about `count` rows. Into an empty `table`, with `BULK_LOAD` or
        more, the `indexes` (name: its CREATE INDEX IF NOT EXISTS statement) are dropped
        first and built when the block ends, raising or not: rows inserted in random order
        into an index bigger than the page cache rewrite most of its pages at every
        commit, where building it from the whole table is one sort."""
        with self.reading() as db:
            empty = db.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {table})").fetchone()[0]
        if count < BULK_LOAD or not empty:
            yield
            return
        with self.writing() as db:
            for name in indexes:
                db.execute(f"DROP INDEX IF EXISTS {name}")
        try:
            yield
        finally:
            with self.writing() as db:
                for statement in indexes.values():
                    db.execute(statement)

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads (inside the open transaction, if any)."""
        with self.lock, self.errors():
            if not self._depth:
                self.check_file()
            yield self.db

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn SQLite's errors into `StateError` with what to do about them."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StateError(
                f"{self.path}: state file error ({exc}); check that it, its folder and its "
                "-wal and -shm files are writable by the user aggregator runs as and that the "
                "disk has room; if it is damaged, restore it from a backup or recover it with "
                "`sqlite3 FILE .recover` (it holds the dates readers have seen)"
            ) from None

    def in_chunks(self, select: str, values: Sequence[str], tail: str = "") -> Iterator[Any]:
        """Rows of `select` ... IN (values) `tail`, a chunk of values at a time (SQLite's
        limit on parameters)."""
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK]
            yield from self.db.execute(f"{select} ({','.join('?' * len(chunk))}){tail}", chunk)


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    """`items`, CHUNK at a time."""
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def marks(count: int) -> str:
    """`count` SQL placeholders, comma-separated."""
    return ",".join("?" * count)


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


class _Checkpoints:
    """A thread that checkpoints the state file's write-ahead log each time it is told the
    log grew (`due`), passively: never waiting for the writer, nor the writer for it, but
    where the writer asks (`settle`)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error:
            self._db.close()
            raise
        self._changed = threading.Condition()
        self._asked = 0
        """Checkpoints asked for (`due`), counted."""
        self._done = 0
        """The count of `_asked` the last finished checkpoint began after."""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="state-checkpoints", daemon=True)
        self._thread.start()

    def due(self) -> None:
        with self._changed:
            self._asked += 1
            self._changed.notify_all()

    def settle(self, log: str, limit: int) -> None:
        """When the log file `log` holds more than `limit` bytes, wait for a checkpoint
        begun after the last `due` to finish: the next transaction then rewinds the log."""
        try:
            if os.stat(log).st_size <= limit:
                return
        except OSError:
            return
        with self._changed:
            asked = self._asked
            while self._done < asked and not self._stopping:
                self._changed.wait()

    def stop(self) -> None:
        """End the thread (after the checkpoint it may be running) and close its connection."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join()
        self._db.close()

    def _run(self) -> None:
        try:
            while True:
                with self._changed:
                    while self._done == self._asked and not self._stopping:
                        self._changed.wait()
                    if self._stopping:
                        return
                    asked = self._asked
                # PASSIVE: copies what no reader still needs; the rest waits for the next
                # one, or for the writer's own checkpoint when it closes. A failure (a full
                # disk, the file gone) is the writer's to meet at its next commit: nothing
                # is lost here.
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                with self._changed:
                    self._done = asked
                    self._changed.notify_all()
        finally:  # however it ends, nobody waits for it any more (`settle`)
            with self._changed:
                self._stopping = True
                self._changed.notify_all()
