"""What /healthz reports: typed records of the last scan, build and link check.

Written by the service's jobs, read by the server; `Status.report` turns them into
the JSON body (keys and order as the health endpoint has always had them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aggregator import __version__

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

JsonObject = dict[str, object]
"""A JSON object as `json.dumps` takes it."""
MAX_HEALTH_REJECTED = 20
"""Rejected seed files /healthz names (first by path); `rejected` counts them all."""


def iso(moment: datetime) -> str:
    """Returns `moment` as ISO 8601 to the second, as /healthz shows times."""
    return moment.isoformat(timespec="seconds")


@dataclass(frozen=True)
class ScanStatus:
    """A scan that succeeded."""

    at: str
    ok: bool
    seconds: float
    files: int
    parsed: int
    removed: int
    problems: list[str]


@dataclass(frozen=True)
class ScanFailure:
    """A scan that failed, and why."""

    at: str
    ok: bool
    seconds: float
    error: str


@dataclass(frozen=True)
class BuildStatus:
    """The last render of a scan: files written, left as they were, removed."""

    at: str
    written: int
    unchanged: int
    removed: int


@dataclass(frozen=True)
class LinkStatus:
    """The last link check."""

    at: str
    checked: int
    deferred: int
    verdicts: dict[str, int]
    network_down: bool
    changed: int


@dataclass(frozen=True)
class Counts:
    """What the state holds after the last successful scan."""

    seeds: int
    articles: int
    topics: int
    rejected: int


@dataclass(frozen=True)
class RejectedFile:
    """A rejected seed file (relative to `seeds.dir`, printable) and the reason."""

    file: str
    reason: str


LEADER, FOLLOWER = "leader", "follower"
"""The roles of an instance on a shared state."""


@dataclass(frozen=True)
class ClusterStatus:
    """What /healthz says about this instance's place among the others."""

    role: str
    term: int
    """The term this instance leads in, or the latest it saw as a follower (0: none yet)."""
    leader: str
    """The instance that won the latest term, as it named itself ("" when unknown)."""
    behind: int
    """Published changes this follower has not applied yet (0 for the leader)."""
    lag_seconds: float
    """How long ago the oldest of those was published (0 when none is)."""
    synced: str | None
    """When this follower last caught up (ISO 8601), None before the first time."""
    database: str
    """"ok", or why the shared state cannot be reached."""
    since: str
    """When this instance took its current role (ISO 8601)."""
    mirrored: bool = False
    """Whether its last catch-up found published files (it has the site to serve)."""


def _json(record: DataclassInstance | None) -> JsonObject | None:
    return None if record is None else asdict(record)


@dataclass
class Status:
    """What /healthz reports; written by the service's jobs, read by the server."""

    started: str = field(default_factory=lambda: iso(datetime.now(UTC)))
    last_scan: ScanStatus | ScanFailure | None = None
    last_build: BuildStatus | None = None
    last_links: LinkStatus | None = None
    last_error: str | None = None
    counts: Counts | None = None
    rejected_files: list[RejectedFile] = field(default_factory=list)
    """The first MAX_HEALTH_REJECTED rejected seeds by path."""
    scans: int = 0
    """Scans finished since start-up, successful or not."""
    built: bool = False
    """A scan succeeded since start-up (the output holds the site)."""
    cluster: Callable[[], ClusterStatus] | None = None
    """This instance's place among several on a shared state (None: it runs alone)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self) -> tuple[int, JsonObject]:
        """Returns the HTTP status (200 when the last scan succeeded, else 503) and the
        JSON body of /healthz."""
        shared = self.cluster() if self.cluster is not None else None
        with self.lock:
            ok = self.last_scan is not None and self.last_scan.ok
            state = "ok" if ok else ("starting" if self.last_scan is None else "error")
            taking_over = shared is not None and (
                self.last_scan is None or self.last_scan.at < shared.since
            )
            if shared is not None and (shared.role == FOLLOWER or taking_over):
                # A follower serves what the leader published, and so does a new leader
                # until its first scan: healthy while it has that (mirrored, or built when
                # it led), degraded while it cannot reach the state to keep it current.
                ok = shared.mirrored or self.built
                state = "starting" if not ok else "ok" if shared.database == "ok" else "degraded"
            body: JsonObject = {
                "status": state,
                "version": __version__,
                "started": self.started,
                "last_scan": _json(self.last_scan),
                "last_build": _json(self.last_build),
                "last_links": _json(self.last_links),
                "last_error": self.last_error,
                "scans": self.scans,
                **(asdict(self.counts) if self.counts is not None else {}),
                "rejected_files": [asdict(item) for item in self.rejected_files],
            }
            if shared is not None:
                body["role"] = shared.role
                body["term"] = shared.term
                # Whether it has the site to serve: mirrored, or built while it led.
                body["cluster"] = {**asdict(shared), "usable": shared.mirrored or self.built}
        return (200 if ok else 503), body
