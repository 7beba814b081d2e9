"""Several instances on one shared state: who leads, and how the others follow.

    election thread   a follower tries to win leadership every `cluster.retry` seconds; the
                      leader renews it about four times per lease. Winning: catch up with
                      the published documents, then `on_lead(term)` (the app fences its
                      writes with the term, and the service rescans and renders everything).
                      Losing (the database says another term, or cannot be reached):
                      `on_follow()` at once, then mirror everything again.
    mirror thread     while following: apply the published documents as notifications
                      arrive, and every `cluster.catch_up` seconds besides (a missed
                      notification costs at most that)

The database is the arbiter (an advisory lock, a term; see aggregator.store.shared):
nothing here decides leadership on its own clock. What the threads saw is `status()`,
which /healthz and /metrics show.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from aggregator import logs
from aggregator.config import ClusterConfig
from aggregator.errors import AggregatorError, InUseError
from aggregator.output import OutputDir
from aggregator.published import Mirror
from aggregator.status import FOLLOWER, LEADER, ClusterStatus, iso
from aggregator.store.shared import Election, Notifications, SharedStore

log = logging.getLogger("aggregator")

PRUNE_EVERY = 60.0
"""Seconds between a follower's sweeps of its output directory for files the shared state
does not hold (a walk, and the list of published paths)."""
COUNTS_EVERY = 10.0
"""Seconds between a follower's readings of the state's counts when no file changed (a
rejected seed changes no published file)."""


def instance_name(port: int | None = None) -> str:
    """This instance as /healthz and the leadership table name it: host, port, pid."""
    where = socket.gethostname() + (f":{port}" if port is not None else "")
    return f"{where} pid {os.getpid()}"


class Cluster:
    """The election and mirror threads of one instance (see the module's docstring)."""

    def __init__(
        self,
        store: SharedStore,
        local: OutputDir,
        config: ClusterConfig,
        name: str,
        on_lead: Callable[[int], None],
        on_follow: Callable[[], None],
        quiet: Callable[[], AbstractContextManager[object]],
        stopping: threading.Event,
        on_synced: Callable[[], None] = lambda: None,
    ) -> None:
        """`quiet`: a context in which no job writes the output (the app's lock): the
        mirror works only inside it. `on_lead`/`on_follow` are called on the election thread,
        `on_synced` on the mirror thread after a catch-up that changed files, the first, and
        every `COUNTS_EVERY` seconds besides."""
        self._config = config
        self._name = name
        self._on_lead = on_lead
        self._on_follow = on_follow
        self._quiet = quiet
        self._stopping = stopping
        self._on_synced = on_synced
        self._mirror = Mirror(store.documents, local)
        self._election: Election = store.election(config.lease, name)
        self._notifications: Notifications = store.notifications()
        self._lock = threading.Lock()
        self._leading = False
        self._term = 0
        self._leader = ""
        self._since = iso(datetime.now(UTC))
        """When this instance took its current role."""
        self._error: str | None = None
        self._behind = (0, 0.0)
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def leading(self) -> bool:
        return self._leading

    def start(self) -> None:
        """Start the election and mirror threads (daemon threads: `stop` ends them)."""
        for target, name in ((self._elect, "cluster-election"), (self._follow, "cluster-mirror")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 1.0) -> None:
        """Give up leadership (another instance takes over at once) and stop the threads,
        waiting for them at most `timeout` seconds in all (they are daemon threads: a
        mirror waiting on a notification goes with the process)."""
        self._stopping.set()
        self._wake.set()
        with contextlib.suppress(AggregatorError):
            self._election.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(AggregatorError):
            self._notifications.close()

    def status(self) -> ClusterStatus:
        with self._lock:
            behind, lag = (0, 0.0) if self._leading else self._behind
            synced = self._mirror.synced
            return ClusterStatus(
                role=LEADER if self._leading else FOLLOWER,
                term=self._term,
                leader=self._leader,
                behind=behind,
                lag_seconds=round(lag, 3),
                synced=None if synced is None else synced.isoformat(timespec="seconds"),
                database="ok" if self._error is None else self._error,
                since=self._since,
                mirrored=self._mirror.holding,
            )

    # -- election ------------------------------------------------------------------------

    def _elect(self) -> None:
        heartbeat = min(self._config.retry, self._config.lease / 4)
        while not self._stopping.is_set():
            if self._leading:
                self._stopping.wait(heartbeat)
                if not self._stopping.is_set():
                    self._renew()
            else:
                self._try_lead()
                if not self._leading:
                    self._stopping.wait(self._config.retry)

    def _try_lead(self) -> None:
        try:
            term = self._election.try_lead(self._name)
            if term is None:
                self._seen(*self._election.leader())
                return
            with self._quiet():
                self._mirror.catch_up()  # the files the last leader published, first
        except AggregatorError as exc:
            with contextlib.suppress(AggregatorError):
                self._election.close()  # give the leadership back: another may do better
            self._failed(exc)
            return
        try:
            self._on_lead(term)
        except AggregatorError as exc:
            self._on_follow()
            with contextlib.suppress(AggregatorError):
                self._election.close()
            self._failed(exc)
            return
        with self._lock:
            self._leading, self._term, self._leader, self._error = True, term, self._name, None
            self._since = iso(datetime.now(UTC))
        log.info(
            "leading the shared state (term %d)", term, extra=logs.fields(role=LEADER, term=term)
        )

    def _renew(self) -> None:
        try:
            term = self._election.renew()
        except AggregatorError as exc:
            # The database ends a leader's session that stayed silent past the lease (this
            # process was paused, or could not reach it): another instance may lead now.
            self._lose(f"its leadership lapsed ({exc})")
            return
        if term != self._term:
            self._lose(f"another instance leads (term {term})")
            return
        self._reachable()

    def _lose(self, why: str) -> None:
        self._on_follow()  # fences the store at once
        with self._lock:
            self._leading = False
            self._since = iso(datetime.now(UTC))
        with contextlib.suppress(AggregatorError):
            self._election.close()
        log.warning("no longer leading: %s; following", why, extra=logs.fields(role=FOLLOWER))
        self._mirror.start_over()
        self._wake.set()

    def _reachable(self) -> None:
        """The shared state answered: clear the error /healthz shows, if any."""
        with self._lock:
            cleared, self._error = self._error is not None, None
        if cleared:
            log.info("shared state reachable again")

    def _seen(self, term: int, leader: str) -> None:
        with self._lock:
            self._term, self._leader = term, leader
        self._reachable()

    def _failed(self, exc: AggregatorError) -> None:
        with self._lock:
            first = self._error is None
            self._error = str(exc)
        if first:
            log.error("shared state: %s", exc, extra=logs.fields(error=str(exc)))

    # -- mirror --------------------------------------------------------------------------

    def _follow(self) -> None:
        counted = pruned = time.monotonic()
        while not self._stopping.is_set():
            if self._leading:
                self._wake.wait(self._config.catch_up)
                self._wake.clear()
                continue
            try:
                first = self._mirror.synced is None
                prune = time.monotonic() - pruned >= PRUNE_EVERY
                with self._quiet():
                    changed = 0 if self._leading else self._mirror.catch_up(prune)
                if prune:
                    pruned = time.monotonic()
                due = time.monotonic() - counted >= COUNTS_EVERY
                if changed or first or due:
                    self._on_synced()
                    counted = time.monotonic()
                behind = self._mirror.behind()
                with self._lock:
                    self._behind = behind
                self._reachable()
                self._notifications.wait(self._config.catch_up)
            except AggregatorError as exc:
                if self._stopping.is_set():
                    return  # its connections close as the service stops
                self._failed(exc)
                self._stopping.wait(self._config.retry)


@contextlib.contextmanager
def lead_once(store: SharedStore, lease: float, name: str) -> Iterator[int]:
    """Lead the shared state for the `with` block (a one-off command such as `build`);
    yields the term. Raises `InUseError` when an instance of the service runs on the state
    (leading or following) or another command leads, `StateError` when the database
    cannot be reached."""
    election = store.election(lease, name, service=False)
    done = threading.Event()
    renewing: threading.Thread | None = None
    try:
        # Not while the service runs on it, even between two leaders (a failover): the
        # command would publish its own settings' output to every instance.
        running = election.services()
        if running:
            raise InUseError(store.path, None, holder=", ".join(running), service=True)
        term = election.try_lead(name)
        if term is None:
            _, holder = election.leader()
            raise InUseError(store.path, None, holder=holder or "another instance")
        store.fence(term)

        def renew() -> None:  # the lease lapses unless renewed, and a build can be long
            while not done.wait(lease / 4):
                try:
                    election.renew()
                except AggregatorError:
                    return  # the writes that follow are fenced, and fail

        renewing = threading.Thread(target=renew, name="cluster-renew", daemon=True)
        renewing.start()
        yield term
    finally:
        done.set()
        if renewing is not None:
            renewing.join()
        store.fence(None)
        election.close()
