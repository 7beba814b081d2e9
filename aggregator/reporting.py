"""What the service reports: its start, and each job's log lines, /healthz records and
metrics.

The daemon's jobs call the app's use cases and hand what they return here; nothing
here decides or changes anything but the log, the `Status` and the `Metrics`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from aggregator import __version__, logs
from aggregator.app import LinkRun, RescanReport, Tally
from aggregator.config import Config, server_url
from aggregator.errors import ConfigError
from aggregator.metrics import Metrics
from aggregator.reloading import advertises_loopback
from aggregator.status import (
    MAX_HEALTH_REJECTED,
    BuildStatus,
    LinkStatus,
    RejectedFile,
    ScanFailure,
    ScanStatus,
    Status,
    iso,
)
from aggregator.text import printable
from aggregator.thumbjob import ThumbnailReport
from aggregator.urls import hide_password

log = logging.getLogger("aggregator")


def _shown_state(config: Config) -> str:
    """The state file, or the database URL without its password."""
    return str(config.state.path) if config.state.url is None else hide_password(config.state.url)


def service_starting(config: Config) -> None:
    """Log what the service starts with, and a warning when the feeds will advertise an
    address other machines cannot reach, or (on a shared state) each leader its own address.
    Returns nothing; raises nothing."""
    log.info(
        "starting aggregator %s: seeds %s, output %s, state %s, rescan every %gs%s",
        __version__,
        config.seeds.dir,
        config.output.dir,
        _shown_state(config),
        config.scan.interval,
        " and on file changes" if config.scan.watch else "",
        extra=logs.fields(
            version=__version__,
            seeds=str(config.seeds.dir),
            output=str(config.output.dir),
            state=_shown_state(config),
            interval=config.scan.interval,
            watch=config.scan.watch,
        ),
    )
    if config.state.shared and config.site.public_url == server_url(
        config.server.host, config.server.port
    ):
        log.warning(
            "site.public_url is not set while instances share the state at %s: every "
            "instance serves the leader's feeds, pages and OPML, which advertise the "
            "leader's own server address (%s here, which other machines may not reach); set "
            "site.public_url to the one address readers use, the same on every instance",
            hide_password(config.state.url or ""),
            config.site.base_url,
        )
    elif advertises_loopback(config):
        log.warning(
            "site.public_url is not set: feeds, pages and the OPML advertise %s (the "
            "built-in server's loopback address, which other machines cannot reach) "
            "until it is set to the address readers use",
            config.site.base_url,
        )


def site_url_adopted(url: str) -> None:
    """Log that a leader advertises the site URL recorded in the shared state."""
    log.warning(
        "site.public_url is not set: advertising %s, as the first instance on this shared "
        "state did, so that every instance serves the same bytes; set site.public_url to "
        "the address readers use",
        url,
        extra=logs.fields(public_url=url),
    )


def reload_failed(error: ConfigError) -> None:
    """Log that the config file read again is invalid, so the running config stays."""
    log.error(
        "config reload failed, keeping the running config: %s",
        error,
        extra=logs.fields(error=str(error), problems=list(error.problems)),
    )


def reload_refused(restart_only: list[str]) -> None:
    """Log that a reload is refused because the settings in `restart_only` changed."""
    log.error(
        "config reload refused, keeping the running config: %s changed, which only "
        "takes effect when the service restarts (restart it to apply the new config)",
        ", ".join(restart_only),
    )


def restart_pending(settings: list[str]) -> None:
    """Warn of each setting in `settings`: a reload took it, but it changes nothing
    before the service restarts."""
    for key in settings:
        log.warning("%s changed: it takes effect when the service restarts", key)


class Reporter:
    """Writes what each job did to the log, the health status and the metrics."""

    def __init__(self, status: Status, metrics: Metrics) -> None:
        self.status = status
        self.metrics = metrics

    def counted(self, tally: Tally) -> None:
        """What the state holds now (after a scan, or a follower's catch-up): /healthz's
        counts and rejected files, and the gauges."""
        m = self.metrics
        m.seeds.set(tally.seeds)
        m.seeds_rejected.set(len(tally.rejected))
        m.articles.set(tally.articles)
        m.topics.set(tally.topics)
        with self.status.lock:
            self.status.counts = tally.counts()
            self.status.rejected_files = [
                RejectedFile(printable(source), reason)
                for source, reason in tally.rejected[:MAX_HEALTH_REJECTED]
            ]

    def following(self) -> None:
        """This instance follows another now: its own scans' last error no longer applies."""
        with self.status.lock:
            self.status.last_error = None

    def scan_succeeded(
        self, now: datetime, started: float, done: RescanReport, tally: Tally
    ) -> None:
        """A rescan that began at `now` (`started`: its monotonic clock) succeeded: log its
        rejected files, warnings and problems, then its summary; record it and `tally`."""
        self._log_scan(done)
        took = time.monotonic() - started
        scanned, rendered = done.scan, done.render
        m = self.metrics
        m.scans.labels("ok").inc()
        m.scan_seconds.observe(took)
        self.counted(tally)
        with self.status.lock:
            self.status.scans += 1
            self.status.built = True
            self.status.last_scan = ScanStatus(
                at=iso(now),
                ok=True,
                seconds=round(took, 3),
                files=scanned.files,
                parsed=scanned.parsed,
                removed=scanned.removed,
                problems=scanned.problems,
            )
            if rendered is not None:
                m.files_written.inc(len(rendered.written))
                self.status.last_build = BuildStatus(
                    at=iso(now),
                    written=len(rendered.written),
                    unchanged=rendered.unchanged,
                    removed=len(rendered.removed),
                )
        if scanned.parsed or scanned.removed or (rendered and rendered.written):
            written = len(rendered.written) if rendered else 0
            log.info(
                "scan: %d files, %d read, %d gone; %d files written in %.2fs",
                scanned.files,
                scanned.parsed,
                scanned.removed,
                written,
                took,
                extra=logs.fields(
                    files=scanned.files,
                    parsed=scanned.parsed,
                    removed=scanned.removed,
                    written=written,
                    rejected=len(scanned.rejected),
                    seconds=round(took, 3),
                ),
            )

    def scan_failed(
        self,
        now: datetime,
        started: float,
        error: str,
        seed_dir: bool,
        interval: float,
        has_output: Callable[[], bool],
    ) -> None:
        """A rescan failed with `error` (`seed_dir`: the seed directory is unusable): log
        what is served meanwhile and when it is tried again (`interval`); record it."""
        if self.status.last_build is not None or has_output():
            consequence = "the last good feeds are still served"
        else:
            consequence = "nothing is served yet"
        every = f"tried again every {interval:g}s"
        if seed_dir:
            todo = (
                "Create the seed directory, or point seeds.dir (--seeds, AGGREGATOR_SEEDS__DIR) "
                f"at it; it is {every}"
            )
        else:
            todo = f"It is {every}"
        log.error(
            "scan failed: %s; %s. %s.",
            error,
            consequence,
            todo,
            extra=logs.fields(error=error, served=consequence.startswith("the last")),
        )
        self.metrics.scans.labels("error").inc()
        with self.status.lock:
            self.status.scans += 1
            self.status.last_scan = ScanFailure(
                at=iso(now), ok=False, seconds=round(time.monotonic() - started, 3), error=error
            )
            self.status.last_error = error

    def _log_scan(self, done: RescanReport) -> None:
        scanned = done.scan
        for source, reason in scanned.rejected:
            name = printable(source)
            log.warning(
                "%s: rejected: %s", name, reason, extra=logs.fields(file=name, reason=reason)
            )
        for source, warning in scanned.warnings:
            name = printable(source)
            log.warning("%s: %s", name, warning, extra=logs.fields(file=name, warning=warning))
        for problem in scanned.problems:
            log.error(
                "seed directory: %s (its seeds are kept as they were)",
                problem,
                extra=logs.fields(problem=problem),
            )
        if done.output_missing:
            log.warning("files of the output directory went missing: writing them again")

    def links_checked(self, run: LinkRun, started: float) -> None:
        """A link check ran (`started`: its monotonic clock): log and record the verdicts."""
        report, result, now = run.report, run.result, run.at
        for state in report.states:
            self.metrics.links_checked.labels(state.status.value).inc()
        counts: dict[str, int] = {}
        for state in report.states:
            counts[state.status.value] = counts.get(state.status.value, 0) + 1
        took = time.monotonic() - started
        log.info(
            "link check: %d URLs in %.1fs (%s)%s; %d changed what feeds show",
            len(result.attempts),
            took,
            ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
            "; network looks down, nothing declared dead" if report.network_down else "",
            report.changed,
            extra=logs.fields(
                checked=len(result.attempts),
                deferred=len(result.deferred),
                verdicts=counts,
                network_down=report.network_down,
                changed=report.changed,
                seconds=round(took, 3),
            ),
        )
        with self.status.lock:
            self.status.last_links = LinkStatus(
                at=iso(now),
                checked=len(result.attempts),
                deferred=len(result.deferred),
                verdicts=counts,
                network_down=report.network_down,
                changed=report.changed,
            )

    def thumbnails_made(self, report: ThumbnailReport, started: float) -> None:
        """A thumbnail run ended (`started`: its monotonic clock): log what failed and made."""
        for url, why in report.failed:
            log.info("thumbnail: %s: %s", url, why, extra=logs.fields(url=url, reason=why))
        took = time.monotonic() - started
        log.info(
            "thumbnails: %d made, %d failed, in %.1fs",
            report.made,
            len(report.failed),
            took,
            extra=logs.fields(made=report.made, failed=len(report.failed), seconds=round(took, 3)),
        )
