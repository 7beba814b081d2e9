"""The pipeline: seeds directory → state → feeds directory. Shared by `build` and the daemon.

    scan (stat only) → read + parse what changed (worker processes)
        → store (SQLite) → refresh entries and ledger → render affected feeds
        → write-if-changed

Work is proportional to change: a scan with nothing changed costs a
directory walk and a `stat` per file; one changed seed re-renders only the
topics it was and is in (and `all`, the index and the OPML). With
`feeds.archive`, rendering a topic also reads the date and `updated` of all
its entries, to tell which archive pages changed (only those are rendered).

Also here: what the link checker and the thumbnail fetcher should look at,
and what their results change.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.context
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from itertools import islice

from aggregator.archive import Key, Layout, Row, lay_out, newer, page_digest, reopen
from aggregator.config import Config, LinksConfig
from aggregator.errors import Interrupted, SeedDirError
from aggregator.formats import (
    ARCHIVE_SUFFIX,
    ATOM,
    FEED_FORMATS,
    FeedOptions,
    archive_folder,
    archive_path,
    feed_path,
    page_path,
    renderer,
)
from aggregator.links import (
    Attempt,
    LinkRules,
    LinkState,
    Outcome,
    Policy,
    Request,
    RunResult,
    advance,
    host_pauses,
    is_paused,
    network_down,
    pauses_left,
)
from aggregator.model import LoadedSeed
from aggregator.output import Output, OutputDir
from aggregator.pages import (
    ALL_OPML_PATH,
    INDEX_PATH,
    OPML_PATH,
    SITE_FILES,
    Thumbnail,
    render_all_opml,
    render_index,
    render_opml,
    render_topic_page,
)
from aggregator.parse import READING_RULES
from aggregator.plan import (
    Entry,
    FeedFilter,
    FeedPlan,
    FeedStamp,
    FeedSummary,
    falls_due,
    feed_stamp,
    topic_catalog,
)
from aggregator.render import (
    OLDEST,
    History,
    archive_bound,
    empty_page_date,
    render_atom,
)
from aggregator.scan import SeedFile, check_paths, scan
from aggregator.state import Store, StoredEntry
from aggregator.thumbs import (
    FOLDER,
    HEADER_BYTES,
    SUFFIX,
    ThumbnailError,
    make_thumbnail,
    retry_delay,
    thumbnail_path,
    webp_size,
)
from aggregator.topics import ALL_SLUG, Topic, TopicRules
from aggregator.worker import load_seed, watch_service

Progress = Callable[[int, int], None]
"""Called with (files read so far, files to read)."""

PARALLEL_THRESHOLD = 200
"""Below this many files to read, parsing in this process beats starting workers."""
MAX_FEED_BYTES = 400_000
"""A feed stays well under the 512 KB many readers stop at; extra entries give way."""
BATCH = 1000
"""Parsed seeds stored per transaction."""

StopCheck = Callable[[], bool]


def _never() -> bool:
    return False


@dataclass
class ScanReport:
    files: int = 0
    parsed: int = 0
    removed: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """Files rejected in this scan (each is reported once per change of the file)."""
    warnings: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Parts of the seed directory that could not be read; nothing there counts as deleted."""
    topics: set[str] = field(default_factory=set)
    entries_changed: int = 0
    names_changed: bool = False
    """A topic's display name moved (its seeds now spell it otherwise) though no entry
    changed: every page and the OPML name it, so everything is rendered again."""


@dataclass
class LinkReport:
    states: list[LinkState]
    """The state of every URL checked, after the check."""
    changed: int
    """URLs whose change feeds can see (confirmed dead, alive again, moved for good)."""
    network_down: bool
    topics: set[str]
    entries_changed: int


@dataclass
class RenderReport:
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)


@dataclass
class ThumbnailReport:
    made: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(image URL, why) of each image that gave no thumbnail."""
    topics: set[str | None] = field(default_factory=set)
    """Keys of the topics (None: `all`) whose pages can now show more thumbnails."""


def load_seeds(
    files: Sequence[SeedFile], max_bytes: int, workers: int, progress: Progress | None = None
) -> Iterator[LoadedSeed]:
    """`load_seed` for every file, in worker processes when there are many; results in order."""
    reader = partial(load_seed, max_bytes=max_bytes)
    workers = workers or os.cpu_count() or 1
    total = len(files)
    if workers == 1 or total < PARALLEL_THRESHOLD:
        yield from _counted(map(reader, files), total, progress)
        return
    chunk = max(1, min(256, total // (workers * 8)))
    _quiet_resource_tracker()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_worker_context(),
        initializer=watch_service,  # no worker outlives this process, even after kill -9
        initargs=(os.getpid(),),
    )
    try:
        yield from _counted(pool.map(reader, files, chunksize=chunk), total, progress)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


RESOURCE_TRACKER_QUIET = "ignore::UserWarning:multiprocessing.resource_tracker"
"""A warnings filter for multiprocessing's resource tracker (see `_quiet_resource_tracker`)."""


def _quiet_resource_tracker() -> None:
    """Keep multiprocessing's resource tracker from writing its warnings into the log.

    The tracker is a process of its own that shares the service's stderr. When the
    service is killed (`kill -9`, the OOM killer) during a parallel build, it removes the
    pool's semaphores, as it should, and says so in plain-text warnings that would break
    a JSON log. It takes its warning options from `sys.warnoptions` when it starts (as
    every interpreter multiprocessing starts does), so they are set before the first
    pool; the warnings of this process itself are not changed.
    """
    if RESOURCE_TRACKER_QUIET not in sys.warnoptions:
        sys.warnoptions.append(RESOURCE_TRACKER_QUIET)


def _worker_context() -> multiprocessing.context.BaseContext:
    """How to start parse workers.

    A lone thread (the `build` command) forks: cheapest. The service, which has
    threads and a large heap, starts workers from a fork server that imported
    only `aggregator.worker`, so they stay small and inherit no threads.
    """
    methods = multiprocessing.get_all_start_methods()
    if threading.active_count() == 1 and "fork" in methods:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["aggregator.worker", "aggregator.forkserver"])
        return context
    return multiprocessing.get_context("spawn")


def _counted(
    results: Iterator[LoadedSeed], total: int, progress: Progress | None
) -> Iterator[LoadedSeed]:
    for done, result in enumerate(results, 1):
        if progress is not None and (done % 100 == 0 or done == total):
            progress(done, total)
        yield result


class Pipeline:
    """Keeps the output directory in step with the seed directory, through the state store."""

    def __init__(self, config: Config, store: Store, out: Output) -> None:
        self.store = store
        self.out = out
        self.config = config
        self.rules = _rules(config)
        self.link_rules = _link_rules(config)
        self._catalog: dict[str, Topic] | None = None
        self._summaries: dict[str, FeedSummary] = {}
        self._wanted: dict[str, set[str | None]] = {}
        """Image URL → keys of the topics (None: `all`) whose pages would show its thumbnail."""
        self._shown_thumbs: set[str] = set()
        """Thumbnail files the pages rendered since the last full render use."""
        self._archive_pages: dict[str, int] = {}
        """Slug → how many archive pages it has, after the last render of its feed."""
        self._complete = True
        self._refused: set[tuple[str, str]] = set()
        store.reread_rejected_if_changed(_seed_settings(config))
        store.reread_all_if_changed("reading_rules", READING_RULES)
        if store.settings_changed("entry_rules", _entry_rules(config)):
            store.mark_all_dirty()  # topic or link rules changed: the next scan redoes entries
        self._known: dict[str, tuple[int, int]] | None = None
        """(size, mtime_ns) of every stored seed, as the store has them; None: ask the store."""

    def reconfigure(self, config: Config, now: datetime) -> None:
        """Use a new config; the next `render` redoes every feed."""
        self.rules, self.link_rules = _rules(config), _link_rules(config)
        if self.store.settings_changed("entry_rules", _entry_rules(config)):
            self.store.mark_all_dirty()
            self.store.refresh(self.rules, now, link_rules=self.link_rules)
        self.config = config
        self._catalog = None
        self._known = None
        self.store.reread_rejected_if_changed(_seed_settings(config))

    def scan(
        self, now: datetime, progress: Progress | None = None, should_stop: StopCheck = _never
    ) -> ScanReport:
        """Walk the seed directory, parse what changed, and bring the state up to date.

        Raises `SeedDirError` when the seed directory itself cannot be read;
        then nothing in the state changes. Raises `Interrupted` when
        `should_stop` turns true; the next scan picks up where this one stopped.
        """
        seeds = self.config.seeds
        found = scan(seeds.dir, seeds.extensions)
        self._complete = found.complete
        known = self._known_stats()
        if not found.files and not found.refused and known:
            # An unmounted volume or a wrong path looks just like this.
            raise SeedDirError(
                f"{seeds.dir}: no seed files any more (the state knows {len(known)}); "
                "the last feeds are kept. To start over on purpose, remove the state file."
            )
        gone: list[str] = []
        if found.complete:  # an unreadable folder must not look like deleted seeds
            present = {f.source for f in found.files}
            gone = [source for source in known if source not in present]
        report = ScanReport(files=len(found.files), problems=list(found.problems))
        fresh = [item for item in found.refused if item not in self._refused]
        report.rejected.extend(fresh)  # reported once, as long as the name stays
        self._refused = set(found.refused)
        return self._apply(found.files, gone, now, report, progress, should_stop)

    def scan_paths(
        self, paths: Iterable[str], now: datetime, should_stop: StopCheck = _never
    ) -> ScanReport:
        """Look at just these paths (from file-system events) and bring the state up to date."""
        seeds = self.config.seeds
        files, missing = check_paths(seeds.dir, paths, seeds.extensions)
        known = self._known_stats()
        gone = [source for source in missing if source in known]
        folders = [
            m + "/" for m in missing if m not in known and not m.rpartition("/")[2].startswith(".")
        ]
        if folders and any(source.startswith(tuple(folders)) for source in known):
            return self.scan(now, should_stop=should_stop)  # a folder of seeds went away
        report = ScanReport(
            files=len(known) + sum(f.source not in known for f in files) - len(gone)
        )
        return self._apply(files, gone, now, report, None, should_stop)

    def _known_stats(self) -> dict[str, tuple[int, int]]:
        if self._known is None:
            self._known = self.store.seed_stats()
        return self._known

    def _apply(
        self,
        files: Sequence[SeedFile],
        gone: Sequence[str],
        now: datetime,
        report: ScanReport,
        progress: Progress | None,
        should_stop: StopCheck,
    ) -> ScanReport:
        known = self._known_stats()
        self._known = None  # until this completes, the store is the truth
        changed = sorted(
            (f for f in files if known.get(f.source) != (f.size, f.mtime_ns)),
            key=lambda f: f.source,
        )
        if gone:
            self.store.forget_seeds(gone)
            for source in gone:
                known.pop(source, None)
        report.removed = len(gone)
        digests = self.store.digests([f.source for f in changed if f.source in known])
        seeds = self.config.seeds
        results = load_seeds(changed, seeds.max_file_bytes, self.config.build.workers, progress)
        touched: list[SeedFile] = []
        pairs = zip(changed, results, strict=True)
        while batch := list(islice(pairs, BATCH)):
            if should_stop():
                raise Interrupted
            fresh = []
            for file, result in batch:
                if result.digest and digests.get(file.source) == result.digest:
                    touched.append(file)  # same bytes, new mtime: nothing to parse again
                    continue
                fresh.append((file, result))
                report.warnings.extend((result.source, w) for w in result.warnings)
                if result.error is not None:
                    report.rejected.append((result.source, result.error))
            report.parsed += len(fresh)
            self.store.store_seeds(fresh)
            known.update((f.source, (f.size, f.mtime_ns)) for f, _ in batch)
        if touched:
            self.store.touch(touched)
        applied = self.store.refresh(self.rules, now, should_stop, self.link_rules)
        report.topics = applied.topics
        report.entries_changed = applied.entries_changed
        if (report.parsed or gone) and not applied.entries_changed and self._catalog is not None:
            slugs = self.store.topic_slugs()
            catalog = topic_catalog(self.store.spelling_counts(), self.rules, slugs)
            report.names_changed = catalog != self._catalog
        self._known = known
        return report

    def render(
        self, now: datetime, topics: set[str] | None = None, should_stop: StopCheck = _never
    ) -> RenderReport:
        """Re-render `all`, the given topics (None: every topic), the index and the OPML."""
        slugs = self.store.topic_slugs()
        catalog = topic_catalog(self.store.spelling_counts(), self.rules, slugs)
        new_slugs = {t.key: t.slug for t in catalog.values() if t.key not in slugs}
        if new_slugs:
            self.store.keep_topic_slugs(new_slugs)
        feeds = self.config.feeds
        if catalog != self._catalog or feeds.max_age_days:
            topics = None  # names or slugs moved, or entries age out: redo everything
        flt = FeedFilter.of(feeds, now)
        targets: list[Topic | None] = [None]
        targets += [t for t in catalog.values() if topics is None or t.key in topics]
        if topics is None:
            self._summaries = {}
            self._wanted = {}
            self._shown_thumbs = set()
            self._archive_pages = {}
        else:
            live = {t.slug for t in catalog.values()} | {ALL_SLUG}
            self._summaries = {s: v for s, v in self._summaries.items() if s in live}
        report = RenderReport()
        for topic in targets:
            if should_stop():
                self._catalog = None  # the next render starts over
                raise Interrupted
            summary = self._render_feed(topic, catalog, flt, report, now)
            slug = topic.slug if topic else ALL_SLUG
            if summary is None:
                self._summaries.pop(slug, None)
            else:
                self._summaries[slug] = summary
        self._catalog = catalog
        summaries = sorted(self._summaries.values(), key=lambda s: (s.topic is not None, s.slug))
        self._write(INDEX_PATH, render_index(summaries, self.config.site, feeds.formats), report)
        self._write(OPML_PATH, render_opml(summaries, self.config.site), report)
        self._write(ALL_OPML_PATH, render_all_opml(summaries, self.config.site), report)
        for relative, data in SITE_FILES.items():
            self._write(relative, data, report)
        if self._complete:
            for fmt, form in FEED_FORMATS.items():
                on = fmt in feeds.formats
                keep = {feed_path(slug, fmt) for slug in self._summaries} if on else set()
                report.removed += self.out.prune("feeds", form.suffix, keep)
            pages = {page_path(slug) for slug in self._summaries}
            report.removed += self.out.prune("topics", ".html", pages)
            if topics is None:  # every page was seen: thumbnails no page shows can go
                self.store.forget_thumbnails(self._shown_thumbs, self._wanted)
                self.store.forget_archives([None, *(t.key for t in catalog.values())])
                report.removed += self.out.prune(FOLDER, SUFFIX, self._shown_thumbs)
            for folder in self.out.folders("feeds"):  # archives of feeds that are gone
                if folder not in self._summaries or not feeds.archive:
                    report.removed += self.out.prune(archive_folder(folder), ARCHIVE_SUFFIX, set())
                    self.out.remove_empty(archive_folder(folder))
        return report

    def _render_feed(
        self,
        topic: Topic | None,
        catalog: Mapping[str, Topic],
        flt: FeedFilter,
        report: RenderReport,
        now: datetime,
    ) -> FeedSummary | None:
        """Write one feed in every format, its page and its archive; None: it has no entries."""
        feeds, site = self.config.feeds, self.config.site
        slug = topic.slug if topic else ALL_SLUG
        key = topic.key if topic else None
        rows: list[Row] = []
        bounds: list[Key] = []
        digests: list[str] = []
        if feeds.archive:
            rows = self.store.feed_rows(key, flt.any_age())
            bounds, digests = self.store.archive(key)
            if not bounds and not digests:  # no record (a new state file): read the pages
                bounds = self._bounds_on_disk(slug)
            bounds = reopen(rows, bounds, feeds.max_entries)
        newer_than = bounds[-1] if bounds else None
        stored, total = self.store.feed_page(key, flt, feeds.max_entries, newer_than)
        if topic is not None and total == 0:
            return None

        def entry(e: StoredEntry) -> Entry:
            shown = sorted((catalog[k] for k in e.topic_keys if k in catalog), key=lambda t: t.name)
            return Entry(e.id, e.article, tuple(shown), e.updated, e.link)

        plan = FeedPlan(slug, topic, tuple(entry(e) for e in stored), total)
        hub = self.config.websub.hub
        data = render_atom(plan, site, feeds.max_related, hub)
        page_size = feeds.max_entries
        while len(data) > MAX_FEED_BYTES and len(plan.entries) > 1:
            # Readers choke on huge feeds: keep fewer (oversized) entries instead, and
            # close archive pages at that size too (they would be as large).
            plan = FeedPlan(slug, topic, plan.entries[: len(plan.entries) * 3 // 4], total)
            page_size = len(plan.entries)
            data = render_atom(plan, site, feeds.max_related, hub)
        stamp = self._stamp(key, plan, now)
        if stamp.floor is not None:
            later = stamp.updated != plan.updated  # it lost its newest: dated by the loss
            plan = replace(plan, floor=stamp.floor)
            if later:
                data = render_atom(plan, site, feeds.max_related, hub)
        if feeds.archive:
            # What the current feed leaves out (or sheds for size) goes to the archive.
            layout = lay_out(rows, bounds, len(plan.entries), page_size)
            if layout.pages:
                history = History(prev=len(layout.pages))
                data = render_atom(plan, site, feeds.max_related, hub, history)
            self._write_archive(plan, catalog, layout, bounds, digests, entry, report)
        self._write(feed_path(slug), data, report)
        # The other formats carry the same entries, in the same order.
        ttl = max(1, self.config.cache_max_age // 60)
        options = FeedOptions(feeds.max_related, hub, ttl)
        for fmt in FEED_FORMATS:
            if fmt != ATOM and fmt in feeds.formats:
                self._write(feed_path(slug, fmt), renderer(fmt)(plan, site, options), report)
        thumbs = self._thumbnails(plan)
        page = render_topic_page(plan, site, feeds.formats, thumbs)
        self._write(page_path(slug), page, report)
        return plan.summary()

    def _stamp(self, key: str | None, plan: FeedPlan, now: datetime) -> FeedStamp:
        """The feed's stamp after this render: when it last lost an entry (kept in the state)."""
        previous = self.store.feed_stamp(key)
        stamp = feed_stamp(previous, (e.id for e in plan.entries), plan.updated, now)
        if stamp != previous:
            self.store.keep_feed_stamp(key, stamp)
        return stamp

    def _thumbnails(self, plan: FeedPlan) -> dict[str, Thumbnail]:
        """The local thumbnails a page can show, with their sizes read from the files; the
        images still missing one are noted."""
        if not self.config.thumbnails.enabled:
            return {}
        images = [e.article.images[0].url for e in plan.entries if e.article.images]
        width = self.config.thumbnails.width
        found = self.store.thumbnails(images)
        present: dict[str, Thumbnail] = {}
        for url, file in found.items():
            head = self.out.head(file, HEADER_BYTES) if file == thumbnail_path(url, width) else None
            size = webp_size(head) if head is not None else None
            if size is not None:
                present[url] = Thumbnail(file, *size)
        if len(present) < len(found):  # files deleted, or another width: fetch them again
            self.store.forget_thumbnails_of([url for url in found if url not in present])
        key = plan.topic.key if plan.topic else None
        for url in images:
            if url not in present:
                self._wanted.setdefault(url, set()).add(key)
        self._shown_thumbs.update(t.path for t in present.values())
        return present

    def _bounds_on_disk(self, slug: str) -> list[Key]:
        """Where the archive pages already written end, read back from them.

        With a new state file, pages laid out afresh could move entries between
        pages that readers and caches hold as closed; the pages themselves say
        where each one ends (its newest entry). A page with no entries ends
        where the one before it does, so the numbers stay."""
        bounds: list[Key] = []
        number = 1
        while True:
            path = archive_path(slug, number)
            if not (self.out.exists(path) and self.out.exists(archive_path(slug, number + 1))):
                return bounds  # the last page is the open one
            data = self.out.read(path)
            newest = archive_bound(data) if data is not None else None
            previous = bounds[-1] if bounds else OLDEST
            bounds.append(newest if newest is not None and newer(newest, previous) else previous)
            number += 1

    def _write_archive(
        self,
        plan: FeedPlan,
        catalog: Mapping[str, Topic],
        layout: Layout,
        bounds: Sequence[Key],
        digests: Sequence[str],
        entry: Callable[[StoredEntry], Entry],
        report: RenderReport,
    ) -> None:
        """Write the archive pages whose entries changed; remember where pages end."""
        site, slug = self.config.site, plan.slug
        context = json.dumps(
            [
                site.base_url,
                site.title,
                site.author,
                self.config.feeds.max_related,
                sorted((t.key, t.name, t.slug) for t in catalog.values()),
            ],
            ensure_ascii=False,
        )
        last = len(layout.pages)
        kept: list[str] = []
        for number, rows in enumerate(layout.pages, start=1):
            digest = page_digest(context, number, last, rows)
            kept.append(digest)
            path = archive_path(slug, number)
            same = number <= len(digests) and digests[number - 1] == digest
            if same and self.out.exists(path):
                report.unchanged += 1
                continue
            stored = self.store.entries([row.entry_id for row in rows])
            page = FeedPlan(slug, plan.topic, tuple(entry(e) for e in stored), len(stored))
            if not stored and number <= len(layout.bounds):  # a closed page emptied by removals
                page = replace(page, floor=empty_page_date(layout.bounds[number - 1]))
            history = History(
                number=number,
                prev=number - 1 if number > 1 else None,
                next=number + 1 if number < last else None,
            )
            data = render_atom(page, site, self.config.feeds.max_related, None, history)
            self._write(path, data, report)
        if list(layout.bounds) != list(bounds) or kept != list(digests):
            self.store.keep_archive(plan.topic.key if plan.topic else None, layout.bounds, kept)
        self._archive_pages[slug] = last
        # Pages past the last are stale (reopened, or laid out anew): the server must not
        # take the page before one of them for a closed page.
        keep = {archive_path(slug, n) for n in range(1, last + 1)}
        report.removed += self.out.prune(archive_folder(slug), ARCHIVE_SUFFIX, keep)

    # -- thumbnails ---------------------------------------------------------------------

    def thumbnail_requests(self, now: datetime, limit: int) -> list[Request]:
        """Images the pages want a thumbnail of, never tried first, then failed ones due again."""
        keep = self.config.thumbnails.max_bytes
        pauses = self._pauses()
        wanted = [url for url in self._wanted if not is_paused(url, pauses, now)]
        return [Request(url, keep=keep) for url in self.store.thumbnails_due(wanted, now, limit)]

    def _pauses(self) -> dict[str, datetime]:
        """Host → until when it asked to be left alone (kept in the state across runs)."""
        stored = json.loads(self.store.meta(PAUSES) or "{}")
        return {host: datetime.fromisoformat(until) for host, until in stored.items()}

    def paused(self, now: datetime) -> dict[str, float]:
        """Host name or server → seconds it still asked to be left alone: for the checker,
        which defers the URLs of every name leading to such a server."""
        return pauses_left(self._pauses(), now)

    def _note_pauses(self, result: RunResult, now: datetime) -> None:
        pauses = host_pauses(self._pauses(), result, now)
        self.store.keep_meta(PAUSES, json.dumps({h: t.isoformat() for h, t in pauses.items()}))

    def apply_thumbnails(self, result: RunResult, now: datetime) -> ThumbnailReport:
        """Make and keep thumbnails of what was fetched; note what failed, to try later."""
        report = ThumbnailReport()
        self._note_pauses(result, now)
        width = self.config.thumbnails.width
        failed: list[tuple[str, str]] = []
        for attempt in result.attempts:
            try:
                if attempt.body is None:
                    raise ThumbnailError(attempt.detail or f"HTTP {attempt.status}")
                data = make_thumbnail(attempt.body, width)
            except ThumbnailError as exc:
                failed.append((attempt.url, str(exc)))
                continue
            file = thumbnail_path(attempt.url, width)
            self.out.write(file, data)
            self.store.keep_thumbnail(attempt.url, file)
            report.made += 1
            report.topics.update(self._wanted.pop(attempt.url, set()))
        tries = self.store.thumbnail_tries([url for url, _ in failed])
        for url, why in failed:
            self.store.thumbnail_failed(url, why, tries[url] + 1, now + retry_delay(tries[url] + 1))
        report.failed = failed
        for url, seconds in result.deferred.items():  # the host asked for a pause
            later = now + max(timedelta(seconds=seconds), retry_delay(1))
            self.store.thumbnail_failed(url, "the host asked to wait", 0, later)
        return report

    # -- link checking ----------------------------------------------------------------

    def link_requests(self, now: datetime, limit: int, everything: bool = False) -> list[Request]:
        """What the link checker should look at now: new URLs first, then the most overdue."""
        pauses = self._pauses()
        urls = [
            url
            for url in self.store.due_links(now, limit, everything)
            if not is_paused(url, pauses, now)
        ]
        states = self.store.link_states(urls)
        first_confirms = self.config.links.dead_after <= 1
        requests = []
        for url in urls:
            state = states.get(url)
            if state is None:
                requests.append(Request(url, confirm=first_confirms))
                continue
            # A URL already failing is confirmed dead only on what a GET says.
            confirm = first_confirms or state.failures > 0 or state.status is Outcome.DEAD
            requests.append(Request(url, state.etag, state.last_modified, confirm=confirm))
        return requests

    def apply_link_results(self, result: RunResult, now: datetime) -> LinkReport:
        """Store what a checker run found; entries whose link changes are brought up to date."""
        links = self.config.links
        policy = Policy(
            recheck_hours=links.recheck_hours,
            dead_after=links.dead_after,
            dead_min_hours=links.dead_min_hours,
        )
        self._note_pauses(result, now)
        before = self.store.link_states([a.url for a in result.attempts])
        down = network_down(result.attempts)
        states = [advance(before.get(a.url), a, now, policy, down) for a in result.attempts]
        deferred = {url: now + timedelta(seconds=s) for url, s in result.deferred.items()}
        changed = self.store.save_link_states(states, deferred)
        applied = self.store.refresh(self.rules, now, link_rules=self.link_rules)
        self.store.forget_unused_links()
        return LinkReport(states, changed, down, applied.topics, applied.entries_changed)

    def next_due(self, now: datetime) -> datetime | None:
        """When the earliest article held back for its future date falls due (None: none is):
        the feeds must be rendered then, though no seed changes."""
        flt = FeedFilter.of(self.config.feeds, now)
        return falls_due(self.store.earliest_held_back(flt))

    def output_intact(self) -> bool:
        """Whether every file the last render wrote is still there (someone may delete them)."""
        formats = self.config.feeds.formats
        paths = [feed_path(s, f) for s in self._summaries for f in formats]
        paths += [page_path(s) for s in self._summaries]
        paths += [
            archive_path(s, n)
            for s, last in self._archive_pages.items()
            if s in self._summaries
            for n in range(1, last + 1)
        ]
        paths += sorted(self._shown_thumbs)
        paths += [INDEX_PATH, OPML_PATH, ALL_OPML_PATH, *SITE_FILES]
        return all(self.out.exists(p) for p in paths)

    def has_output(self) -> bool:
        """Whether the output directory holds a site from an earlier build (its index page)."""
        return self.out.exists(INDEX_PATH)

    @property
    def refused(self) -> list[tuple[str, str]]:
        """Seed files the last full scan could not take as named (not in the state)."""
        return sorted(self._refused)

    @property
    def topic_count(self) -> int:
        """Topics with a feed after the last render (`all` aside)."""
        return sum(1 for slug in self._summaries if slug != ALL_SLUG)

    def _write(self, relative: str, data: bytes, report: RenderReport) -> None:
        if self.out.write(relative, data):
            report.written.append(relative)
        else:
            report.unchanged += 1


def _seed_settings(config: Config) -> str:
    """The settings that decide whether a seed is rejected, as stored beside the seeds."""
    seeds = config.seeds
    return json.dumps([seeds.max_file_bytes, sorted(seeds.extensions)])


def _entry_rules(config: Config) -> str:
    """The settings every entry's topics and link depend on, as stored beside them."""
    topics, links = config.topics, config.links
    return json.dumps(
        [
            sorted((k, v) for k, v in topics.aliases.items()),
            sorted(topics.include),
            sorted(topics.exclude),
            links.on_dead,
            links.follow_permanent_redirects,
        ]
    )


def _link_rules(config: Config) -> LinkRules:
    links = config.links
    return LinkRules(links.on_dead, links.follow_permanent_redirects)


def _rules(config: Config) -> TopicRules:
    topics = config.topics
    return TopicRules.build(topics.aliases, topics.include, topics.exclude)


@dataclass
class BuildReport:
    scan: ScanReport
    render: RenderReport
    articles: int
    topics: int
    rejected: list[tuple[str, str]]
    """Every seed whose current content is rejected (this build or an earlier one)."""
    duplicates: list[tuple[str, str]]
    """(seed, seed whose copy of the same article is used instead)."""


@contextlib.contextmanager
def opened(config: Config) -> Iterator[Pipeline]:
    """A pipeline on the configured directories and state file, closed afterwards."""
    out = OutputDir(config.output.dir, config.output.gzip_sidecars)
    store = Store(config.state.path)
    try:
        yield Pipeline(config, store, out)
    finally:
        store.close()


def build(config: Config, now: datetime, progress: Progress | None = None) -> BuildReport:
    """Bring the output directory up to date once. The composition root of `aggregator build`.

    Raises `SeedDirError`, `OutputError` or `StateError` when a directory or the
    state file is unusable; the output directory is then left as it was.
    """
    with opened(config) as pipeline:
        store = pipeline.store
        scanned = pipeline.scan(now, progress)
        rendered = pipeline.render(now)
        return BuildReport(
            scan=scanned,
            render=rendered,
            articles=store.counts().entries,
            topics=pipeline.topic_count,
            rejected=sorted(store.rejected() + pipeline.refused),
            duplicates=store.duplicates(),
        )


def check_links(
    config: Config,
    now: datetime,
    everything: bool = False,
    limit: int | None = None,
    progress: Callable[[Attempt], None] | None = None,
) -> tuple[RunResult, LinkReport]:
    """Check the articles' URLs once and update the feeds. The composition root of
    `aggregator links check`."""
    from aggregator.checker import run_checks, user_agent

    with opened(config) as pipeline:
        pipeline.scan(now)
        requests = pipeline.link_requests(now, limit or config.links.budget, everything)
        agent = user_agent(config.links, config.site.base_url)
        paused = pipeline.paused(now)
        result = run_checks(config.links, agent, requests, progress=progress, pauses=paused)
        report = pipeline.apply_link_results(result, now)
        pipeline.render(now)
        return result, report


PAUSES = "host_pauses"
"""The state's record of the hosts that asked (Retry-After) to be left alone, and until when."""
IMAGE_FETCHES = 8
"""Image fetches in flight at most: each keeps a body of up to `thumbnails.max_bytes`."""


def image_fetching(config: Config) -> LinksConfig:
    """The link checker's rules, for fetching images: the same safety, fewer at once."""
    concurrency = min(config.links.concurrency, IMAGE_FETCHES)
    return config.links.model_copy(update={"concurrency": concurrency})


def fetch_thumbnails(config: Config, now: datetime) -> ThumbnailReport:
    """Fetch the images the pages want and re-render the pages. The composition root of
    `aggregator thumbnails`."""
    from aggregator.checker import run_checks, user_agent

    with opened(config) as pipeline:
        pipeline.scan(now)
        pipeline.render(now)  # notes the images every page wants
        requests = pipeline.thumbnail_requests(now, config.thumbnails.budget)
        agent = user_agent(config.links, config.site.base_url)
        result = run_checks(image_fetching(config), agent, requests, pauses=pipeline.paused(now))
        report = pipeline.apply_thumbnails(result, now)
        if report.made:
            pipeline.render(now, {key for key in report.topics if key is not None})
        return report


def link_history(config: Config, url: str) -> LinkState | None:
    """What is stored about one URL (for `aggregator links show`)."""
    store = Store(config.state.path)
    try:
        return store.link_states([url]).get(url)
    finally:
        store.close()
