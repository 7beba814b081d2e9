"""Publish: state → feeds, topic pages, archives, the index and the OPML files.

    catalog of topics → per feed: its current page of entries (and archive layout)
        → render every format → write-if-changed → prune what no feed has any more

Only the feeds named are rendered again (and `all`, the index and the OPML). With
`feeds.archive`, rendering a topic also reads the date and `updated` of all its
entries, to tell which archive pages changed (only those are rendered). With
`digests.enabled`, a topic feed's daily digest (`aggregator.digests`) is rendered with
it, from the entries of its closed days.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from aggregator.archive import Key
from aggregator.config import Config
from aggregator.digests import digest_path
from aggregator.errors import Interrupted
from aggregator.feedrender import (
    FeedJob,
    FeedRenderer,
    Rendered,
    digested,
    render_job,
    stale_archive_pages,
)
from aggregator.feeds import ALL_FEED, TOPIC_KIND, Feed, FeedKey
from aggregator.formats import (
    ARCHIVE_SUFFIX,
    FEED_FORMATS,
    PROVIDERS_FOLDER,
    archive_folder,
    archive_path,
    feed_path,
    page_path,
)
from aggregator.ingest import StopCheck, never, topic_rules
from aggregator.output import Output, OutputDir, RenderReport
from aggregator.pages import (
    ALL_OPML_PATH,
    INDEX_PATH,
    OPML_PATH,
    PROVIDERS_OPML_PATH,
    PROVIDERS_PATH,
    SITE_FILES,
    render_all_opml,
    render_index,
    render_opml,
    render_providers_opml,
    render_providers_page,
)
from aggregator.parallel import in_order
from aggregator.plan import FeedFilter, FeedStamp, FeedSummary, topic_catalog, topic_feed_of
from aggregator.providers import ProviderName, provider_feed_of, provider_names
from aggregator.store import StateStore, WorkerAccess
from aggregator.thumbs import FOLDER, SUFFIX
from aggregator.topics import Topic, TopicRules

if TYPE_CHECKING:  # a render without workers imports no pool
    from concurrent.futures import Executor

RENDER_JOBS = 16
"""A render in worker processes gives them its feeds in this many jobs (or one feed a
job, when there are fewer): each job carries the catalog of topics, which may be large."""
AHEAD = 4
"""Jobs given out to worker processes ahead of the one being written."""


class _Record(NamedTuple):
    """What the state keeps of one feed's render (see `feedrender.Rendered`)."""

    key: FeedKey
    stamp: FeedStamp | None
    archive: tuple[list[Key], list[str]] | None
    forget_thumbnails: list[str]


class Publisher:
    """Keeps the output directory in step with the state (the render use case)."""

    def __init__(
        self, config: Config, store: StateStore, out: Output, access: WorkerAccess | None = None
    ) -> None:
        """`access`: how worker processes read `store` (see `render`'s `pool`)."""
        self.store = store
        self.out = out
        self.access = access
        self.config = config
        self.rules = topic_rules(config)
        self._catalog: dict[str, Topic] | None = None
        self._providers: dict[str, ProviderName] = {}
        self._summaries: dict[str, FeedSummary] = {}
        self._wanted: set[str] = set()
        """Images the pages rendered since the last full render show without a thumbnail."""
        self._shown_thumbs: set[str] = set()
        """Thumbnail files the pages rendered since the last full render use."""
        self._archive_pages: dict[str, int] = {}
        """Slug → how many archive pages it has, after the last render of its feed."""

    def reconfigure(self, config: Config) -> None:
        """Use a new config; the next `render` redoes every feed."""
        self.config = config
        self.rules = topic_rules(config)
        self._catalog = None

    def names_moved(self) -> bool:
        """Whether a topic's display name or slug differs from what the last render used
        (False before the first render). Raises `StateError` when the state is unreadable."""
        if self._catalog is None:
            return False
        providers = provider_catalog_of(self.store) if self.config.feeds.providers else {}
        return (
            topic_catalog_of(self.store, self.rules) != self._catalog
            or providers != self._providers
        )

    def render(
        self,
        now: datetime,
        changed: set[FeedKey] | None = None,
        should_stop: StopCheck = never,
        complete: bool = True,
        pool: Executor | None = None,
    ) -> RenderReport:
        """Re-render the `changed` feeds (None: every feed), the feeds of kinds that hold
        every entry (`all`), the index and the OPML files.

        `complete`: the last scan read every folder, so files of feeds that are gone may be
        removed. `pool`: worker processes (a cold build's) that render the feeds while this
        process writes them, when the state has `access` for them and the output is a local
        directory. Returns what was written and removed. Raises `Interrupted` when
        `should_stop` turns true (the next render starts over), `OutputError` or
        `StateError` when the output directory or the state file is unusable.

        The files are written together (`Output.batch`): when the render raises, none of
        those not yet put in place is (removing a feed's stale archive pages puts what was
        written before in place first)."""
        with self.out.batch():
            return self._render(now, changed, should_stop, complete, pool)

    def _render(
        self,
        now: datetime,
        changed: set[FeedKey] | None,
        should_stop: StopCheck,
        complete: bool,
        pool: Executor | None,
    ) -> RenderReport:
        catalog = topic_catalog_of(self.store, self.rules, keep_slugs=True)
        feeds = self.config.feeds
        providers = provider_catalog_of(self.store) if feeds.providers else {}
        if catalog != self._catalog or providers != self._providers or feeds.max_age_days:
            changed = None  # names or slugs moved, or entries age out: redo everything
        flt = FeedFilter.of(feeds, now)
        listed = feed_listing(catalog, providers)
        targets = [f for f in listed if changed is None or f.kind.every_entry or f.key in changed]
        if changed is None:
            self._summaries = {}
            self._wanted = set()
            self._shown_thumbs = set()
            self._archive_pages = {}
        else:
            live = {f.slug for f in listed}
            self._summaries = {s: v for s, v in self._summaries.items() if s in live}
        report = RenderReport()
        records: list[_Record] = []
        for target, done in self._feeds(targets, catalog, flt, now, pool):
            if should_stop():
                self._catalog = None  # the next render starts over
                self._providers = {}
                raise Interrupted
            self._apply(target, done, report)
            if done.stamp is not None or done.archive is not None or done.forget_thumbnails:
                records.append(
                    _Record(target.key, done.stamp, done.archive, done.forget_thumbnails)
                )
        self._record(records)
        self._catalog = catalog
        self._providers = providers
        summaries = sorted(self._summaries.values(), key=lambda s: s.feed.order)
        site = self.config.site
        index = render_index(summaries, site, feeds.formats, feeds.providers)
        self._write(INDEX_PATH, index, report)
        self._write(OPML_PATH, render_opml(summaries, site), report)
        self._write(ALL_OPML_PATH, render_all_opml(summaries, site), report)
        if feeds.providers:
            page = render_providers_page(summaries, site, feeds.formats)
            self._write(PROVIDERS_PATH, page, report)
            self._write(PROVIDERS_OPML_PATH, render_providers_opml(summaries, site), report)
        else:
            for path in (PROVIDERS_PATH, PROVIDERS_OPML_PATH):
                if self.out.remove(path):
                    report.removed.append(path)
        for relative, data in SITE_FILES.items():
            self._write(relative, data, report)
        if complete:
            digests = self._digest_paths()
            for fmt, form in FEED_FORMATS.items():
                on = fmt in feeds.formats
                keep = {feed_path(slug, fmt) for slug in self._summaries} if on else set()
                keep |= digests  # a topic whose slug is `providers` has its digest there
                report.removed += self.out.prune("feeds", form.suffix, keep)
                report.removed += self.out.prune(f"feeds/{PROVIDERS_FOLDER}", form.suffix, keep)
            self._prune_digests(digests, report)
            pages = {page_path(slug) for slug in self._summaries}
            report.removed += self.out.prune("topics", ".html", pages)
            report.removed += self.out.prune(PROVIDERS_FOLDER, ".html", pages)
            if changed is None:  # every page was seen: thumbnails no page shows can go
                self.store.thumbnails.forget_thumbnails(self._shown_thumbs, self._wanted)
                self.store.feeds.forget_archives([f.key for f in listed])
                report.removed += self.out.prune(FOLDER, SUFFIX, self._shown_thumbs)
            # Archives of feeds that are gone (a topic's archive folder may be in the
            # providers folder too, when the topic's slug is `providers`).
            slugs = [*self.out.folders("feeds")]
            slugs += [
                f"{PROVIDERS_FOLDER}/{folder}"
                for folder in self.out.folders(f"feeds/{PROVIDERS_FOLDER}")
                if folder != "archive"
            ]
            for slug in slugs:
                if slug not in self._summaries or not feeds.archive:
                    report.removed += self.out.prune(archive_folder(slug), ARCHIVE_SUFFIX, set())
                    self.out.remove_empty(archive_folder(slug))
        return report

    def renders_in_workers(self) -> bool:
        """Whether a render given worker processes renders its feeds in them: they can read
        the state and the output, and there are no archives (see `_feeds`)."""
        return (
            self.access is not None
            and isinstance(self.out, OutputDir)
            and not self.config.feeds.archive
        )

    def _feeds(
        self,
        targets: Sequence[Feed],
        catalog: Mapping[str, Topic],
        flt: FeedFilter,
        now: datetime,
        pool: Executor | None,
    ) -> Iterator[tuple[Feed, Rendered]]:
        """Each target rendered (see `feedrender`), in order: in `pool`'s worker processes
        when there is one and `renders_in_workers`, else here, one after the other.

        Not with `feeds.archive`: a feed's archive pages would come back with it, and
        those of a large feed run to hundreds of MB (a cold build of 100,000 seeds with
        archives peaked at 1,074 MB, summed over its processes, rendering in workers, and
        at 410 MB rendering here, with its workers shut down first)."""
        access, out = self.access, self.out
        if pool is None or len(targets) < 2 or not self.renders_in_workers():
            renderer = FeedRenderer(self.config, self.store, out)
            for target in targets:
                yield target, renderer.render(target, catalog, flt, now)
            return
        assert access is not None and isinstance(out, OutputDir)  # renders_in_workers
        size = -(-len(targets) // RENDER_JOBS)  # what each job carries is sent once a job
        jobs = (
            FeedJob(
                access.reader,
                out.root,
                self.config,
                tuple(targets[i : i + size]),
                catalog,
                flt,
                now,
            )
            for i in range(0, len(targets), size)
        )
        done = (rendered for batch in in_order(pool, render_job, jobs, AHEAD) for rendered in batch)
        yield from zip(targets, done, strict=True)

    def _apply(self, feed: Feed, done: Rendered, report: RenderReport) -> None:
        """Write what rendering `feed` changed (see `feedrender.Rendered`); `_record`
        records it in the state."""
        for relative, data in done.files:
            self._write(relative, data, report)
        report.unchanged += done.unchanged
        slug = feed.slug
        if done.archive_pages is not None:
            self._archive_pages[slug] = done.archive_pages
            report.removed += self.out.prune(*stale_archive_pages(slug, done.archive_pages))
        self._wanted |= done.wanted
        self._shown_thumbs |= done.shown
        if done.summary is None:
            self._summaries.pop(slug, None)
        else:
            self._summaries[slug] = done.summary

    def _record(self, records: Sequence[_Record]) -> None:
        """Record in the state what rendering the feeds changed, in one transaction rather
        than a commit per feed (each commit of a cold build also wakes the thread that
        checkpoints the state's log)."""
        feeds, thumbnails = self.store.feeds, self.store.thumbnails
        with self.store.transaction():
            for key, stamp, archive, forget in records:
                if stamp is not None:
                    feeds.keep_feed_stamp(key, stamp)
                if archive is not None:
                    feeds.keep_archive(key, *archive)
                if forget:
                    thumbnails.forget_thumbnails_of(forget)

    def _digest_paths(self) -> set[str]:
        """The digest feeds of the feeds the last render wrote."""
        return {
            digest_path(slug)
            for slug, summary in self._summaries.items()
            if digested(self.config, summary.feed)
        }

    def _prune_digests(self, keep: Collection[str], report: RenderReport) -> None:
        """Remove the digest feeds (but those in `keep`) of feeds that have none any more
        (gone, or digests turned off)."""
        for folder in self.out.folders("feeds"):
            path = digest_path(folder)
            if path not in keep and self.out.remove(path):
                report.removed.append(path)
                self.out.remove_empty(path.rpartition("/")[0])

    def output_intact(self) -> bool:
        """Whether every file the last render wrote is still there (someone may delete them)."""
        slugs, formats = self._summaries.keys(), self.config.feeds.formats
        providers = self.config.feeds.providers
        paths = written_paths(slugs, self._archive_pages, self._shown_thumbs, formats, providers)
        paths += sorted(self._digest_paths())
        return all(self.out.exists(p) for p in paths)

    def has_output(self) -> bool:
        """Whether the output directory holds a site from an earlier build (its index page)."""
        return self.out.exists(INDEX_PATH)

    @property
    def topic_count(self) -> int:
        """Topics with a feed after the last render (`all` and providers aside)."""
        return sum(1 for s in self._summaries.values() if s.feed.key.kind == TOPIC_KIND)

    def _write(self, relative: str, data: bytes, report: RenderReport) -> None:
        if self.out.write(relative, data):
            report.written.append(relative)
        else:
            report.unchanged += 1


def topic_catalog_of(
    store: StateStore, rules: TopicRules, keep_slugs: bool = False
) -> dict[str, Topic]:
    """Returns the topics of the stored seeds (key → `Topic`), named and slugged as
    `plan.topic_catalog` decides; with `keep_slugs`, the slugs given to new topics are
    kept for good. Raises `StateError` when the state cannot be read or written."""
    slugs = store.feeds.topic_slugs()
    catalog = topic_catalog(store.seeds.spelling_counts(), rules, slugs)
    if keep_slugs:
        new_slugs = {t.key: t.slug for t in catalog.values() if t.key not in slugs}
        if new_slugs:
            store.feeds.keep_topic_slugs(new_slugs)
    return catalog


def provider_catalog_of(store: StateStore) -> dict[str, ProviderName]:
    """Returns the providers of the stored entries (domain → `ProviderName`), named as
    `providers.provider_names` decides. Raises `StateError` when the state cannot be read."""
    return provider_names(store.entries.provider_names())


def feed_listing(
    catalog: Mapping[str, Topic], providers: Mapping[str, ProviderName] | None = None
) -> list[Feed]:
    """Returns every feed there is: the feed of every article, then one per topic of
    `catalog`, then one per provider of `providers`. A new kind of feed adds its feeds here."""
    return [
        ALL_FEED,
        *(topic_feed_of(t) for t in catalog.values()),
        *(provider_feed_of(p) for p in sorted((providers or {}).values())),
    ]


def written_paths(
    slugs: Collection[str],
    archive_pages: Mapping[str, int],
    thumbs: Iterable[str],
    formats: Iterable[str],
    providers: bool = False,
) -> list[str]:
    """Returns the output files a render of the feeds `slugs` writes: each feed in every
    format, its page and its archive pages (`archive_pages`: slug → how many; those of
    other slugs are left out), the thumbnails the pages show, the index, the OPML files
    (with `providers`, the providers page and OPML file too) and the site files."""
    formats = list(formats)
    paths = [feed_path(s, f) for s in slugs for f in formats]
    paths += [page_path(s) for s in slugs]
    paths += [
        archive_path(s, n)
        for s, last in archive_pages.items()
        if s in slugs
        for n in range(1, last + 1)
    ]
    paths += sorted(thumbs)
    paths += [INDEX_PATH, OPML_PATH, ALL_OPML_PATH, *SITE_FILES]
    if providers:
        paths += [PROVIDERS_PATH, PROVIDERS_OPML_PATH]
    return paths
