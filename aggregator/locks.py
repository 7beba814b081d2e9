"""One writer per state file and per output directory: OS file locks held for life.

Two processes writing one state file (or one output directory) lose entries
between them, and a one-off command writing beside the service rewrites the
service's output with its own settings. So every process that writes takes two
exclusive `flock`s first, and keeps them until it exits:

    <state.path>        the state file itself (created empty when missing): the lock
                        is on the file, so no other spelling of its path (a symbolic
                        or hard link) and no removable lock file gets round it
    <output.dir>        the directory itself: no file is added to what is served

A refusal names the holder's pid, read from /proc/locks (Linux), and its command.
The kernel drops a lock when its holder exits in any way, `kill -9` included,
so a lock is never stale. (`flock`, not `fcntl` record locks: SQLite uses those on
the state file, they are a separate kind on Linux, and a process's own `fcntl`
locks vanish when any descriptor of the file is closed.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aggregator.errors import InUseError, OutputError, StateError


@dataclass
class Held:
    """An exclusive lock on `path`, held until `release()` or the process ends."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = -1


def acquire(path: Path) -> Held:
    """Take the lock on the file at `path` (created empty if missing) for this process.

    Raises `InUseError` naming `path` and the holder's pid and command; `OSError`
    when the file cannot be opened or created. Read access is enough to lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    return _lock(fd, path)


def _lock(fd: int, path: Path) -> Held:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _flock_holder(fd)
        os.close(fd)
        raise InUseError(path, pid, _command_of(pid)) from None
    except OSError:
        os.close(fd)
        raise
    return Held(path, fd)


def acquire_directory(directory: Path) -> Held | None:
    """Take the lock on `directory` itself for this process, or raise `InUseError`.

    None where the file system cannot lock directories (some network file
    systems): the state file's lock is then the only guard.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _lock(fd, directory)
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EBADF, errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise


def _flock_holder(fd: int) -> int | None:
    """The pid holding a flock on the file of `fd`, from /proc/locks (Linux), if shown."""
    found = os.fstat(fd)
    key = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            for line in table:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; waiters have "->"
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == key:
                    return int(fields[4]) if fields[4].isdigit() and fields[4] != "0" else None
    except OSError:
        pass
    return None


def _command_of(pid: int | None) -> str:
    """`run`, `build` … when `pid` is an aggregator command; "" when unknown."""
    if pid is None:
        return ""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return ""
    for n, word in enumerate(words):
        if word in ("run", "build", "thumbnails", "links") and n > 0:
            return " ".join(words[n : n + 2]) if word == "links" else word
    return ""


@contextlib.contextmanager
def writing(state: Path | None, out: Path) -> Iterator[None]:
    """Hold the locks of a state file and an output directory for the `with` block."""
    held = hold(state, out)
    try:
        yield
    finally:
        for lock in reversed(held):
            lock.release()


def hold(state: Path | None, out: Path) -> list[Held]:
    """Take the state lock, then the output lock; both or neither. `state` None: the state
    is in PostgreSQL, where the leader's advisory lock (aggregator.leadership) guards it,
    and only the output directory is locked here.

    Raises `InUseError` when another process holds either, `StateError` or
    `OutputError` when the state file or output directory cannot be opened to lock.
    """
    if state is None:
        try:
            alone = acquire_directory(out)
        except OSError as exc:
            raise OutputError(f"{out}: cannot lock the output directory ({exc.strerror})") from None
        return [] if alone is None else [alone]
    try:
        first = acquire(state)
    except OSError as exc:
        if not state.exists() and not os.access(state.parent, os.W_OK | os.X_OK):
            raise StateError(
                f"{state}: cannot create the state file: its folder {state.parent} is not "
                f"writable ({exc.strerror}); make it writable for this user"
            ) from None
        raise StateError(f"{state}: cannot lock the state file ({exc.strerror})") from None
    try:
        second = acquire_directory(out)
    except OSError as exc:
        first.release()
        raise OutputError(f"{out}: cannot lock the output directory ({exc.strerror})") from None
    except BaseException:
        first.release()
        raise
    return [first] if second is None else [first, second]
