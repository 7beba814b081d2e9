"""The service's jobs run once, in this process, on a real app: what they return and
report, without a scheduler, an event loop or signals."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from aggregator.app import App, make_app
from aggregator.jobs import Jobs
from aggregator.metrics import Metrics
from aggregator.reporting import Reporter
from aggregator.status import ScanFailure, ScanStatus, Status, iso
from aggregator.websub import Announcer
from tests.conftest import NOW, Site


class Ran:
    """A job runner over `app`: its status, and a switch that asks the jobs to stop."""

    def __init__(self, app: App, clock: list[datetime]) -> None:
        self.status = Status()
        self.stop = False
        self.announcer = Announcer()
        self.jobs = Jobs(
            app,
            Reporter(self.status, Metrics()),
            self.announcer,
            lambda: self.stop,
            clock=lambda: clock[0],
        )


@pytest.fixture
def clock() -> list[datetime]:
    return [NOW]


@pytest.fixture
def ran(site: Site, clock: list[datetime]) -> Iterator[Ran]:
    site.add("ai.md", topics=["AI"], originalUrl="https://n.example/ai")
    with make_app(site.config(**{"links.enabled": False, "thumbnails.enabled": False})) as app:
        runner = Ran(app, clock)
        yield runner
        runner.announcer.close()


def test_a_rescan_returns_when_it_started_and_reports_what_it_did(
    ran: Ran, site: Site, clock: list[datetime]
) -> None:
    assert ran.jobs.rescan() == NOW
    assert (site.out / "feeds" / "ai.atom").is_file()
    first = ran.status.last_scan
    assert isinstance(first, ScanStatus) and first.parsed == 1 and ran.status.scans == 1
    assert ran.status.last_build is not None and ran.status.last_build.written > 0
    clock[0] = NOW + timedelta(minutes=1)
    site.add("space.md", topics=["Space"], originalUrl="https://n.example/space")
    assert ran.jobs.rescan({str(site.seeds / "space.md")}) == clock[0]
    assert (site.out / "feeds" / "space.atom").is_file()
    assert ran.status.counts is not None and ran.status.counts.topics == 2


def test_a_failed_rescan_returns_none_and_is_reported(ran: Ran, site: Site) -> None:
    assert ran.jobs.rescan() == NOW
    shutil.rmtree(site.seeds)
    assert ran.jobs.rescan() is None
    failed = ran.status.last_scan
    assert isinstance(failed, ScanFailure) and not failed.ok
    assert ran.status.last_error and ran.status.scans == 2
    assert ran.status.report()[0] == 503


def test_a_rescan_asked_to_stop_reports_nothing(ran: Ran, caplog: pytest.LogCaptureFixture) -> None:
    ran.stop = True
    with caplog.at_level(logging.INFO, logger="aggregator"):
        assert ran.jobs.rescan() is None
    assert "scan interrupted by shutdown" in caplog.text
    assert ran.status.last_scan is None and ran.status.scans == 0


def test_a_due_rescan_renders_every_feed_and_a_plain_one_nothing_unchanged(
    ran: Ran, clock: list[datetime]
) -> None:
    assert ran.jobs.rescan() == NOW
    clock[0] = due = NOW + timedelta(minutes=1)
    assert ran.jobs.rescan(due=True) == due
    assert ran.status.last_build is not None and ran.status.last_build.at == iso(due)
    clock[0] = NOW + timedelta(minutes=2)
    assert ran.jobs.rescan() == clock[0]
    assert ran.status.last_build.at == iso(due)  # nothing changed: nothing rendered


def test_network_jobs_that_are_off_do_nothing(ran: Ran) -> None:
    assert ran.jobs.rescan() == NOW
    ran.jobs.check_links()
    ran.jobs.fetch_thumbnails()
    assert ran.status.last_links is None
