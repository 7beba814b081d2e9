"""What each of the service's jobs does when it runs: call the app's use case, announce
the feeds it changed to the WebSub hub, and report what it did (log, /healthz,
metrics). A job's failure is reported, never raised.

When the jobs run, and that no two scans overlap, is the daemon's business
(aggregator.daemon); what changed, and what to render because of it, is the app's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aggregator import logs
from aggregator.app import App
from aggregator.errors import AggregatorError, Fenced, Interrupted, SeedDirError
from aggregator.reporting import Reporter
from aggregator.websub import Announcer

log = logging.getLogger("aggregator")


def utc_now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


class Jobs:
    """The service's jobs, run once per call on the caller's thread."""

    def __init__(
        self,
        app: App,
        reporter: Reporter,
        announcer: Announcer,
        should_stop: Callable[[], bool],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """`should_stop`: True once the service stops (a job then ends early); `clock`: the
        time a job starts at, and the time link checks and image fetches go by."""
        self.app = app
        self._reporter = reporter
        self._announcer = announcer
        self._should_stop = should_stop
        self._now = clock

    def rescan(self, paths: set[str] | None = None, due: bool = False) -> datetime | None:
        """One rescan (of everything, or of `paths`) and the rendering the app finds it
        calls for; `due`: a held-back article fell due, so every feed is rendered.

        Returns the time the scan started at when it succeeded; None when it failed
        (logged, and in /healthz: the app then renders every feed next time), was
        interrupted by a stop, or did not run (a follower on a shared state). Raises
        nothing but what is no `Exception`.
        """
        if not self.app.leading:
            return None  # a follower: the leader scans the shared state
        started = time.monotonic()
        now = self._now()
        stopping = self._should_stop
        try:
            if due:
                done = self.app.render_due(now, should_stop=stopping)
            else:
                done = self.app.rescan(now, paths, should_stop=stopping)
        except Interrupted:
            log.info("scan interrupted by shutdown")
            return None
        except Fenced as exc:  # another instance leads now: it scans, this one follows
            log.warning("scan stopped: %s", exc, extra=logs.fields(error=str(exc)))
            return None
        except AggregatorError as exc:
            if not self.app.leading:  # it lost the lead meanwhile (its session was ended)
                log.warning("scan stopped, no longer leading: %s", exc)
                return None
            self._failed(now, started, str(exc), isinstance(exc, SeedDirError))
            return None
        except Exception as exc:
            log.exception("scan failed")
            self._failed(now, started, f"{type(exc).__name__}: {exc}")
            return None
        if done.render is not None:
            self._announce(done.render.written)
        self._reporter.scan_succeeded(now, started, done, self.app.tally())
        return now

    def check_links(self) -> None:
        """Check the URLs that are due, when link checks are on (the app re-renders the
        feeds whose entries changed). Returns nothing; failures go to the log."""
        if self.app.config.links.enabled and self.app.leading:
            self._network_run("link check", self._check_links)

    def fetch_thumbnails(self) -> None:
        """Fetch the images pages want thumbnails of, when thumbnails are on (the app
        re-renders those pages). Returns nothing; failures go to the log."""
        if self.app.config.thumbnails.enabled and self.app.leading:
            self._network_run("thumbnails", self._fetch_thumbnails)

    def _check_links(self) -> None:
        started = time.monotonic()
        run = self.app.check_links(self._now(), should_stop=self._should_stop, clock=self._now)
        if not run.requested:
            return
        self._announce(run.written)
        self._reporter.links_checked(run, started)

    def _fetch_thumbnails(self) -> None:
        started = time.monotonic()
        stop = self._should_stop
        report = self.app.fetch_thumbnails(self._now(), should_stop=stop, clock=self._now)
        if not report.tried:
            return
        self._announce(report.written)
        self._reporter.thumbnails_made(report, started)

    def _network_run(self, what: str, run: Callable[[], None]) -> None:
        """Run one job that goes out to other hosts; failures go to the log as `what`."""
        try:
            run()
        except Interrupted:
            return
        except Fenced as exc:
            log.warning("%s stopped: %s", what, exc, extra=logs.fields(job=what, error=str(exc)))
        except AggregatorError as exc:
            log.error("%s failed: %s", what, exc, extra=logs.fields(job=what, error=str(exc)))
        except Exception:
            log.exception("%s failed", what)

    def _announce(self, written: list[str]) -> None:
        """Tell the WebSub hub about every feed whose bytes changed (in the background)."""
        config = self.app.config
        self._announcer.announce(config.websub, config.site.base_url, written)

    def _failed(self, now: datetime, started: float, error: str, seed_dir: bool = False) -> None:
        interval = self.app.config.scan.interval
        self._reporter.scan_failed(now, started, error, seed_dir, interval, self.app.has_output)
