"""The composition root: one `App` per config, owning the state, the output and the use cases.

    make_app(config) ─┬─ StateStore (aggregator.store)   Output (aggregator.output)
                      ├─ Ingest        seeds → state           (aggregator.ingest)
                      ├─ Publisher     state → output files    (aggregator.publish)
                      ├─ LinkJob       link checks             (aggregator.linkjob)
                      └─ ThumbnailJob  thumbnails              (aggregator.thumbjob)

The command line and the service call the use cases here (`build`, `rescan`,
`render_due`, `check_links`, `fetch_thumbnails`) and nothing below them. Besides the
wiring, the app decides one thing: when to render every feed rather than the ones a
change touched (at start-up, after a reload or a failure, when output files went
missing, when topic names moved, and always with `feeds.max_age_days`), and whether a
build that changed nothing may keep the last build's output as it is (`aggregator.lastbuild`).

Use cases may be called from several threads: each holds the app's lock while it
touches the state or the output, and releases it while it waits on other hosts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING

import msgspec

from aggregator.config import Config, LinksConfig, config_json
from aggregator.errors import Interrupted
from aggregator.feeds import FeedKey
from aggregator.ingest import Ingest, Progress, ScanReport, StopCheck, Workers, never
from aggregator.lastbuild import SETTING, LastBuild, code_fingerprint, current, render_key
from aggregator.linkjob import LinkJob, LinkReport, paused
from aggregator.links import Attempt, LinkState, Request, RunResult
from aggregator.output import Output, OutputDir, RenderReport
from aggregator.plan import to_micros
from aggregator.published import PublishedOutput
from aggregator.reloading import advertises_loopback
from aggregator.store import StateStore, open_store, worker_access
from aggregator.store.shared import NO_TERM, SharedStore

if TYPE_CHECKING:  # imported where first used: a build that renders nothing needs none
    from concurrent.futures import ProcessPoolExecutor

    from aggregator.publish import Publisher
    from aggregator.status import Counts
    from aggregator.thumbjob import ThumbnailJob, ThumbnailReport

TOPICS = "published_topics"
"""Under this name a shared state records how many topics the leader's last render gave a feed."""
SITE_URL = "site.public_url"
"""Under this name a shared state records the site URL its first leader advertised."""

Clock = Callable[[], datetime]
"""The time it is now (the service's jobs read it again after a long network run)."""


@dataclass
class BuildReport:
    """What one build read, wrote and rejected."""

    scan: ScanReport
    render: RenderReport
    articles: int
    topics: int
    rejected: list[tuple[str, str]]
    """Every seed whose current content is rejected (this build or an earlier one)."""
    duplicates: list[tuple[str, str]]
    """(seed, seed whose copy of the same article is used instead)."""


@dataclass
class RescanReport:
    """What one rescan found and what it rendered because of it."""

    scan: ScanReport
    render: RenderReport | None
    """None: nothing called for a render."""
    reconfigured: bool = False
    """A config given to `reconfigure` took effect at the start of this rescan."""
    output_missing: bool = False
    """Files the last render wrote had gone missing: everything was rendered again."""


@dataclass
class LinkRun:
    """One link check: what was asked, what the checker saw, what it changed."""

    requested: int
    """URLs asked for (0: nothing was due, or the run was stopped before it began)."""
    result: RunResult
    report: LinkReport
    at: datetime
    """When the result was applied."""
    written: list[str] = field(default_factory=list)
    """Files rendered again because entries changed, when their bytes changed."""


@dataclass(frozen=True)
class Tally:
    """What the state holds and the last render published."""

    seeds: int
    articles: int
    topics: int
    """Topics with a feed after the last render (`all` aside)."""
    rejected: list[tuple[str, str]]
    """Every rejected seed file, by path, with the reason."""

    def counts(self) -> Counts:
        """Returns the counts /healthz shows."""
        from aggregator.status import Counts

        return Counts(self.seeds, self.articles, self.topics, len(self.rejected))


def make_app(config: Config, store: StateStore | None = None, *, leading: bool = True) -> App:
    """Returns an `App` on the configured seed and output directories and state (or on
    `store`, any `StateStore`: the app then owns it and closes it).

    `leading` False (a shared state only): the app starts as a follower, which writes
    nothing until `lead()`. Raises `StateError` when the state cannot be opened or
    prepared, `OutputError` when the output directory cannot be created."""
    return App(config, store, leading=leading)


class App:
    """The aggregator on one config: use it as a context manager, or `close()` it.

    On a shared state (`SharedStore`: PostgreSQL), several instances run one app each:
    the leader's renders publish every file in the state as well (`PublishedOutput`), and
    its writes are fenced with its term; a follower's app writes nothing (the service
    mirrors the published files instead, aggregator.cluster)."""

    def __init__(
        self, config: Config, store: StateStore | None = None, *, leading: bool = True
    ) -> None:
        """Raises as `make_app` does."""
        self._config = config
        self.store = open_store(config.state.location) if store is None else store
        try:
            self.local = OutputDir(config.output.dir, config.output.gzip_sidecars)
            self.shared: SharedStore | None = (
                self.store if isinstance(self.store, SharedStore) else None
            )
            self.out: Output = self.local
            if self.shared is not None:
                self.out = PublishedOutput(self.local, self.shared.documents)
                self.shared.fence(None if leading else NO_TERM)
            self._access = worker_access(self.store)
            self.ingest = Ingest(config, self.store, self._access)
            self.links = LinkJob(config, self.store)
            self._last_build: LastBuild | None = None
            """What the last build rendered, when nothing wrote the state since."""
            self._recorded = False
            """This app recorded `_last_build` in the state (a later write drops it)."""
            if leading:
                self._last_build = self._forget_last_build()
                self.ingest.prepare()
        except BaseException:
            self.store.close()
            raise
        self.leading = leading
        """Whether this app writes (always, but for a follower on a shared state)."""
        self._lock = threading.RLock()
        self._pending: Config | None = None
        self._pending_lock = threading.Lock()
        self._render_all = True
        """Render every feed at the next rescan: at start-up, after a reload or a failure."""
        self._scanned = False
        """A rescan was attempted."""
        self._built = False
        """A rescan rendered (until then, the jobs leave rendering to the next rescan)."""

    @cached_property
    def publisher(self) -> Publisher:
        """The render use case (made on first use: a build that keeps its output renders
        nothing, and needs neither it nor the renderers it imports)."""
        from aggregator.publish import Publisher

        return Publisher(self._config, self.store, self.out, self._access)

    @cached_property
    def thumbnails(self) -> ThumbnailJob:
        """The thumbnail job (made on first use, as `publisher` is)."""
        from aggregator.thumbjob import ThumbnailJob

        return ThumbnailJob(self._config, self.store, self.out)

    def __enter__(self) -> App:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the state file."""
        self.store.close()

    @property
    def config(self) -> Config:
        """The config in effect (a `reconfigure` takes effect at the next rescan)."""
        return self._config

    # -- leadership of a shared state ---------------------------------------------------

    def lead(self, term: int) -> str | None:
        """Become the writer of the shared state, elected with `term`: fence every write
        with it, and render every feed at the next rescan.

        Returns the site URL adopted from the shared state when `site.public_url` is not
        set (see `_adopt`), None when the config's own is used. Raises `StateError`."""
        assert self.shared is not None
        with self._lock:
            self.shared.fence(term)
            if isinstance(self.out, PublishedOutput):
                self.out.forget()
            self._last_build = None
            self._forget_last_build()
            self.ingest.prepare()
            self._render_all = True
            self._scanned = self._built = False
            self.leading = True
            base = self._pending or self._config
            adopted = self._adopt(base)
            if adopted is base:
                return None
            self.reconfigure(adopted)
            return adopted.site.base_url

    def _adopt(self, config: Config) -> Config:
        """`config`, or on a shared state whose instances do not set `site.public_url`, a
        copy advertising the address the first leader recorded: every leader must write
        the same bytes, or a handover would change every feed. Raises `StateError`."""
        if self.shared is None or not advertises_loopback(config):
            return config
        site = self.store.settings.setdefault(SITE_URL, config.site.base_url)
        if site == config.site.public_url:
            return config
        return msgspec.structs.replace(
            config, site=msgspec.structs.replace(config.site, public_url=site)
        )

    def follow(self) -> None:
        """Stop writing the shared state at once (another instance leads): a write in
        progress on another thread fails with `Fenced` rather than commit."""
        assert self.shared is not None
        self.shared.fence(NO_TERM)
        self.leading = False
        self._render_all = True

    def quiet(self) -> AbstractContextManager[object]:
        """A block in which no use case touches the state or the output (the app's lock)."""
        return self._lock

    # -- configuration ------------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """Use `config` from the start of the next rescan on; that rescan renders every feed.

        The caller checks first that `config` changes nothing only a restart can."""
        with self._pending_lock:
            self._pending = config

    def _apply_pending(self, now: datetime) -> bool:
        with self._pending_lock:
            config, self._pending = self._pending, None
        if config is None:
            return False
        config = self._adopt(config)
        self._config = config
        self.ingest.reconfigure(config, now)
        self.publisher.reconfigure(config)
        self.links.reconfigure(config)
        self.thumbnails.reconfigure(config)
        self._render_all = True
        return True

    # -- scan and render ----------------------------------------------------------------

    def build(self, now: datetime, progress: Progress | None = None) -> BuildReport:
        """Bring the output directory up to date once: scan, then render every feed (or,
        when the scan changed nothing and the last build's output is current, nothing:
        see `aggregator.lastbuild`).

        Returns what was read, written and rejected. Raises `SeedDirError`, `OutputError`
        or `StateError` when a directory or the state file is unusable; the output
        directory is then left as it was."""
        with self._lock:
            self._render_all = True
            last = self._last_build
            self._writing()  # until this build records again

            def keep(scanned: ScanReport) -> bool:
                """Whether the last build's output is what a render would write now."""
                if scanned.parsed or scanned.removed or scanned.entries_changed:
                    return False
                key = self._render_key()
                return (
                    last is not None
                    and key is not None
                    and self.ingest.complete
                    and current(last, key, to_micros(now), self.local.fingerprint())
                )

            # A cold build's workers parse, then decide the refresh and render, when they
            # can read the state (else the scan's own workers end with the parse).
            workers = None
            if self._access is not None:
                workers = Workers(self.config.build.workers, preload=("aggregator.publish",))
            try:
                done = self._rescan(
                    now, None, never, progress, keep if last is not None else None, workers
                )
            finally:
                if workers is not None:
                    workers.close()
            if done.render is None:  # kept: this process knows nothing of the output
                assert last is not None
                self._render_all = True
                render, topics = RenderReport(unchanged=last.files), last.topics
                self._record_build(last)
            else:
                render, topics = done.render, self.publisher.topic_count
                key = self._render_key()
                if key is not None and self.ingest.complete:
                    due = self.next_due(now)
                    self._record_build(
                        LastBuild(
                            key,
                            None if due is None else to_micros(due),
                            self.local.fingerprint(),
                            len(render.written) + render.unchanged,
                            topics,
                        )
                    )
            return BuildReport(
                scan=done.scan,
                render=render,
                articles=self.store.counts().entries,
                topics=topics,
                rejected=sorted(self.store.seeds.rejected() + self.ingest.refused),
                duplicates=list(self.store.seeds.duplicates()),
            )

    def _render_key(self) -> str | None:
        """The `lastbuild.render_key` of this app's config and code; None when a build
        keeps no record: on a shared state, or with `feeds.max_age_days` (entries age out
        of the feeds with time alone), or when the package's files cannot be listed."""
        code = code_fingerprint()
        if self.shared is not None or self.config.feeds.max_age_days or code is None:
            return None
        return render_key(config_json(self.config), code)

    def _forget_last_build(self) -> LastBuild | None:
        """Drop the record of the last build (this app is about to write the state);
        returns it. Raises `StateError`."""
        settings = self.store.settings
        text = settings.recorded(SETTING)
        if text:
            settings.settings_changed(SETTING, "")
        return LastBuild.from_text(text)

    def _record_build(self, record: LastBuild) -> None:
        """Record what this build rendered, for the next one. Raises `StateError`."""
        self.store.settings.settings_changed(SETTING, record.to_text())
        self._last_build, self._recorded = record, True

    def _writing(self) -> None:
        """A use case is about to write the state: the last build's record no longer holds
        (dropped from the state if this app recorded it). Raises `StateError`."""
        self._last_build = None
        if self._recorded:
            self._recorded = False
            self.store.settings.settings_changed(SETTING, "")

    def rescan(
        self, now: datetime, paths: Iterable[str] | None = None, should_stop: StopCheck = never
    ) -> RescanReport:
        """Scan the seed directory (or just `paths`, from file-system events) and render
        what the scan calls for: the feeds whose entries changed, or every feed.

        Returns what was scanned and rendered. Raises `Interrupted` when `should_stop`
        turns true, `SeedDirError`, `OutputError` or `StateError` when a directory or the
        state file is unusable (the next rescan then renders every feed)."""
        with self._lock:
            self._writing()
            return self._rescan(now, paths, should_stop, None)

    def render_due(self, now: datetime, should_stop: StopCheck = never) -> RescanReport:
        """A rescan that renders every feed: a held-back (future-dated) article fell due, or
        a day closed and its digests are due, which no seed change shows. Returns and
        raises as `rescan` does."""
        with self._lock:
            self._writing()
            self._render_all = True
            return self._rescan(now, None, should_stop, None)

    def _rescan(
        self,
        now: datetime,
        paths: Iterable[str] | None,
        should_stop: StopCheck,
        progress: Progress | None,
        keep: Callable[[ScanReport], bool] | None = None,
        workers: Workers | None = None,
    ) -> RescanReport:
        """Scan, then render what the scan calls for; `keep` (a build) is asked first
        whether the output may stay as it is (the report's `render` is then None). The
        worker processes a cold scan starts in `workers` render too."""
        reconfigured = self._apply_pending(now)
        self._scanned = True
        try:
            if paths is None:
                scanned = self.ingest.scan(now, progress, should_stop, workers)
            else:
                scanned = self.ingest.scan_paths(paths, now, should_stop)
            if keep is not None and keep(scanned):
                return RescanReport(scanned, None, reconfigured)
            if (scanned.parsed or scanned.removed) and not scanned.entries_changed:
                scanned.names_changed = self.publisher.names_moved()
            missing = not self._render_all and not self.publisher.output_intact()
            if missing:
                self._render_all = True
            rendered = None
            if (
                self._render_all
                or scanned.entries_changed
                or scanned.names_changed
                or self.config.feeds.max_age_days
            ):
                changed = None if self._render_all else scanned.feeds
                pool = None
                if workers is not None:
                    if self.publisher.renders_in_workers():
                        pool = workers.pool
                    else:  # done with: not kept idle through the render
                        workers.close()
                rendered = self._render(now, changed, should_stop, pool)
                self._render_all = False
        except Interrupted:
            raise
        except BaseException:
            self._render_all = True
            raise
        return RescanReport(scanned, rendered, reconfigured, missing)

    def _render(
        self,
        now: datetime,
        changed: set[FeedKey] | None,
        stop: StopCheck,
        pool: ProcessPoolExecutor | None = None,
    ) -> RenderReport:
        if self.shared is None:
            complete = self.ingest.complete
            rendered = self.publisher.render(now, changed, stop, complete, pool)
        else:
            # One transaction: followers see a render's files all at once, and a leader
            # that lost its term publishes none of them, nor writes them here.
            assert isinstance(self.out, PublishedOutput)
            with self.out.publishing(self.store.transaction):
                rendered = self.publisher.render(now, changed, stop, complete=self.ingest.complete)
                # What followers' /healthz shows as the topics with a feed.
                self.store.settings.settings_changed(TOPICS, str(self.publisher.topic_count))
        self._built = True
        return rendered

    def _render_changed(
        self, now: datetime, changed: set[FeedKey], should_stop: StopCheck
    ) -> list[str]:
        """Render the feeds a job changed; returns the files written. Before the first
        successful rescan of a running app, the next rescan renders them instead."""
        if self._scanned and not self._built:
            return []
        try:
            return self._render(now, changed, should_stop).written
        except BaseException:
            self._render_all = True  # what the job changed is in no file yet
            raise

    # -- jobs that go out to other hosts ------------------------------------------------

    def check_links(
        self,
        now: datetime,
        everything: bool = False,
        limit: int | None = None,
        progress: Callable[[Attempt], None] | None = None,
        should_stop: StopCheck = never,
        clock: Clock | None = None,
    ) -> LinkRun:
        """Check the URLs that are due (or all), keep the verdicts, and render the feeds
        whose entries changed.

        `clock`: read again after the network run (default: `now` stays). Returns what
        was asked, seen and changed. Raises `Interrupted` when `should_stop` turns true
        while rendering, `OutputError` or `StateError` when the output directory or the
        state file is unusable."""
        budget = limit or self.config.links.budget
        fetched = self._fetch(
            lambda: self.links.plan(now, budget, everything),
            lambda: self.links.settings,
            now,
            should_stop,
            progress,
        )
        if fetched is None:
            return LinkRun(0, RunResult(), LinkReport([], 0, False, set(), 0), now)
        requests, result = fetched
        with self._lock:
            now = clock() if clock is not None else now
            self._writing()
            report = self.links.apply(result, now)
            run = LinkRun(len(requests), result, report, now)
            if report.entries_changed:
                run.written = self._render_changed(now, report.feeds, should_stop)
            return run

    def fetch_thumbnails(
        self, now: datetime, should_stop: StopCheck = never, clock: Clock | None = None
    ) -> ThumbnailReport:
        """Fetch the images the pages show without a thumbnail (read from the state, so no
        render is needed first), keep the thumbnails, and render the pages that gained
        some.

        Returns what was made and what failed. Raises as `check_links` does."""
        fetched = self._fetch(
            lambda: self.thumbnails.plan(now, self.config.thumbnails.budget),
            lambda: self.thumbnails.settings,
            now,
            should_stop,
        )
        if fetched is None:
            from aggregator.thumbjob import ThumbnailReport

            return ThumbnailReport()
        requests, result = fetched
        with self._lock:
            now = clock() if clock is not None else now
            self._writing()
            report = self.thumbnails.apply(result, now)
            report.tried = len(requests)
            if report.made:
                report.written = self._render_changed(now, report.feeds, should_stop)
            return report

    def _fetch(
        self,
        plan: Callable[[], list[Request]],
        settings: Callable[[], LinksConfig],
        now: datetime,
        should_stop: StopCheck,
        progress: Callable[[Attempt], None] | None = None,
    ) -> tuple[list[Request], RunResult] | None:
        """Plan requests under the app's lock, then run them without it (other hosts are
        slow; rescans go on meanwhile), with the pauses hosts asked for. Returns the
        requests and what came of them; None when nothing was due or a stop came first."""
        from aggregator.checker import run_checks, user_agent

        with self._lock:
            config = self.config
            requests = plan()
            pauses = paused(self.store, now)
            rules = settings()
        if not requests or should_stop():
            return None
        agent = user_agent(config.links, config.site.base_url)
        result = run_checks(
            rules, agent, requests, progress=progress, should_stop=should_stop, pauses=pauses
        )
        return requests, result

    # -- what the app knows -------------------------------------------------------------

    def next_due(self, now: datetime) -> datetime | None:
        """Returns when the feeds must next be rendered though no seed changes (None: no
        such time): when the earliest article held back for its future date falls due, or,
        with `digests.enabled`, when today closes and its digests are due."""
        from aggregator.digests import next_close
        from aggregator.plan import FeedFilter, falls_due

        with self._lock:
            flt = FeedFilter.of(self.config.feeds, now)
            due = falls_due(self.store.entries.earliest_held_back(flt))
            digests = self.config.digests
            if digests.enabled:
                close = next_close(now, digests.zone)
                due = close if due is None else min(due, close)
            return due

    def tally(self) -> Tally:
        """Returns the seeds, articles, topics and rejected files. Raises `StateError`."""
        with self._lock:
            counts = self.store.counts()
            refused = self.ingest.refused
            rejected = (
                sorted(self.store.seeds.rejected() + refused) if counts.rejected or refused else []
            )
            topics = self.publisher.topic_count
            if not self.leading:  # a follower renders nothing: the leader's last render
                topics = int(self.store.settings.recorded(TOPICS) or 0)
            return Tally(counts.seeds, counts.entries, topics, rejected)

    @staticmethod
    def stored_link(config: Config, url: str) -> LinkState | None:
        """Returns what the state file of `config` holds about one URL (None: nothing).

        Only reads: it prepares nothing and creates no output directory, so it works
        beside a running service. Raises `StateError` when the state file is unusable."""
        store = open_store(config.state.location)
        try:
            return store.links.link_states([url]).get(url)
        finally:
            store.close()

    def has_output(self) -> bool:
        """Returns whether the output directory holds a site from an earlier build."""
        with self._lock:
            return self.publisher.has_output()

    def output_intact(self) -> bool:
        """Returns whether every file the last render wrote is still there."""
        with self._lock:
            return self.publisher.output_intact()
