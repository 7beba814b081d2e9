"""One writer per state file and per output directory: OS file locks held for life.

Two processes writing one state file (or one output directory) lose entries
between them, and a one-off command writing beside the service rewrites the
service's output with its own settings. So every process that writes takes an
exclusive `flock` on a lock file first, and keeps it until it exits:

    <state.path>.lock              beside the state file
    <output.dir>/.aggregator.lock  inside the output directory (hidden: never
                                   served, and no clean-up touches it)

The kernel drops the lock when the holder exits in any way, `kill -9`
included, so a lock is never stale: a lock file left on disk locks nothing.
The holder writes its pid and command into the file, so a refusal can name
the process in the way. (`flock`, not `fcntl` record locks: SQLite uses those
on the state file itself, and a process's own `fcntl` locks vanish when any
descriptor of the file is closed.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aggregator.errors import InUseError, OutputError, StateError

OUTPUT_LOCK_NAME = ".aggregator.lock"
"""The lock file inside the output directory (hidden names are never served)."""


def state_lock_path(state: Path) -> Path:
    """The lock file of a state file: beside it, where SQLite keeps its -wal and -shm."""
    return state.with_name(state.name + ".lock")


def output_lock_path(out: Path) -> Path:
    return out / OUTPUT_LOCK_NAME


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
    lock = output_lock_path(out)
    try:
        second = acquire(lock, out, command)
    except OSError as exc:
        first.release()
        raise OutputError(f"{lock}: cannot lock the output directory ({exc.strerror})") from None
    except BaseException:
        first.release()
        raise
    return [first, second]
