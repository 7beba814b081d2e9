"""Ingest: seed directory → parsed seeds → state. The scan half of every build and rescan.

    scan (stat only) → read + parse what changed (worker processes)
        → store (SQLite) → refresh entries and ledger

Work is proportional to change: a scan with nothing changed costs a directory
walk and a `stat` per file. What the scan changed (the topics whose feeds may
differ) is in the returned `ScanReport`, for the app to render.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from itertools import chain, islice
from typing import TYPE_CHECKING

from aggregator.config import Config
from aggregator.errors import Interrupted, SeedDirError
from aggregator.feeds import FeedKey
from aggregator.links import LinkRules
from aggregator.model import LoadedSeed
from aggregator.parse import READING_RULES
from aggregator.plan import LEDGER_RULES
from aggregator.providers import list_version, load_suffix_list
from aggregator.refresh import LEDGER_SETTING, refresh
from aggregator.scan import SeedFile, check_paths, scan
from aggregator.store import StateStore, WorkerAccess
from aggregator.stories import StoryRules
from aggregator.topics import TopicRules
from aggregator.worker import load_batch, load_seed, start_worker

if TYPE_CHECKING:
    import multiprocessing.context
    from concurrent.futures import ProcessPoolExecutor

Progress = Callable[[int, int], None]
"""Called with (files read so far, files to read)."""
StopCheck = Callable[[], bool]
"""Asked between batches of work: True stops the work (it raises `Interrupted`)."""

PARALLEL_THRESHOLD = 200
"""Below this many files to read, parsing in this process beats starting workers."""
BATCH = 5000
"""Parsed seeds stored per transaction. Each commit writes every page the batch changed,
and the indexes keyed by article id change pages all over: fewer, larger batches write
fewer pages (storing 100,000 seed records: 7.2 s of CPU in batches of 1,000, 6.6 s in
batches of 5,000). A scan that is stopped or killed reads at most one batch again."""
STEP = 500
"""In a cold build, parsed seeds stored at a time, as the workers send them, inside a
batch's transaction: what is left to store when the last seed is parsed is at most this
many. (Elsewhere a batch is stored at once: the service's other threads, which read the
state, are not kept waiting while seeds are parsed.)"""


def never() -> bool:
    """A `StopCheck` that never stops; returns False."""
    return False


@dataclass
class ScanReport:
    """What one scan found and changed."""

    files: int = 0
    parsed: int = 0
    removed: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """Files rejected in this scan (each is reported once per change of the file)."""
    warnings: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Parts of the seed directory that could not be read; nothing there counts as deleted."""
    feeds: set[FeedKey] = field(default_factory=set)
    """The feeds (of kinds that store their members) whose content may have changed."""
    entries_changed: int = 0
    names_changed: bool = False
    """A topic's display name moved (its seeds now spell it otherwise) though no entry
    changed: every page and the OPML name it, so everything is rendered again (set by
    the app, which knows the names the last render used)."""


def start_workers(workers: int) -> ProcessPoolExecutor | None:
    """Parse worker processes, started now; None when `workers` (0: one per CPU) is 1.

    A cold build starts them before it walks the seed directory: a worker forked then
    copies none of what the walk and the store will hold, and makes its parser ready
    while the walk runs. The caller shuts the pool down."""
    from concurrent.futures import ProcessPoolExecutor  # here: a scan with nothing to read

    count = workers or os.cpu_count() or 1
    if count == 1:
        return None
    _quiet_resource_tracker()
    pool = ProcessPoolExecutor(
        max_workers=count,
        mp_context=_worker_context(),
        initializer=start_worker,  # no worker outlives this process, even after kill -9
        initargs=(os.getpid(),),
    )
    pool.submit(int)  # starts the workers now, not at the first seed
    return pool


class Workers:
    """The worker processes of one build, started when a cold scan calls for them
    (`Ingest.scan`) and kept until the build ends: the refresh decides and the render
    renders in them too. Closing shuts them down."""

    def __init__(self, count: int, preload: Sequence[str] = ()) -> None:
        """`count`: `build.workers` (0: one per CPU). `preload`: modules the workers and this
        process will use after the parse (the render's), imported where each would
        otherwise wait: here while the workers parse their first seeds (`while_parsing`),
        in the workers once they have parsed everything (`after_parsing`)."""
        self.count = count
        self.preload = preload
        self.pool: ProcessPoolExecutor | None = None

    def start(self) -> ProcessPoolExecutor | None:
        """The pool, started now if it is not yet (see `start_workers`); None for one worker."""
        if self.pool is None:
            if _forks():
                # Read once here, the suffix list is each worker's without reading it again
                # (each record names its coverage's providers: `plan.shown_hash`).
                load_suffix_list()
            self.pool = start_workers(self.count)
        return self.pool

    def while_parsing(self) -> None:
        """What this process does while the workers parse their first seeds, with nothing
        else to do: the suffix list (the refresh needs it) and the modules to preload."""
        load_suffix_list()
        _import(self.preload)

    def after_parsing(self) -> None:
        """Have the workers import the modules to preload, while they have nothing to do:
        after the parse, until the refresh gives them stories to decide. One job each;
        should one worker take two, the other imports them with its first render job."""
        if self.pool is not None and self.preload:
            for _ in range(self.count or os.cpu_count() or 1):
                self.pool.submit(_import, self.preload)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _import(names: Sequence[str]) -> None:
    for name in names:
        importlib.import_module(name)


def load_seeds(
    files: Sequence[SeedFile],
    max_bytes: int,
    workers: int,
    progress: Progress | None = None,
    meanwhile: Callable[[], object] | None = None,
    pool: ProcessPoolExecutor | None = None,
) -> Iterator[LoadedSeed]:
    """`load_seed` for every file, in worker processes when there are many: those of
    `pool` when given (started by `start_workers`; left running), else a pool of its own.

    Yields the results in the order of `files`; a seed that cannot be read or parsed is a
    result with its `error`, not an exception. With worker processes, `meanwhile` is called
    once they have their work, before the first result is waited for: this process has
    nothing else to do until then."""
    reader = partial(load_seed, max_bytes=max_bytes)
    count = workers or os.cpu_count() or 1
    total = len(files)
    if count == 1 or total < PARALLEL_THRESHOLD:
        yield from _counted(map(reader, files), total, progress)
        return
    own = pool is None
    if pool is None:
        pool = start_workers(count)
        assert pool is not None
    chunk = max(1, min(256, total // (count * 8)))
    batches = (files[start : start + chunk] for start in range(0, total, chunk))
    try:
        results = pool.map(partial(load_batch, max_bytes=max_bytes), batches)
        if meanwhile is not None:
            meanwhile()
        yield from _counted(chain.from_iterable(results), total, progress)
    finally:
        if own:
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
    import multiprocessing

    if _forks():
        return multiprocessing.get_context("fork")
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # rapidyaml too (each worker would import it: `yamlsafe.read_fast_here`).
        context.set_forkserver_preload(["aggregator.worker", "aggregator.forkserver", "ryml"])
        return context
    return multiprocessing.get_context("spawn")


def _forks() -> bool:
    """Whether parse workers fork from this process (`_worker_context`): it runs one thread
    and the system forks."""
    import multiprocessing

    return threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()


def _counted(
    results: Iterator[LoadedSeed], total: int, progress: Progress | None
) -> Iterator[LoadedSeed]:
    for done, result in enumerate(results, 1):
        if progress is not None and (done % 100 == 0 or done == total):
            progress(done, total)
        yield result


class Ingest:
    """Brings the state up to date with the seed directory (the scan use case)."""

    def __init__(
        self, config: Config, store: StateStore, access: WorkerAccess | None = None
    ) -> None:
        """`access`: how worker processes help with `store` (see `refresh.refresh`)."""
        self.store = store
        self.access = access
        self.config = config
        self.rules = topic_rules(config)
        self.link_rules = link_rules(config)
        self.complete = True
        """Whether the last full scan could read every folder (else nothing may be pruned)."""
        self._refused: set[tuple[str, str]] = set()
        self._known: dict[str, tuple[int, int]] | None = None
        self.rehash: str | None = None
        """The ledger rules the next refresh records, writing every hash anew (see
        `refresh.refresh`); None: the state has them already."""
        """(size, mtime_ns) of every stored seed, as the store has them; None: ask the store."""

    def prepare(self) -> None:
        """Mark for reading again what settings changed since the state was written: the
        seeds rejected under other limits, every seed under other reading rules, every
        entry under other topic or link rules. Raises `StateError` when the state file
        cannot be written."""
        store, config = self.store, self.config
        store.settings.reread_rejected_if_changed(seed_settings(config))
        store.settings.reread_all_if_changed("reading_rules", READING_RULES)
        if store.settings.settings_changed("entry_rules", entry_rules(config)):
            # Topic or link rules changed: the next scan redoes every entry.
            store.entries.mark_all_dirty()
        if store.settings.recorded(LEDGER_SETTING) != LEDGER_RULES:
            # The ledger's hashes are made another way: the next refresh writes them all
            # anew, dating no entry anew, and records the rules.
            store.entries.mark_all_dirty()
            self.rehash = LEDGER_RULES

    def reconfigure(self, config: Config, now: datetime) -> None:
        """Use a new config: entries are redone now when the rules they depend on changed.

        Raises `StateError` when the state file cannot be written."""
        self.rules, self.link_rules = topic_rules(config), link_rules(config)
        if self.store.settings.settings_changed("entry_rules", entry_rules(config)):
            self.store.entries.mark_all_dirty()
            refresh(
                self.store,
                self.rules,
                now,
                never,
                self.link_rules,
                story_rules(config),
                self.rehash,
            )
            self.rehash = None
        self.config = config
        self._known = None
        self.store.settings.reread_rejected_if_changed(seed_settings(config))

    def scan(
        self,
        now: datetime,
        progress: Progress | None = None,
        should_stop: StopCheck = never,
        workers: Workers | None = None,
    ) -> ScanReport:
        """Walk the seed directory, parse what changed, and bring the state up to date.

        Returns what was found, read, removed and rejected, and which topics changed.
        A cold scan starts worker processes in `workers` and leaves them running (the
        caller closes it); without `workers`, it starts and closes its own.

        Raises `SeedDirError` when the seed directory itself cannot be read;
        then nothing in the state changes. Raises `Interrupted` when
        `should_stop` turns true; the next scan picks up where this one stopped.
        """
        seeds = self.config.seeds
        known = self._known_stats()
        # A cold build: forked now, the workers copy none of what the walk will hold.
        early = not known and _forks()
        own = workers is None
        if workers is None:
            workers = Workers(self.config.build.workers)
        pool = workers.start() if early else None
        try:
            if pool is not None and self.access is not None:
                self.access.checkpoint_apart()  # nothing forks after this: the workers are there
            found = scan(seeds.dir, seeds.extensions, known)
            self.complete = found.complete
            total = len(found.files) + found.unchanged
            if not total and not found.refused and known:
                # An unmounted volume or a wrong path looks just like this.
                raise SeedDirError(
                    f"{seeds.dir}: no seed files any more (the state knows {len(known)}); "
                    "the last feeds are kept. To start over on purpose, remove the state file."
                )
            # An unreadable folder must not look like deleted seeds.
            gone = found.unseen if found.complete else []
            report = ScanReport(files=total, problems=list(found.problems))
            fresh = [item for item in found.refused if item not in self._refused]
            report.rejected.extend(fresh)  # reported once, as long as the name stays
            self._refused = set(found.refused)
            meanwhile = workers.while_parsing if pool is not None else load_suffix_list
            known = self._store(found.files, gone, report, progress, should_stop, pool, meanwhile)
            del found  # the walk's list: the refresh has better use for the memory
            workers.after_parsing()
            return self._refresh(now, report, should_stop, known, pool)
        finally:
            if own:
                workers.close()

    def scan_paths(
        self, paths: Iterable[str], now: datetime, should_stop: StopCheck = never
    ) -> ScanReport:
        """Look at just these paths (from file-system events) and bring the state up to date.

        Returns and raises as `scan` does (it walks everything when a folder went away)."""
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
        known = self._store(files, gone, report, None, should_stop)
        return self._refresh(now, report, should_stop, known)

    def _known_stats(self) -> dict[str, tuple[int, int]]:
        if self._known is None:
            self._known = self.store.seeds.seed_stats()
        return self._known

    def _store(
        self,
        files: Sequence[SeedFile],
        gone: Sequence[str],
        report: ScanReport,
        progress: Progress | None,
        should_stop: StopCheck,
        pool: ProcessPoolExecutor | None = None,
        meanwhile: Callable[[], object] = load_suffix_list,
    ) -> dict[str, tuple[int, int]]:
        """Forget the seeds `gone`, read and store those of `files` that changed; returns
        the stats of every stored seed (for `_refresh`, which makes them known again).
        `meanwhile`: what to do while worker processes parse the first seeds (see
        `load_seeds`); the refresh needs the suffix list, so it reads it."""
        known = self._known_stats()
        self._known = None  # until the refresh completes, the store is the truth
        changed = sorted(
            (f for f in files if known.get(f.source) != (f.size, f.mtime_ns)),
            key=lambda f: f.source,
        )
        if gone:
            self.store.seeds.forget_seeds(gone)
            for source in gone:
                known.pop(source, None)
        report.removed = len(gone)
        digests = self.store.seeds.digests([f.source for f in changed if f.source in known])
        seeds = self.config.seeds
        results = load_seeds(
            changed,
            seeds.max_file_bytes,
            self.config.build.workers,
            progress,
            meanwhile,
            pool,
        )
        touched: list[SeedFile] = []
        pairs = zip(changed, results, strict=True)
        size = STEP if pool is not None else BATCH
        steps = iter(lambda: list(islice(pairs, size)), [])
        with self.store.seeds.loading(len(changed)):
            step = next(steps, None)  # a batch's first step is parsed before it begins
            while step is not None:
                with self.store.transaction():  # a batch: in a cold build, several steps
                    for number in range(BATCH // size):
                        if number:  # a cold build waits for the next step in the batch
                            step = next(steps, None)
                            if step is None:
                                break
                        if should_stop():
                            raise Interrupted
                        self._store_step(step, digests, touched, report)
                        known.update((f.source, (f.size, f.mtime_ns)) for f, _ in step)
                if step is not None:
                    step = None  # stored: not held while the next batch is parsed
                    step = next(steps, None)
        if touched:
            self.store.seeds.touch(touched)
        return known

    def _store_step(
        self,
        step: Sequence[tuple[SeedFile, LoadedSeed]],
        digests: Mapping[str, str],
        touched: list[SeedFile],
        report: ScanReport,
    ) -> None:
        """Store the seeds of `step` whose bytes changed; those with the same bytes (a new
        mtime) go to `touched`."""
        fresh = []
        for file, result in step:
            if result.digest and digests.get(file.source) == result.digest:
                touched.append(file)  # same bytes, new mtime: nothing to parse again
                continue
            fresh.append((file, result))
            report.warnings.extend((result.source, w) for w in result.warnings)
            if result.error is not None:
                report.rejected.append((result.source, result.error))
        report.parsed += len(fresh)
        self.store.seeds.store_seeds(fresh)

    def _refresh(
        self,
        now: datetime,
        report: ScanReport,
        should_stop: StopCheck,
        known: dict[str, tuple[int, int]],
        pool: ProcessPoolExecutor | None = None,
    ) -> ScanReport:
        """Bring the entries up to date with what `_store` stored (deciding in `pool`'s
        workers, if given); `known` becomes the stats the next scan compares with."""
        applied = refresh(
            self.store,
            self.rules,
            now,
            should_stop,
            self.link_rules,
            story_rules(self.config),
            self.rehash,
            pool,
            self.access,
        )
        self.rehash = None
        report.feeds = applied.feeds
        report.entries_changed = applied.entries_changed
        self._known = known
        return report

    @property
    def refused(self) -> list[tuple[str, str]]:
        """Seed files the last full scan could not take as named (not in the state)."""
        return sorted(self._refused)


def seed_settings(config: Config) -> str:
    """The settings that decide whether a seed is rejected, as stored beside the seeds;
    returns them as a JSON text."""
    seeds = config.seeds
    return json.dumps([seeds.max_file_bytes, sorted(seeds.extensions)])


def entry_rules(config: Config) -> str:
    """The settings every entry's topics and link depend on, as stored beside them;
    returns them as a JSON text."""
    topics, links = config.topics, config.links
    return json.dumps(
        [
            sorted((k, v) for k, v in topics.aliases.items()),
            sorted(topics.include),
            sorted(topics.exclude),
            links.on_dead,
            links.follow_permanent_redirects,
            ["stories", config.stories.merge, config.stories.window_days],
            ["providers", list_version()],  # which provider (registrable domain) each entry has
        ]
    )


def story_rules(config: Config) -> StoryRules:
    """Returns what the config says of stories (see `aggregator.stories`)."""
    stories = config.stories
    return StoryRules(stories.merge, timedelta(days=stories.window_days))


def link_rules(config: Config) -> LinkRules:
    """Returns what the config says dead and moved links do to entries."""
    links = config.links
    return LinkRules(links.on_dead, links.follow_permanent_redirects)


def topic_rules(config: Config) -> TopicRules:
    """Returns the topic rules (aliases, include, exclude) of the config."""
    topics = config.topics
    return TopicRules.build(topics.aliases, topics.include, topics.exclude)
