"""Published documents, for several instances on one shared state (aggregator.cluster).

    leader     PublishedOutput   the `Output` the app renders into: every file it writes or
                                 removes is also recorded in the shared `DocumentLog`, with
                                 its ETag and Last-Modified, before the local file changes
    follower   Mirror            applies the log's changes to its own output directory with
                                 the same atomic write-if-changed, and the same times

So every instance serves the same bytes with the same ETag (a digest of the bytes) and the
same Last-Modified (the file's time, set from the log): a reader, or a CDN, moving between
instances gets 304s. A document's Last-Modified never goes back, even when the leader that
rewrites it has a clock behind its predecessor's.
"""

from __future__ import annotations

import contextlib
import posixpath
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from aggregator.formats import content_type_of
from aggregator.output import OutputDir, content_tag
from aggregator.store.shared import DocumentLog, Stamp

BATCH = 200
"""Changes a follower fetches at once."""


class PublishedOutput:
    """The leader's `Output`: a local `OutputDir` whose changes are also published.

    Changes are recorded in the log first (fenced: once another instance leads, they raise
    `Fenced`), then made to the local files. Inside `publishing()` (a render: one store
    transaction) the local files change only once that transaction has committed, so that
    this instance never serves a byte the log does not hold; until then the block reads its
    own changes back from memory.
    """

    def __init__(
        self, local: OutputDir, log: DocumentLog, clock: Callable[[], float] = time.time
    ) -> None:
        self.local = local
        self.root = local.root
        self._log = log
        self._clock = clock
        self._index: dict[str, Stamp] | None = None
        """What the log holds, by path (read on first use, and after `forget`)."""
        self._pending: dict[str, bytes | None] | None = None
        """Inside `publishing()`: each path changed so far, and its bytes (None: removed)."""
        self._ops: list[Callable[[], object]] = []
        """Inside `publishing()`: the local changes to make once the transaction commits."""

    @property
    def gzip_sidecars(self) -> bool:
        return self.local.gzip_sidecars

    def forget(self) -> None:
        """Read the log again before the next write (after a failed render, or an election)."""
        self._index = None

    def _known(self) -> dict[str, Stamp]:
        if self._index is None:
            self._index = self._log.index()
        return self._index

    @contextlib.contextmanager
    def publishing(
        self, transaction: Callable[[], AbstractContextManager[object]]
    ) -> Iterator[None]:
        """Run the block in `transaction()`; make its local changes after the commit, or none
        when it raises (then the log is read again before the next write)."""
        self._pending, self._ops = {}, []
        try:
            with transaction():
                yield
        except BaseException:
            self._index = None
            raise
        finally:
            ops, self._pending, self._ops = self._ops, None, []
        with self.local.batch():
            for op in ops:
                op()

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Nothing more to hold: inside `publishing()`, the local files change together after
        the commit already."""
        return contextlib.nullcontext()

    def _later(self, relative: str, data: bytes | None, op: Callable[[], object]) -> bool:
        """Make `op` now, or after the commit inside `publishing()`; True when deferred."""
        if self._pending is None:
            op()
            return False
        self._pending[relative] = data
        self._ops.append(op)
        return True

    def write(self, relative: str, data: bytes) -> bool:
        self.local.path(relative)  # refuses a path outside, as the directory does
        known = self._known()
        before = known.get(relative)
        etag = content_tag(data)
        published = before is None or before.etag != etag
        if published:
            modified = int(self._clock())
            if before is not None:
                modified = max(modified, before.modified + 1)
            stamp = Stamp(etag, modified)
            self._log.publish(relative, data, content_type_of(relative), stamp)
            known[relative] = stamp
        else:
            assert before is not None
            stamp = before
        changed = published or self.read(relative) != data

        def make() -> None:
            if changed:
                self.local.write(relative, data)
            self.local.stamp(relative, stamp.modified)

        self._later(relative, data, make)
        return changed

    def _withdraw(self, paths: Collection[str]) -> None:
        known = self._known()
        gone = [path for path in paths if path in known]
        if gone:
            self._log.withdraw(gone)
            for path in gone:
                del known[path]

    def remove(self, relative: str) -> bool:
        self.local.path(relative)
        there = self.exists(relative)
        self._withdraw([relative])
        self._later(relative, None, lambda: self.local.remove(relative))
        return there

    def prune(self, folder: str, suffix: str, keep: Collection[str]) -> list[str]:
        self.local.path(folder)
        known = self._known()
        listed = [
            path
            for path in known
            if posixpath.dirname(path) == folder and path.endswith(suffix) and path not in keep
        ]
        gone = set(listed) | {path for path in self.files(folder, suffix) if path not in keep}
        self._withdraw(gone)
        if self._pending is None:
            return sorted(gone | set(self.local.prune(folder, suffix, keep)))
        kept = frozenset(keep)
        for path in gone:
            self._pending[path] = None
        self._ops.append(lambda: self.local.prune(folder, suffix, kept))
        return sorted(gone)

    def read(self, relative: str) -> bytes | None:
        if self._pending is not None and relative in self._pending:
            return self._pending[relative]
        return self.local.read(relative)

    def exists(self, relative: str) -> bool:
        if self._pending is not None and relative in self._pending:
            return self._pending[relative] is not None
        return self.local.exists(relative)

    def head(self, relative: str, size: int) -> bytes | None:
        if self._pending is not None and relative in self._pending:
            data = self._pending[relative]
            return data if data is None or size < 0 else data[:size]
        return self.local.head(relative, size)

    def files(self, folder: str, suffix: str) -> list[str]:
        found = set(self.local.files(folder, suffix))
        for path, data in (self._pending or {}).items():
            if posixpath.dirname(path) == folder and path.endswith(suffix):
                if data is None:
                    found.discard(path)
                else:
                    found.add(path)
        return sorted(found)

    def folders(self, folder: str) -> list[str]:
        found = set(self.local.folders(folder))
        prefix = f"{folder}/" if folder else ""
        for path, data in (self._pending or {}).items():
            if data is not None and path.startswith(prefix) and "/" in path[len(prefix) :]:
                found.add(path[len(prefix) :].split("/", 1)[0])
        return sorted(found)

    def remove_empty(self, folder: str) -> None:
        if self._pending is None:
            self.local.remove_empty(folder)
        else:
            self._ops.append(lambda: self.local.remove_empty(folder))


class Mirror:
    """A follower's copy of the published documents in its own output directory.

    Not thread-safe: one thread applies changes at a time. Every method raises
    `StateError` when the log cannot be read, `OutputError` when a file cannot be written.
    """

    def __init__(self, log: DocumentLog, local: OutputDir) -> None:
        self._log = log
        self._local = local
        self.applied = 0
        """The `seq` of the last change applied (0: start over: mirror everything)."""
        self.synced: datetime | None = None
        """When the mirror last caught up with the log."""
        self.holding = False
        """Whether the log held published documents at the last catch-up."""

    def start_over(self) -> None:
        """Compare every document again at the next `catch_up` (after this instance led and
        may have written files that were never published, or to begin with)."""
        self.applied = 0

    def catch_up(self, prune: bool = False) -> int:
        """Apply every change made since the last one applied; returns how many files changed.

        From the start (`applied` 0), or with `prune`, also removes the local files the log
        does not hold (put there by hand, or left by a killed write)."""
        full = self.applied == 0 or prune
        changed = 0
        while True:
            changes = self._log.changes(self.applied, BATCH)
            for document in changes:
                if document.body is None:
                    changed += self._remove(document.path)
                else:
                    changed += self._local.write(document.path, document.body)
                    self._local.stamp(document.path, document.modified)
                self.applied = document.seq
            if len(changes) < BATCH:
                break
        if full:
            published = self._log.index()
            for path in self._local.walk(clear_temps=True):  # a killed write's leftovers too
                if path not in published:
                    changed += self._remove(path)
        self.holding = self.applied > 0
        self.synced = datetime.now(UTC)
        return changed

    def _remove(self, path: str) -> bool:
        """Remove the file at `path`, and its folders that this leaves empty."""
        removed = self._local.remove(path)
        folder = posixpath.dirname(path)
        if folder:  # a file at the top: the directory itself stays
            self._local.remove_empty(folder)
        return removed

    def behind(self) -> tuple[int, float]:
        """How many changes are not applied yet, and how many seconds ago the oldest of them
        was made (0 when none is)."""
        count, oldest = self._log.pending(self.applied)
        if not count or oldest is None:
            return count, 0.0
        return count, max(0.0, (datetime.now(UTC) - oldest).total_seconds())
