"""/healthz of an instance on a shared state: what a load balancer's health check sees in
each role (pure: `Status.report` from typed records, no database needed)."""

from __future__ import annotations

import pytest

from aggregator.status import FOLLOWER, LEADER, ClusterStatus, ScanFailure, ScanStatus, Status

EARLIER, TAKEOVER, LATER = (
    "2026-11-30T05:00:00+00:00",
    "2026-11-30T05:10:00+00:00",
    ("2026-11-30T05:10:05+00:00"),
)


def shared(role: str, mirrored: bool, database: str = "ok") -> ClusterStatus:
    return ClusterStatus(
        role=role,
        term=3,
        leader="feeds-1:8080 pid 7",
        behind=0,
        lag_seconds=0.0,
        synced=TAKEOVER if mirrored else None,
        database=database,
        since=TAKEOVER,
        mirrored=mirrored,
    )


def scan(at: str) -> ScanStatus:
    return ScanStatus(at=at, ok=True, seconds=0.1, files=1, parsed=1, removed=0, problems=[])


@pytest.mark.parametrize(
    ("role", "mirrored", "database", "last_scan", "built", "expected"),
    [
        # A follower: healthy once it holds the published site, degraded without the state.
        (FOLLOWER, False, "ok", None, False, (503, "starting")),
        (FOLLOWER, True, "ok", None, False, (200, "ok")),
        (FOLLOWER, True, "server closed the connection", None, False, (200, "degraded")),
        # A former leader keeps the site it built, even if it never mirrored.
        (FOLLOWER, False, "server closed the connection", scan(EARLIER), True, (200, "degraded")),
        # A new leader serves the site it mirrored while its first scan runs ...
        (LEADER, True, "ok", None, False, (200, "ok")),
        (LEADER, True, "ok", scan(EARLIER), True, (200, "ok")),
        # ... but a lone first instance has nothing to serve before it scanned.
        (LEADER, False, "ok", None, False, (503, "starting")),
        # Once it scanned in its term, its scans decide, as for a single instance.
        (LEADER, True, "ok", scan(LATER), True, (200, "ok")),
        (
            LEADER,
            True,
            "ok",
            ScanFailure(at=LATER, ok=False, seconds=0.1, error="seeds: gone"),
            True,
            (503, "error"),
        ),
    ],
)
def test_what_each_role_answers(
    role: str,
    mirrored: bool,
    database: str,
    last_scan: ScanStatus | ScanFailure | None,
    built: bool,
    expected: tuple[int, str],
) -> None:
    record = shared(role, mirrored, database)
    status = Status(last_scan=last_scan, built=built, cluster=lambda: record)
    code, body = status.report()
    assert (code, body["status"]) == expected
    assert body["role"] == role and body["term"] == 3
    assert isinstance(body["cluster"], dict) and body["cluster"]["since"] == TAKEOVER


def test_a_single_instance_reports_no_role() -> None:
    code, body = Status(last_scan=scan(LATER), built=True).report()
    assert code == 200 and "role" not in body and "cluster" not in body
