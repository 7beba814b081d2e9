"""`aggregator run`: the service. It schedules the jobs and handles signals.

    main thread (uvloop)        signals; the HTTP server (aggregator.server)
    scheduler thread (APS 3.x)  the rescan job: scan → store → render → write
    network thread (APS 3.x)    link checks and image fetches, one at a time
    watcher thread (optional)   file-system events ask for a rescan now (aggregator.watch)

The scheduler only ticks; what a job does (call the app's use case, announce, report)
is aggregator.jobs, and what changed, and what to render because of it, is the app's
business (aggregator.app). What a new config means (what a reload refuses, which jobs
it schedules again) is decided in aggregator.reloading. Signals are handled here and
nowhere else:

    SIGTERM, SIGINT   stop taking work, let the write in progress finish, exit 0
    SIGHUP            reload the config; an invalid one is reported and the old kept
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from aggregator import locks, logs, loops, reporting
from aggregator.app import App, make_app
from aggregator.cluster import Cluster, instance_name
from aggregator.config import Config
from aggregator.errors import ConfigError
from aggregator.jobs import Jobs
from aggregator.metrics import Metrics
from aggregator.reloading import (
    LINKS,
    NETWORK_JOBS,
    RESCAN,
    THUMBNAILS,
    pending_restart,
    periodic_jobs,
    rescheduled,
    restart_only_changes,
)
from aggregator.reporting import Reporter
from aggregator.server import Serving, start_server
from aggregator.status import Status
from aggregator.websub import Announcer, hub_link

if TYPE_CHECKING:
    from aggregator.watch import Watcher

log = logging.getLogger("aggregator")
DUE = "due"
"""The one-off job that renders the feeds when a held-back (future-dated) article falls due,
or a day closes and its digests are due (see `App.next_due`)."""
NETWORK = "network"
"""The executor of the jobs that go out to other hosts."""
STOP_TIMEOUT = 8.0
"""Seconds a shutdown waits for the job in progress (SIGTERM must end within 10 s)."""

ConfigLoader = Callable[[], Config]


class Service:
    """The running service. `run()` blocks until SIGTERM/SIGINT (or `request_stop()`)."""

    def __init__(self, config: Config, load_config: ConfigLoader) -> None:
        """`config`: the config to start with; `load_config` reads it again (SIGHUP).

        Raises `InUseError` when another process writes the state file or output
        directory, `StateError` or `OutputError` when they are unusable."""
        self._load_config = load_config
        self.status = Status()
        self.metrics = Metrics()
        self.reporter = Reporter(self.status, self.metrics)
        self._stopping = threading.Event()
        self._work = threading.Lock()
        """Held by whichever scan runs: the rescan job or the watcher; never both."""
        self._scheduler: BackgroundScheduler | None = None
        self._serving: Serving | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._announcer = Announcer(self._stopping.is_set)
        self._watcher: Watcher | None = None
        self._reloading = threading.Lock()
        # One writer per state file and output directory, for the life of the process.
        self._locks = locks.hold(config.state.lock_file, config.output.dir)
        try:
            self.app: App = make_app(config, leading=not config.state.shared)
        except BaseException:
            self._release_locks()
            raise
        self.jobs = Jobs(self.app, self.reporter, self._announcer, self._stopping.is_set)
        self.cluster: Cluster | None = None
        if self.app.shared is not None:  # several instances may share this state
            self.cluster = Cluster(
                self.app.shared,
                self.app.local,
                config.cluster,
                instance_name(config.server.port if config.server.enabled else None),
                on_lead=self._lead,
                on_follow=self._follow,
                quiet=self.app.quiet,
                stopping=self._stopping,
                on_synced=self._synced,
            )
            self.status.cluster = self.cluster.status
            self.metrics.follow_cluster(self.cluster.status)

    @property
    def config(self) -> Config:
        """The config in effect (the app's)."""
        return self.app.config

    # -- lifecycle -------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; 0 after a clean stop, 1 when the server could not start."""
        try:
            # uvloop: the server answers with about a fifth less CPU (docs/benchmarks.md,
            # "Served feeds beside nginx"); it takes its connections itself
            # (`HttpServer._accept`), not libuv.
            with asyncio.Runner(loop_factory=loops.new_event_loop) as runner:
                code = runner.run(self._main())
        finally:
            self.app.close()
            self._release_locks()
        log.info("stopped")
        return code

    def _release_locks(self) -> None:
        for lock in reversed(self._locks):
            lock.release()

    async def _main(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if self._stopping.is_set():  # asked to stop before the loop ran
            self._stop_event.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self.request_stop)
        self._loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)
        config = self.config
        reporting.service_starting(config)
        if config.server.enabled:
            self._serving = await start_server(
                config.server,
                self.app.local.root,
                self.status.report,
                self.metrics,
                lambda: self.config.cache_max_age,
                lambda: hub_link(self.config.websub, self.config.site.base_url),
            )
            if self._serving is None:  # it could not listen; start_server logged why
                return 1
            self.app.local.on_change(self._serving.files.changed)
        self._scheduler = self._start_scheduler()
        if self.cluster is not None:
            self.cluster.start()
        if config.scan.watch:
            self._start_watcher()
        serving = self._serving.task if self._serving is not None else None
        stopped = asyncio.create_task(self._stop_event.wait())
        waiting: set[asyncio.Task[Any]] = {stopped} | ({serving} if serving else set())
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if serving is not None and serving in done and not self._stopping.is_set():
            log.error("the HTTP server stopped unexpectedly")
            code = 1
        self._stopping.set()
        await self._shutdown()
        return code

    def request_stop(self) -> None:
        """SIGTERM/SIGINT (or a test): stop taking work; the write in progress finishes."""
        if not self._stopping.is_set():
            log.info("stopping: finishing the write in progress")
        self._stopping.set()
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)

    async def _shutdown(self) -> None:
        scheduler = self._scheduler
        if scheduler is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(scheduler.shutdown, True), STOP_TIMEOUT)
            except TimeoutError:
                # Every write is atomic and the state file rolls back an open
                # transaction, so leaving the job behind loses nothing.
                log.warning("the job in progress did not finish in %gs; exiting", STOP_TIMEOUT)
                for handler in logging.getLogger().handlers:
                    handler.flush()
                os._exit(0)
        if self.cluster is not None:  # another instance may lead at once
            await asyncio.to_thread(self.cluster.stop)
        if self._serving is not None:
            await self._serving.stop()
        self._announcer.close()

    # -- configuration -----------------------------------------------------------

    def _reload_in_background(self) -> None:
        """SIGHUP: reload on a thread of its own. Reading the config file (a FIFO, a file
        on a hung network mount) must never hold up the event loop, which serves."""
        threading.Thread(target=self.request_reload, name="config-reload", daemon=True).start()

    def request_reload(self) -> None:
        """Read the config again; apply it at the start of the next scan.

        An invalid (or empty) file, or one that changes what only a restart can,
        is refused whole: the error is logged and the running config kept.
        """
        with self._reloading:
            try:
                self._reload()
            except Exception:  # on a thread of its own: nobody else would see it
                log.exception("config reload failed, keeping the running config")

    def _reload(self) -> None:
        try:
            config = self._load_config()
        except ConfigError as exc:
            reporting.reload_failed(exc)
            return
        old = self.config
        fixed = restart_only_changes(old, config)
        if fixed:
            reporting.reload_refused(fixed)
            return
        logs.configure(config.logging.format, config.logging.level)
        reporting.restart_pending(pending_restart(old, config))
        self.app.reconfigure(config)  # in effect from the start of the next scan
        if self._scheduler is not None:
            for job, every in rescheduled(old, config).items():
                self._scheduler.reschedule_job(
                    job, trigger="interval", seconds=every.seconds, jitter=every.jitter
                )
        log.info("config reloaded")
        self.rescan_now()

    # -- jobs ----------------------------------------------------------------------

    def _start_scheduler(self) -> BackgroundScheduler:
        scan = self.config.scan
        scheduler = BackgroundScheduler(
            # Rescans have a thread of their own: a long run of link checks or image
            # fetches (slow hosts, a dead resolver) must not hold up new seeds. The
            # network jobs share the other, so they never run side by side.
            executors={"default": ThreadPoolExecutor(1), NETWORK: ThreadPoolExecutor(1)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(30, int(scan.interval)),
            },
            timezone=UTC,
        )
        every = periodic_jobs(self.config)
        scheduler.add_job(
            self._rescan_job,
            "interval",
            id=RESCAN,
            seconds=every[RESCAN].seconds,
            jitter=every[RESCAN].jitter,
            next_run_time=datetime.now(UTC),  # the first scan and build happen at start-up
        )
        # Added whether on or not: a job that is off returns at once, and a reload
        # can turn it on.
        network = {LINKS: self.jobs.check_links, THUMBNAILS: self.jobs.fetch_thumbnails}
        for delay, job in enumerate(NETWORK_JOBS, 2):
            scheduler.add_job(
                network[job],
                "interval",
                id=job,
                executor=NETWORK,
                seconds=every[job].seconds,
                jitter=every[job].jitter,
                next_run_time=datetime.now(UTC) + timedelta(seconds=delay),
            )
        self._scheduler = scheduler  # the first scan schedules the next due article on it
        scheduler.start()
        return scheduler

    def _lead(self, term: int) -> None:
        """Elected leader of the shared state: write from now on, beginning with a rescan
        that renders every feed. Raises `StateError` (the election then gives way)."""
        adopted = self.app.lead(term)
        if adopted is not None:
            reporting.site_url_adopted(adopted)
        self.rescan_now()

    def _follow(self) -> None:
        """No longer the leader: stop writing at once; what this instance's scans reported
        is history now (the leader's are what count)."""
        self.app.follow()
        self.reporter.following()

    def _synced(self) -> None:
        """A follower's catch-up brought files: show what the state holds now."""
        if not self.app.leading:
            self.reporter.counted(self.app.tally())

    def rescan_now(self) -> None:
        """Ask for a full rescan as soon as possible (after the one running, if any)."""
        if self._scheduler is not None and not self._stopping.is_set():
            self._scheduler.modify_job(RESCAN, next_run_time=datetime.now(UTC))

    def _rescan_job(self, paths: set[str] | None = None, due: bool = False) -> None:
        """`scan_once` unless the service stops, never beside another scan: what the
        rescan and due jobs and file-system events run."""
        with self._work:
            if not self._stopping.is_set():
                self.scan_once(paths, due)

    def scan_once(self, paths: set[str] | None = None, due: bool = False) -> None:
        """One rescan (see `Jobs.rescan`); after a success, the next due article is
        scheduled. Failures go to the log and /healthz."""
        before = self.app.config
        try:
            now = self.jobs.rescan(paths, due)
        finally:
            if self.app.config is not before and self._serving is not None:
                self._serving.files.reconfigured()  # Cache-Control follows the new interval
        if now is not None:
            self._schedule_due(now)

    def _schedule_due(self, now: datetime) -> None:
        """Render the feeds when the earliest future-dated article falls due, or the next
        digest is (see `App.next_due`): no seed changes then, so no scan would otherwise
        notice."""
        if self._scheduler is None or self._stopping.is_set():
            return
        due = self.app.next_due(now)
        if due is None:
            with contextlib.suppress(JobLookupError):  # none scheduled, or it just ran
                self._scheduler.remove_job(DUE)
            return
        self._scheduler.add_job(
            self._rescan_job,
            "date",
            id=DUE,
            run_date=due,
            kwargs={"due": True},
            replace_existing=True,
        )

    # -- file-system events ------------------------------------------------------------

    def _start_watcher(self) -> None:
        from aggregator.watch import Watcher  # watchfiles only where the config asks for it

        self._watcher = Watcher(
            lambda: self.config.seeds.dir,
            self._rescan_job,  # the paths events name, as they come; None: walk everything
            self._stopping,
            lambda: self.config.scan.interval,
        )
        self._watcher.start()
