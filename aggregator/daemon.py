"""`aggregator run`: the service. The composition root of the daemon.

    main thread (asyncio)       the HTTP server (aggregator.server); signals
    scheduler thread (APS 3.x)  the rescan job: scan → store → render → write
    watcher thread (optional)   file-system events ask for a rescan now

The scheduler only ticks and the jobs only call the app's use cases
(aggregator.app): what changed, and what to render because of it, is the app's
business. Signals are handled here and nowhere else:

    SIGTERM, SIGINT   stop taking work, let the write in progress finish, exit 0
    SIGHUP            reload the config; an invalid one is reported and the old kept
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from aggregator import __version__, locks, logs
from aggregator.app import App, make_app
from aggregator.config import Config, server_url
from aggregator.errors import AggregatorError, ConfigError, Interrupted, SeedDirError
from aggregator.formats import is_feed
from aggregator.metrics import Metrics
from aggregator.reporting import Reporter
from aggregator.server import (
    HttpServer,
    Limits,
    Routes,
    StaticFiles,
    connection_capacity,
    raise_open_file_limit,
)
from aggregator.status import (
    Status,
)
from aggregator.urls import host_of

log = logging.getLogger("aggregator")
RESCAN = "rescan"
LINKS = "links"
THUMBNAILS = "thumbnails"
DUE = "due"
"""The one-off job that renders the feeds when a held-back (future-dated) article falls due."""
NETWORK = "network"
"""The executor of the jobs that go out to other hosts."""
STOP_TIMEOUT = 8.0
"""Seconds a shutdown waits for the job in progress (SIGTERM must end within 10 s)."""


def advertises_loopback(config: Config) -> bool:
    """True when the public URL is the built-in server's own loopback address, as it is
    when `site.public_url` is not set and the server listens on loopback or everywhere."""
    url = config.site.public_url
    if url != server_url(config.server.host, config.server.port):
        return False
    host = host_of(url)
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The settings that differ between `old` and `new` and that a reload cannot change.

    Moving the seeds, output or state would make the service take every seed for
    gone (or write a second output beside the one served, holding no lock on it),
    and a new public URL rewrites every self link: those need a restart.
    """
    pairs: list[tuple[str, object, object]] = [
        ("seeds.dir", old.seeds.dir.resolve(), new.seeds.dir.resolve()),
        ("output.dir", old.output.dir.resolve(), new.output.dir.resolve()),
        ("state.path", old.state.path.resolve(), new.state.path.resolve()),
        ("site.public_url", old.site.public_url, new.site.public_url),
        ("server.host", old.server.host, new.server.host),
        ("server.port", old.server.port, new.server.port),
    ]
    return [key for key, before, after in pairs if before != after]


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
        self._server: HttpServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._files: StaticFiles | None = None
        self._pinger = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="websub")
        self._watcher: threading.Thread | None = None
        self._reloading = threading.Lock()
        # One writer per state file and output directory, for the life of the process.
        self._locks = locks.hold(config.state.path, config.output.dir)
        try:
            self.app: App = make_app(config)
        except BaseException:
            self._release_locks()
            raise

    @property
    def config(self) -> Config:
        """The config in effect (the app's)."""
        return self.app.config

    # -- lifecycle -------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; 0 after a clean stop, 1 when the server could not start."""
        try:
            code = asyncio.run(self._main())
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
        log.info(
            "starting aggregator %s: seeds %s, output %s, state %s, rescan every %gs%s",
            __version__,
            config.seeds.dir,
            config.output.dir,
            config.state.path,
            config.scan.interval,
            " and on file changes" if config.scan.watch else "",
            extra=logs.fields(
                version=__version__,
                seeds=str(config.seeds.dir),
                output=str(config.output.dir),
                state=str(config.state.path),
                interval=config.scan.interval,
                watch=config.scan.watch,
            ),
        )
        if advertises_loopback(config):
            log.warning(
                "site.public_url is not set: feeds, pages and the OPML advertise %s (the "
                "built-in server's loopback address, which other machines cannot reach) "
                "until it is set to the address readers use",
                config.site.base_url,
            )
        serving: asyncio.Task[bool] | None = None
        if config.server.enabled:
            root = self.app.out.root
            self._files = StaticFiles(root, lambda: self.config.cache_max_age, self._hub)
            routes = Routes(self._files, self.status.report, self.metrics)
            before, open_files = raise_open_file_limit()
            capacity = connection_capacity(open_files, config.server.max_connections)
            limits = Limits(
                header_timeout=config.server.header_timeout,
                keepalive_timeout=config.server.keepalive_timeout,
                max_header_bytes=config.server.max_header_bytes,
                max_connections=capacity,
            )
            self._server = HttpServer(routes, config.server.host, config.server.port, limits)
            serving = asyncio.create_task(self._serve())
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.01)
            if serving.done():  # it could not listen; `_serve` logged why
                return 1
            log.info(
                "serving %s at http://%s:%d/",
                root,
                config.server.host,
                config.server.port,
                extra=logs.fields(
                    output=str(root), host=config.server.host, port=config.server.port
                ),
            )
            log.info(
                "open-file limit %d%s: up to %d client connections at once",
                open_files,
                f" (raised from {before})" if open_files > before else "",
                capacity,
            )
            if (config.server.max_connections or 0) > capacity:
                log.warning("server.max_connections is more than the open-file limit allows")
        self._scheduler = self._start_scheduler()
        if config.scan.watch:
            self._start_watcher()
        stopped = asyncio.create_task(self._stop_event.wait())
        waiting: set[asyncio.Task[Any]] = {stopped} | ({serving} if serving else set())
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if serving is not None and serving in done and not self._stopping.is_set():
            log.error("the HTTP server stopped unexpectedly")
            code = 1
        self._stopping.set()
        await self._shutdown(serving)
        return code

    async def _serve(self) -> bool:
        """Run the HTTP server; False when it could not start (the address is in use, say)."""
        assert self._server is not None
        try:
            await self._server.serve()
        except OSError as exc:
            config = self.config.server
            log.error("cannot listen on %s:%d: %s", config.host, config.port, exc.strerror or exc)
            return False
        return True

    def _hub(self) -> tuple[str, str] | None:
        hub = self.config.websub.hub
        return (hub, self.config.site.base_url) if hub else None

    def _announce(self, written: list[str]) -> None:
        """Tell the WebSub hub about every feed whose bytes changed (in the background)."""
        hub = self.config.websub.hub
        feeds = [p for p in written if is_feed(p)]
        if not hub or not feeds:
            return
        from aggregator.websub import publish

        urls = [self.config.site.base_url + path for path in feeds]
        self._pinger.submit(publish, hub, urls, self.config.websub.retries, self._stopping.is_set)

    def request_stop(self) -> None:
        """SIGTERM/SIGINT (or a test): stop taking work; the write in progress finishes."""
        if not self._stopping.is_set():
            log.info("stopping: finishing the write in progress")
        self._stopping.set()
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)

    async def _shutdown(self, serving: asyncio.Task[bool] | None) -> None:
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
        if self._server is not None and serving is not None:
            self._server.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(serving, 2.0)
        self._pinger.shutdown(wait=False, cancel_futures=True)

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
            log.error(
                "config reload failed, keeping the running config: %s",
                exc,
                extra=logs.fields(error=str(exc), problems=list(exc.problems)),
            )
            return
        old = self.config
        fixed = restart_only_changes(old, config)
        if fixed:
            log.error(
                "config reload refused, keeping the running config: %s changed, which only "
                "takes effect when the service restarts (restart it to apply the new config)",
                ", ".join(fixed),
            )
            return
        logs.configure(config.logging.format, config.logging.level)
        for key, new_value, old_value in (
            ("server.enabled", config.server.enabled, old.server.enabled),
            ("scan.watch", config.scan.watch, old.scan.watch),
        ):
            if new_value != old_value:
                log.warning("%s changed: it takes effect when the service restarts", key)
        self.app.reconfigure(config)  # in effect from the start of the next scan
        if self._scheduler is not None and config.scan != old.scan:
            self._scheduler.reschedule_job(
                RESCAN, trigger="interval", seconds=config.scan.interval, jitter=config.scan.jitter
            )
        if self._scheduler is not None:
            before = {job: seconds for job, _, seconds in self._network_jobs(old)}
            for job, _, seconds in self._network_jobs(config):
                if seconds != before[job]:
                    jitter = min(30.0, seconds / 10)
                    self._scheduler.reschedule_job(
                        job, trigger="interval", seconds=seconds, jitter=jitter
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
        scheduler.add_job(
            self._rescan_job,
            "interval",
            id=RESCAN,
            seconds=scan.interval,
            jitter=scan.jitter,
            next_run_time=datetime.now(UTC),  # the first scan and build happen at start-up
        )
        # Added whether on or not: a job that is off returns at once, and a reload
        # can turn it on.
        for delay, (job, function, seconds) in enumerate(self._network_jobs(self.config), 2):
            scheduler.add_job(
                function,
                "interval",
                id=job,
                executor=NETWORK,
                seconds=seconds,
                jitter=min(30.0, seconds / 10),
                next_run_time=datetime.now(UTC) + timedelta(seconds=delay),
            )
        self._scheduler = scheduler  # the first scan schedules the next due article on it
        scheduler.start()
        return scheduler

    def _network_jobs(self, config: Config) -> list[tuple[str, Callable[[], None], float]]:
        """(id, function, interval) of each job that goes out to other hosts."""
        return [
            (LINKS, self._links_job, config.links.interval),
            (THUMBNAILS, self._thumbnails_job, config.thumbnails.interval),
        ]

    def rescan_now(self) -> None:
        """Ask for a full rescan as soon as possible (after the one running, if any)."""
        if self._scheduler is not None and not self._stopping.is_set():
            self._scheduler.modify_job(RESCAN, next_run_time=datetime.now(UTC))

    def _rescan_job(self) -> None:
        with self._work:
            if not self._stopping.is_set():
                self.scan_once()

    def _network_run(self, what: str, run: Callable[[], None]) -> None:
        """Run one job that goes out to other hosts; failures go to the log as `what`."""
        try:
            run()
        except Interrupted:
            return
        except AggregatorError as exc:
            log.error("%s failed: %s", what, exc, extra=logs.fields(job=what, error=str(exc)))
        except Exception:
            log.exception("%s failed", what)

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _thumbnails_job(self) -> None:
        """Fetch the images pages want thumbnails of (the app re-renders those pages)."""
        if self.config.thumbnails.enabled:
            self._network_run("thumbnails", self._fetch_thumbnails)

    def _fetch_thumbnails(self) -> None:
        started = time.monotonic()
        stop = self._stopping.is_set
        report = self.app.fetch_thumbnails(self._now(), should_stop=stop, clock=self._now)
        if not report.tried:
            return
        self._announce(report.written)
        self.reporter.thumbnails_made(report, started)

    def _links_job(self) -> None:
        """Check the URLs that are due (the app re-renders the feeds whose entries changed)."""
        if self.config.links.enabled:
            self._network_run("link check", self._check_links)

    def _check_links(self) -> None:
        started = time.monotonic()
        stop = self._stopping.is_set
        run = self.app.check_links(self._now(), should_stop=stop, clock=self._now)
        if not run.requested:
            return
        self._announce(run.written)
        self.reporter.links_checked(run, started)

    def scan_once(self, paths: set[str] | None = None, due: bool = False) -> None:
        """One rescan (of everything, or of `paths`) and the rendering the app finds it
        calls for; `due`: a held-back article fell due, so every feed is rendered.

        Failures go to the log and /healthz; the app then renders every feed next time.
        """
        started = time.monotonic()
        now = self._now()
        stopping = self._stopping.is_set
        before = self.app.config
        try:
            if due:
                done = self.app.render_due(now, should_stop=stopping)
            else:
                done = self.app.rescan(now, paths, should_stop=stopping)
        except Interrupted:
            log.info("scan interrupted by shutdown")
            return
        except AggregatorError as exc:
            self._failed(now, started, str(exc), isinstance(exc, SeedDirError))
            return
        except Exception as exc:
            log.exception("scan failed")
            self._failed(now, started, f"{type(exc).__name__}: {exc}")
            return
        finally:
            if self.app.config is not before and self._files is not None:
                self._files.reconfigured()  # Cache-Control follows the new interval
        if done.render is not None:
            self._announce(done.render.written)
        self.reporter.scan_succeeded(now, started, done, self.app.tally())
        self._schedule_due(now)

    def _schedule_due(self, now: datetime) -> None:
        """Render the feeds when the earliest future-dated article falls due: no seed
        changes then, so no scan would otherwise notice."""
        if self._scheduler is None or self._stopping.is_set():
            return
        due = self.app.next_due(now)
        if due is None:
            with contextlib.suppress(JobLookupError):  # none scheduled, or it just ran
                self._scheduler.remove_job(DUE)
            return
        self._scheduler.add_job(self._due_job, "date", id=DUE, run_date=due, replace_existing=True)

    def _due_job(self) -> None:
        with self._work:
            if not self._stopping.is_set():
                self.scan_once(due=True)

    def _failed(self, now: datetime, started: float, error: str, seed_dir: bool = False) -> None:
        interval = self.config.scan.interval
        self.reporter.scan_failed(now, started, error, seed_dir, interval, self.app.has_output)

    # -- file-system events ------------------------------------------------------------

    def _start_watcher(self) -> None:
        self._watcher = threading.Thread(target=self._watch, name="seed-watcher", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        """Scan the paths file-system events name, as they come (the periodic rescan stays)."""
        from watchfiles import Change, watch

        while not self._stopping.is_set():
            directory = self.config.seeds.dir
            try:
                for changes in watch(
                    directory,
                    stop_event=self._stopping,
                    debounce=50,
                    step=10,
                    raise_interrupt=False,
                    ignore_permission_denied=True,
                ):
                    paths = {path for _, path in changes}
                    folder_event = any(
                        change != Change.modified and os.path.isdir(path)
                        for change, path in changes
                    )
                    with self._work:
                        if self._stopping.is_set():
                            return
                        # A folder moved in or out names no files: walk everything then.
                        self.scan_once(None if folder_event else paths)
            except (OSError, RuntimeError) as exc:
                log.warning("cannot watch %s (%s); rescanning every interval", directory, exc)
                self._stopping.wait(self.config.scan.interval)
