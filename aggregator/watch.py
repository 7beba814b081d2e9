"""Watching the seed directory for file-system events (the only place with watchfiles).

A `Watcher` runs on a thread of its own and hands each batch of events to a callback
as the paths they name, or None when a folder moved in or out (events name no files
then: walk everything). It stops when its stop event is set. Where the directory
cannot be watched (it is missing, inotify has no watches left), it logs why and tries
again after a while, or as soon as the directory appears or is replaced (it looks every
second), as it does once the directory it watches is removed or replaced; the periodic
rescan goes on regardless.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchfiles import Change, watch

log = logging.getLogger("aggregator")

DEBOUNCE_MS = 50
"""Events closer together than this come in one batch."""
STEP_MS = 10
"""How often watchfiles looks for new events while a batch gathers."""
CHECK_MS = 1000
"""How often, when no event comes, the watcher looks whether the directory it watches is
still there (its removal is not always an event)."""

Changed = Callable[[set[str] | None], None]
"""Called with the paths a batch of events names, or None for "walk everything"."""


def paths_to_scan(
    changes: Iterable[tuple[Change, str]], is_dir: Callable[[str], bool] = os.path.isdir
) -> set[str] | None:
    """The paths a batch of `changes` names, or None when one of them is a folder added or
    removed (a folder moved in or out names none of its files). Pure but for `is_dir`,
    which is asked only about paths not merely modified; raises nothing `is_dir` does not.
    """
    paths: set[str] = set()
    for change, path in changes:
        if change != Change.modified and is_dir(path):
            return None
        paths.add(path)
    return paths


class Watcher:
    """Watches a directory tree on a thread of its own (see the module's notes)."""

    def __init__(
        self,
        directory: Callable[[], Path],
        changed: Changed,
        stop: threading.Event,
        retry_after: Callable[[], float],
    ) -> None:
        """`directory`: the tree to watch (asked again after each failure); `changed`: called
        on the watcher's thread with each batch; `stop`: ends the watcher once set;
        `retry_after`: seconds to wait before watching again after a failure."""
        self._directory = directory
        self._changed = changed
        self._stop = stop
        self._retry_after = retry_after
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching on a daemon thread named `seed-watcher`. Raises `RuntimeError`
        when already started."""
        if self._thread is not None:
            raise RuntimeError("the watcher is already started")
        self._thread = threading.Thread(target=self._run, name="seed-watcher", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds for the thread to end (after `stop` is set); True
        when it has ended (or never started)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        # True once the watch was lost: what is written until it is back is heard by
        # nobody, so the first batch after it asks for a walk of everything.
        again = False
        while not self._stop.is_set():
            directory = self._directory()
            try:
                # watchfiles waits without a word on a directory that is not there, and
                # hears nothing more of one removed and made again: look before watching,
                # and watch again once the directory watched is gone.
                watched = _identity(directory)
                for changes in watch(
                    directory,
                    stop_event=self._stop,
                    debounce=DEBOUNCE_MS,
                    step=STEP_MS,
                    raise_interrupt=False,
                    ignore_permission_denied=True,
                    rust_timeout=CHECK_MS,
                    yield_on_timeout=True,  # an empty batch: time to look again
                ):
                    if self._stop.is_set():
                        return
                    if again:
                        again = False
                        self._changed(None)
                    elif changes:
                        self._changed(paths_to_scan(changes))
                    if _identity(directory) != watched:
                        again = True
                        break
            except (OSError, RuntimeError) as exc:
                log.warning("cannot watch %s (%s); rescanning every interval", directory, exc)
                again = True
                self._wait_to_retry(directory)

    def _wait_to_retry(self, directory: Path) -> None:
        """Wait `retry_after` seconds before watching again, or less: until the stop event
        is set, or `directory` appears or is replaced (looked at every CHECK_MS), so a seed
        directory made again is watched within about a second, not an interval later.
        Returns None; raises nothing."""
        before = _identity_or_none(directory)
        deadline = time.monotonic() + self._retry_after()
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.wait(min(left, CHECK_MS / 1000)):
                return
            if _identity_or_none(directory) not in (before, None):
                return


def _identity_or_none(directory: Path) -> tuple[int, int] | None:
    """`_identity` of `directory`, or None when it is missing or no directory (or cannot be
    looked at). Raises nothing."""
    try:
        return _identity(directory)
    except OSError:
        return None


def _identity(directory: Path) -> tuple[int, int]:
    """(device, inode) of `directory`; raises `OSError` when it is missing or no
    directory (`NotADirectoryError`)."""
    info = os.stat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory))
    return info.st_dev, info.st_ino
