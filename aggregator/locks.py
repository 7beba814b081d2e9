"""One writer per state file and per output directory: OS file locks held for life.

Two processes writing one state file (or one output directory) lose entries
between them, and a one-off command writing beside the service rewrites the
service's output with its own settings. So every process that writes takes two
exclusive `flock`s first, and keeps them until it exits:

    <state.path>.lock   a lock file beside the state file; the holder writes its
                        pid and command into it, so a refusal can name them
    <output.dir>        the directory itself: no file is added to what is
                        served (the holder's pid is read from /proc/locks)

The kernel drops a lock when its holder exits in any way, `kill -9` included,
so a lock is never stale: a lock file left on disk locks nothing. (`flock`,
not `fcntl` record locks: SQLite uses those on the state file itself, and a
process's own `fcntl` locks vanish when any descriptor of the file is closed.)
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


def state_lock_path(state: Path) -> Path:
    """The lock file of a state file: beside it, where SQLite keeps its -wal and -shm."""
    return state.with_name(state.name + ".lock")


@dataclass
class Held:
    """An exclusive lock on `path`, held until `release()` or the process ends."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = -1


def acquire(lock_path: Path, what: Path, command: str) -> Held:
    """Take the lock on `lock_path` (which guards `what`) for this process, or raise.

    `InUseError` names `what` and the pid (and command) of the holder;
    `OSError` when the lock file cannot be created at all.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # Not O_TRUNC: the holder's pid must stay readable until the lock is ours.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise InUseError(what, *holder) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
    return Held(lock_path, fd)


def _holder(fd: int) -> tuple[int | None, str]:
    """(pid, command) the holder wrote into the lock file; (None, "") if not yet written."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace")
    except OSError:
        return None, ""
    pid, _, command = text.strip().partition(" ")
    return (int(pid) if pid.isdigit() else None), command.strip()


def acquire_directory(directory: Path) -> Held | None:
    """Take the lock on `directory` itself for this process, or raise `InUseError`.

    None where the file system cannot lock directories (some network file
    systems): the state file's lock is then the only guard.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _flock_holder(fd)
        os.close(fd)
        raise InUseError(directory, pid, _command_of(pid)) from None
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOLCK, errno.EBADF, errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise
    return Held(directory, fd)


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
def writing(state: Path, out: Path, command: str) -> Iterator[None]:
    """Hold the locks of a state file and an output directory for the `with` block."""
    held = hold(state, out, command)
    try:
        yield
    finally:
        for lock in reversed(held):
            lock.release()


def hold(state: Path, out: Path, command: str) -> list[Held]:
    """Take the state lock, then the output lock; both or neither.

    Raises `InUseError` when another process holds either, `StateError` or
    `OutputError` when a lock file cannot be created.
    """
    lock = state_lock_path(state)
    try:
        first = acquire(lock, state, command)
    except OSError as exc:
        raise StateError(f"{lock}: cannot lock the state file ({exc.strerror})") from None
    try:
        second = acquire_directory(out)
    except OSError as exc:
        first.release()
        raise OutputError(f"{out}: cannot lock the output directory ({exc.strerror})") from None
    except BaseException:
        first.release()
        raise
    return [first] if second is None else [first, second]
