"""Where the site is written: the `Output` protocol, and the local directory that implements it.

`Output` is what the pipeline needs of a place to publish to, and no more:
write-if-changed, read back, list, remove. Files are named by relative POSIX
paths (`feeds/ai.atom`); a path that would leave the output is refused with
`OutputError`. Nothing but an implementation of `Output` touches the files of
the output; the HTTP server, which serves a local directory by nature, takes
only `OutputDir.root`, and is told when files change (`OutputDir.on_change`).

`OutputDir`, the local directory: a file is replaced only when its bytes differ,
through a temp file in the same directory that is fsynced and renamed into
place; a reader (or the HTTP server) sees the old file or the new one, never
half of one, and an unchanged file keeps its mtime and so its ETag. Inside
`batch()` (a render), each file written goes to its temp file at once, and they
are made durable and put in place together when it ends: fsynced all at once (one
journal commit, not one per file), renamed, and each folder fsynced once.

`MemoryOutput` keeps the files in a dict, for tests of what is written without
a directory; both run the contract suite in `tests/test_output.py`.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import posixpath
import secrets
import stat
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aggregator.errors import OutputError
from aggregator.formats import FILE_KINDS

TEMP_PREFIX = ".tmp-"
_STALE_TEMP_SECONDS = 600


GZIP_SUFFIXES = tuple(suffix for suffix, kind in FILE_KINDS.items() if kind.compressible)
"""The kinds of file that get a `.gz` sidecar (when asked): the text ones."""


@dataclass
class RenderReport:
    """What one render wrote, left as it was, and removed (paths in the output directory)."""

    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)


class Output(Protocol):
    """A place the site is published to, addressed by relative POSIX paths.

    Every method raises `OutputError` for a path that would leave the output
    (absolute, or climbing out with `..`) or that names the output itself.
    """

    def write(self, relative: str, data: bytes) -> bool:
        """Put `data` at `relative` unless those bytes are already there.

        Returns True when the file changed (created or replaced), False when it
        already held `data`. Raises `OutputError` when it cannot be written.
        """
        ...

    def read(self, relative: str) -> bytes | None:
        """Returns the bytes of the file at `relative`; None when there is no file there
        or it cannot be read (the caller writes it anew). Never raises but for a path
        outside the output."""
        ...

    def exists(self, relative: str) -> bool:
        """Returns whether a file is at `relative`. Never raises but for a path outside."""
        ...

    def head(self, relative: str, size: int) -> bytes | None:
        """Returns the first `size` bytes of the file at `relative` (all of a shorter one);
        None as `read` does."""
        ...

    def files(self, folder: str, suffix: str) -> list[str]:
        """Returns the relative paths (`folder/name`, sorted) of the files directly in
        `folder` whose names end in `suffix`; none when the folder does not exist.
        Raises `OutputError` when the folder cannot be listed."""
        ...

    def folders(self, folder: str) -> list[str]:
        """Returns the names (sorted) of the folders directly inside `folder`; none when
        it does not exist. Raises `OutputError` when it cannot be listed."""
        ...

    def remove(self, relative: str) -> bool:
        """Remove the file at `relative` and any `.gz` sidecar of it.

        Returns True when there was a file to remove. Raises `OutputError` when
        it cannot be removed."""
        ...

    def prune(self, folder: str, suffix: str, keep: Collection[str]) -> list[str]:
        """Remove the files directly in `folder` ending in `suffix` whose relative paths
        are not in `keep`, and the `.gz` sidecars of files not in `keep`.

        Returns the relative paths removed. Raises `OutputError` when the folder
        cannot be listed or a file cannot be removed."""
        ...

    def remove_empty(self, folder: str) -> None:
        """Remove `folder`, then its parents inside the output, as long as they are empty.

        Returns nothing; a folder that is not empty (or not there) is left alone."""
        ...

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """A block whose writes may be held and made at its end, all together (or, when it
        raises, not at all); inside, the output reads back what was written."""
        ...


@dataclass(slots=True)
class _Held:
    """A file written inside `OutputDir.batch()`, not yet in place: its bytes are in a temp
    file beside it already, which `flush` makes durable and renames over it."""

    data: bytes
    target: Path
    temp: str
    mtime: int | None = None
    """The modification time `stamp` gave it (seconds since the epoch)."""


FSYNC_THREADS = 16
"""How many files of a batch are fsynced at once: the file system makes them durable in
one journal commit, where one after another costs a commit each."""


class OutputDir:
    """The directory the feeds are written to and served from.

    With `gzip_sidecars`, each text file also gets a `<name>.gz` beside it
    (deterministic bytes), for servers such as nginx's `gzip_static`. Both
    files are compared and written on their own, so a crash between the two
    writes is repaired by the next write of the same content.
    """

    def __init__(self, root: Path, gzip_sidecars: bool = False) -> None:
        self.gzip_sidecars = gzip_sidecars
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.root = root.resolve(strict=True)
        except OSError as exc:
            raise OutputError(
                f"{root}: cannot create the output directory ({exc.strerror})"
            ) from None
        self._mode = 0o666 & ~_umask()
        self._held: dict[str, _Held] | None = None
        """Inside `batch()`: the files written and not yet in place, by relative path."""
        self._ready: set[Path] = set()
        """Inside `batch()`: the folders cleared of dead writers' temp files."""
        self._watchers: list[Callable[[], None]] = []

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever files are put in place, removed or given a new time
        here, after it is done (on the thread that wrote): the server, which keeps the
        files in memory, then looks at them again at once."""
        self._watchers.append(callback)

    def _changed(self) -> None:
        for callback in self._watchers:
            callback()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the files written in the block, and put them in place together at its end
        (`flush`), or before anything lists or removes files. Reading a held file gives its
        new bytes. When the block raises, the held files are dropped: the output stays as
        it was before them. Raises `OutputError` when one cannot be written.

        A held file is written to a temp file beside its target at once (a render writes
        while its workers render the next feeds), and `flush` makes them all durable and
        renames them into place."""
        if self._held is not None:  # inside another batch: that one puts them in place
            yield
            return
        self._held = {}
        try:
            yield
            self.flush()
        finally:
            held, self._held = self._held, None
            self._ready = set()
            for file in held.values():  # dropped: the block raised
                with contextlib.suppress(OSError):
                    os.unlink(file.temp)

    def flush(self) -> None:
        """Put the held files in place: all fsynced at once, each renamed over its target,
        then each folder fsynced once. Raises `OutputError` when one cannot be written
        (none of the rest is renamed then, and their temp files are removed)."""
        self._ready = set()  # a folder may go (what removes files flushes first) and come back
        if not self._held:
            return
        held, self._held = self._held, {}
        fds: list[int] = []
        placed = 0
        target = self.root
        try:
            try:
                for file in held.values():
                    target = file.target
                    try:
                        fds.append(os.open(file.temp, os.O_RDONLY | os.O_NOFOLLOW))
                    except FileNotFoundError:  # its folder was removed meanwhile: again
                        file.temp = self._stage(target, file.data).temp
                        fds.append(os.open(file.temp, os.O_RDONLY | os.O_NOFOLLOW))
                    # The time it is put in place (as when it was written here), or its stamp.
                    times = None if file.mtime is None else (file.mtime, file.mtime)
                    os.utime(fds[-1], times)
                _fsync_all(fds)
                try:
                    for file in held.values():
                        target = file.target
                        os.replace(file.temp, target)
                        placed += 1
                finally:
                    if placed:
                        self._changed()
                for folder in sorted({file.target.parent for file in held.values()}):
                    target = folder
                    _fsync_dir(folder)
            except BaseException:
                for file in list(held.values())[placed:]:
                    with contextlib.suppress(OSError):
                        os.unlink(file.temp)
                raise
            finally:
                for fd in fds:
                    os.close(fd)
        except OSError as exc:
            raise OutputError(f"{target}: cannot write ({exc.strerror})") from None

    def _stage(self, target: Path, data: bytes) -> _Held:
        """`data` in a new temp file beside `target` (in the batch's folders), to be put in
        place by `flush`. Raises OSError."""
        folder = target.parent
        folder.mkdir(parents=True, exist_ok=True)  # (it may have been removed meanwhile)
        if folder not in self._ready:
            _clear_dead_temps(folder)
            self._ready.add(folder)
        fd, temp = tempfile.mkstemp(prefix=_temp_prefix(), dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                os.fchmod(handle.fileno(), self._mode)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return _Held(data, target, temp)

    def path(self, relative: str) -> Path:
        """The absolute path of `relative`, refused when it would leave the directory."""
        target = (self.root / relative).resolve()
        if not target.is_relative_to(self.root) or target == self.root:
            raise OutputError(f"{relative!r}: refusing to write outside {self.root}")
        return target

    def write(self, relative: str, data: bytes) -> bool:
        """Put `data` at `relative` unless it is already there; True when the file changed.

        With sidecars on, a text file's `.gz` is compared and written too; with them
        off, a sidecar left from when they were on is removed. Raises `OutputError`
        when a file cannot be read, written or removed."""
        if relative.endswith(GZIP_SUFFIXES):
            sidecar = relative + ".gz"
            if self.gzip_sidecars:
                self._write(sidecar, gzip.compress(data, compresslevel=9, mtime=0))
            else:  # left from when sidecars were on: it would go stale
                stale = self.path(sidecar)
                if os.path.lexists(stale) and self._unlink(stale):  # (see `remove`)
                    self._changed()
        return self._write(relative, data)

    @staticmethod
    def _unlink(path: Path) -> bool:
        """Remove the file at `path`; False when there is none (nor a folder for it).
        Raises `OutputError` when it cannot be removed."""
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise OutputError(f"{path}: cannot remove ({exc.strerror})") from None
        return True

    def _write(self, relative: str, data: bytes) -> bool:
        target = self.path(relative)
        if self._held is not None:
            if self.read(relative) == data:
                return False
            try:
                staged = self._stage(target, data)
            except OSError as exc:
                raise OutputError(f"{target}: cannot write ({exc.strerror})") from None
            replaced = self._held.get(relative)
            self._held[relative] = staged
            if replaced is not None:  # written twice in the batch: the first is not kept
                with contextlib.suppress(OSError):
                    os.unlink(replaced.temp)
            return True
        try:
            if _read_regular(target) == data:
                return False
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OutputError(f"{target}: cannot read ({exc.strerror})") from None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=_temp_prefix(), dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fchmod(handle.fileno(), self._mode)
                    os.fsync(handle.fileno())
                os.replace(temp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            self._changed()
            _fsync_dir(target.parent)
        except OSError as exc:
            raise OutputError(f"{target}: cannot write ({exc.strerror})") from None
        return True

    def stamp(self, relative: str, modified: int) -> None:
        """Give the file at `relative` (and its `.gz` sidecar) the modification time
        `modified` (seconds since the epoch), which the server sends as Last-Modified:
        instances serving the same bytes then send the same one. A file that is not
        there is skipped. Raises `OutputError` when the time cannot be set."""
        for name in (relative, relative + ".gz"):
            target = self.path(name)
            held = self._held.get(name) if self._held is not None else None
            if held is not None:
                held.mtime = modified
                continue
            try:
                if os.stat(target, follow_symlinks=False).st_mtime_ns != modified * 10**9:
                    os.utime(target, (modified, modified), follow_symlinks=False)
                    self._changed()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise OutputError(f"{target}: cannot set its time ({exc.strerror})") from None

    def walk(self, clear_temps: bool = False) -> list[str]:
        """The relative paths (sorted) of every regular file below the directory, `.gz`
        sidecars and temp files of unfinished writes aside; `clear_temps`: also remove those
        temp files, whatever their age (only when nothing else writes the directory).
        Raises `OutputError` when a folder cannot be listed or a temp file removed."""
        self.flush()
        found: list[str] = []
        pending = [""]
        while pending:
            folder = pending.pop()
            directory = self.path(folder) if folder else self.root
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        relative = f"{folder}/{entry.name}" if folder else entry.name
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(relative)
                        elif clear_temps and entry.name.startswith(TEMP_PREFIX):
                            self._unlink(Path(entry.path))
                        elif (
                            entry.is_file(follow_symlinks=False)
                            and not entry.name.startswith(TEMP_PREFIX)
                            and not entry.name.endswith(".gz")
                        ):
                            found.append(relative)
            except OSError as exc:
                raise OutputError(f"{directory}: cannot list ({exc.strerror})") from None
        return sorted(found)

    def fingerprint(self) -> str:
        """A digest of the name, type, size, inode, modification and change times of every
        file and folder below the directory (sidecars and temp files too): any file written,
        edited, added or removed since changes it. Raises `OutputError` when a folder
        cannot be listed."""
        found: list[str] = []
        pending = [str(self.root)]
        while pending:
            folder = pending.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        info = entry.stat(follow_symlinks=False)
                        found.append(
                            f"{entry.path}\0{info.st_mode}\0{info.st_size}\0{info.st_ino}"
                            f"\0{info.st_mtime_ns}\0{info.st_ctime_ns}"
                        )
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
            except OSError as exc:
                raise OutputError(f"{folder}: cannot list ({exc.strerror})") from None
        text = "\n".join(sorted(found))
        return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()

    def read(self, relative: str) -> bytes | None:
        """The bytes of the regular file at `relative`; None when there is none or it cannot
        be read."""
        return self.head(relative, -1)

    def exists(self, relative: str) -> bool:
        """Whether a regular file (or a symlink to one inside the directory) is at `relative`."""
        if self._held is not None and relative in self._held:
            return True
        return self.path(relative).is_file()

    def head(self, relative: str, size: int) -> bytes | None:
        """The first `size` bytes (all with -1) of the regular file at `relative`; None when
        there is none or it cannot be read (a FIFO put there is not waited on)."""
        held = self._held.get(relative) if self._held is not None else None
        if held is not None:
            return held.data if size < 0 else held.data[:size]
        try:
            return _read_regular(self.path(relative), size)
        except OSError:
            return None

    def files(self, folder: str, suffix: str) -> list[str]:
        """Relative paths (sorted) of the regular files (not symlinks) directly in `folder`
        whose names end in `suffix`, temp files of unfinished writes aside."""
        self.flush()
        directory = self.path(folder)
        try:
            with os.scandir(directory) as entries:
                names = [
                    e.name
                    for e in entries
                    if e.name.endswith(suffix)
                    and not e.name.startswith(TEMP_PREFIX)
                    and e.is_file(follow_symlinks=False)
                ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise OutputError(f"{directory}: cannot list ({exc.strerror})") from None
        return sorted(f"{folder}/{name}" for name in names)

    def remove(self, relative: str) -> bool:
        """Remove the file at `relative` and its `.gz` sidecar, if any; True when the file
        was there. Raises `OutputError` when one cannot be removed."""
        self.flush()
        target = self.path(relative)
        sidecar = self._unlink(self.path(relative + ".gz"))
        removed = self._unlink(target)
        if removed or sidecar:
            self._changed()
            _fsync_dir(target.parent)
        return removed

    def prune(self, folder: str, suffix: str, keep: Collection[str]) -> list[str]:
        """Remove files ending in `suffix` under `folder` that are not in `keep`.

        Also clears temp files left by an interrupted write. Returns the
        relative paths removed; raises `OutputError` when the folder cannot be
        listed or a file cannot be removed.
        """
        self.flush()
        directory = self.path(folder)
        removed: list[str] = []
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return removed
        except OSError as exc:
            raise OutputError(f"{directory}: cannot list ({exc.strerror})") from None
        now = time.time()
        for entry in entries:
            relative = f"{folder}/{entry.name}"
            if not entry.is_file(follow_symlinks=False):
                continue
            stale_temp = entry.name.startswith(TEMP_PREFIX) and (
                now - entry.stat(follow_symlinks=False).st_mtime > _STALE_TEMP_SECONDS
            )
            unwanted = entry.name.endswith(suffix) and relative not in keep
            orphan = entry.name.endswith(suffix + ".gz") and relative[:-3] not in keep
            if stale_temp or unwanted or orphan:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise OutputError(f"{entry.path}: cannot remove ({exc.strerror})") from None
                if not stale_temp:
                    removed.append(relative)
        if removed:
            self._changed()
            _fsync_dir(directory)
        return removed

    def folders(self, folder: str) -> list[str]:
        """Names of the folders (not symlinks) directly inside `folder`."""
        self.flush()
        try:
            with os.scandir(self.path(folder)) as entries:
                return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise OutputError(f"{self.path(folder)}: cannot list ({exc.strerror})") from None

    def remove_empty(self, folder: str) -> None:
        """Remove `folder` and then its parents inside the directory, as long as they are empty."""
        self.flush()
        target = self.path(folder)
        while target != self.root:
            try:
                target.rmdir()
            except OSError:
                return  # not empty (or already gone): leave it
            target = target.parent


class MemoryOutput:
    """An `Output` in a dict, for tests: the same answers as `OutputDir`, without a directory.

    A folder exists while a file is in it, so `remove_empty` has nothing to do.
    """

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to hold: a dict is written at once."""
        return contextlib.nullcontext()

    def __init__(self, gzip_sidecars: bool = False) -> None:
        self.gzip_sidecars = gzip_sidecars
        self.data: dict[str, bytes] = {}
        """Normalized relative path → the file's bytes."""

    def write(self, relative: str, data: bytes) -> bool:
        """Put `data` at `relative` unless it is already there; True when the file changed.

        Sidecars as `OutputDir.write`. Raises `OutputError` where a folder is in
        the way, or a file where a folder must be."""
        if relative.endswith(GZIP_SUFFIXES):
            if self.gzip_sidecars:
                self._write(relative + ".gz", gzip.compress(data, compresslevel=9, mtime=0))
            else:
                self.data.pop(_confined(relative + ".gz"), None)
        return self._write(relative, data)

    def _write(self, relative: str, data: bytes) -> bool:
        key = _confined(relative)
        if self.data.get(key) == data:
            return False
        if self._is_folder(key):
            raise OutputError(f"{relative}: cannot write (Is a directory)")
        parent = posixpath.dirname(key)
        while parent:
            if parent in self.data:
                raise OutputError(f"{relative}: cannot write (Not a directory)")
            parent = posixpath.dirname(parent)
        self.data[key] = bytes(data)
        return True

    def read(self, relative: str) -> bytes | None:
        """The bytes at `relative`; None when there is no file there."""
        return self.data.get(_confined(relative))

    def exists(self, relative: str) -> bool:
        """Whether a file is at `relative`."""
        return _confined(relative) in self.data

    def head(self, relative: str, size: int) -> bytes | None:
        """The first `size` bytes (all with -1) of the file at `relative`; None when none."""
        data = self.read(relative)
        if data is None or size < 0:
            return data
        return data[:size]

    def files(self, folder: str, suffix: str) -> list[str]:
        """Relative paths (sorted) of the files directly in `folder` ending in `suffix`.

        Raises `OutputError` when `folder` is a file."""
        return sorted(f"{folder}/{name}" for name in self._names(folder) if name.endswith(suffix))

    def folders(self, folder: str) -> list[str]:
        """Names (sorted) of the folders directly inside `folder`.

        Raises `OutputError` when `folder` is a file."""
        prefix = self._prefix(folder)
        inside = (key[len(prefix) :] for key in self.data if key.startswith(prefix))
        return sorted({rest.partition("/")[0] for rest in inside if "/" in rest})

    def remove(self, relative: str) -> bool:
        """Remove the file at `relative` and its `.gz` sidecar; True when the file was there."""
        key = _confined(relative)
        self.data.pop(key + ".gz", None)
        return self.data.pop(key, None) is not None

    def prune(self, folder: str, suffix: str, keep: Collection[str]) -> list[str]:
        """Remove the files in `folder` ending in `suffix` and not in `keep`, and the sidecars
        of files not in `keep`; returns the relative paths removed (as `OutputDir.prune`).

        Raises `OutputError` when `folder` is a file."""
        removed: list[str] = []
        prefix = self._prefix(folder)
        for name in self._names(folder):
            relative = f"{folder}/{name}"
            unwanted = name.endswith(suffix) and relative not in keep
            orphan = name.endswith(suffix + ".gz") and relative[:-3] not in keep
            if unwanted or orphan:
                del self.data[prefix + name]
                removed.append(relative)
        return removed

    def remove_empty(self, folder: str) -> None:
        """Nothing to do: a folder is there only while files are in it."""
        _confined(folder)

    def _prefix(self, folder: str) -> str:
        key = _confined(folder)
        if key in self.data:
            raise OutputError(f"{folder}: cannot list (Not a directory)")
        return key + "/"

    def _names(self, folder: str) -> list[str]:
        """Names of the files directly in `folder`, in the order they were written."""
        prefix = self._prefix(folder)
        inside = (key[len(prefix) :] for key in self.data if key.startswith(prefix))
        return [rest for rest in inside if "/" not in rest]

    def _is_folder(self, key: str) -> bool:
        prefix = key + "/"
        return any(k.startswith(prefix) for k in self.data)


def _confined(relative: str) -> str:
    """`relative` normalized (`a/./b` → `a/b`); `OutputError` when it leaves the output or
    names the output itself (pure)."""
    key = posixpath.normpath(relative)
    if posixpath.isabs(relative) or key in {".", ".."} or key.startswith("../"):
        raise OutputError(f"{relative!r}: refusing to write outside the output")
    return key


def _read_regular(path: Path, size: int = -1) -> bytes | None:
    """The first `size` bytes (all with -1) of the file at `path`; None when it is not a
    regular file. Opened without blocking, so that a FIFO is never waited on.

    Raises `OSError` when it cannot be opened or read (`IsADirectoryError` for a folder)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            return None
        return handle.read(size)


def content_tag(data: bytes) -> str:
    """The ETag of a file's bytes, quotes included: the same on every instance that serves
    them (pure)."""
    return '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_WRITER: tuple[int, str] = (0, "")
"""(pid, prefix) of this process's temp files (made anew in a forked child)."""


def _temp_prefix() -> str:
    """How this process's temp files start: `.tmp-<pid>-<token>-`, the token drawn once
    per process, so that the files of an earlier process that had the same pid (a
    container's service is pid 1 every time it starts) are told from this one's (see
    `_clear_dead_temps`)."""
    global _WRITER
    pid = os.getpid()
    if _WRITER[0] != pid:
        _WRITER = (pid, f"{TEMP_PREFIX}{pid}-{secrets.token_hex(4)}-")
    return _WRITER[1]


def _clear_dead_temps(folder: Path) -> None:
    """Remove the temp files in `folder` of writers that are gone: a process killed in the
    middle of a batch leaves one per file it had written. The writer is in the name: a
    process still running keeps its files (to the stale rule), and so does a name without
    one; this process's pid with another token is an earlier process's."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.startswith(TEMP_PREFIX)]
    except OSError:
        return  # the write that follows says what is wrong
    own = _temp_prefix()
    for name in names:
        writer = name[len(TEMP_PREFIX) :].partition("-")[0]
        if not writer.isdigit() or name.startswith(own):
            continue
        if int(writer) == os.getpid() or not _running(int(writer)):
            with contextlib.suppress(OSError):
                os.unlink(folder / name)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's
    return True


def _fsync_all(fds: list[int]) -> None:
    """fsync every file, at once: concurrent fsyncs share the file system's journal commits."""
    if len(fds) == 1:
        os.fsync(fds[0])
    elif fds:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(FSYNC_THREADS, len(fds))) as pool:
            list(pool.map(os.fsync, fds))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
