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

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from aggregator.archive import Key, Layout, Row, lay_out, newer, page_digest, reopen
from aggregator.config import Config
from aggregator.digests import DigestPlan, digest_path, last_close, plan_digests, window
from aggregator.errors import Interrupted
from aggregator.feeds import ALL_FEED, TOPIC_KIND, Feed, FeedKey
from aggregator.formats import (
    ARCHIVE_SUFFIX,
    ATOM,
    FEED_FORMATS,
    PROVIDERS_FOLDER,
    FeedOptions,
    archive_folder,
    archive_path,
    feed_path,
    page_path,
    renderer,
)
from aggregator.ingest import StopCheck, never, topic_rules
from aggregator.output import Output, RenderReport
from aggregator.pages import (
    ALL_OPML_PATH,
    INDEX_PATH,
    OPML_PATH,
    PROVIDERS_OPML_PATH,
    PROVIDERS_PATH,
    SITE_FILES,
    Thumbnail,
    render_all_opml,
    render_index,
    render_opml,
    render_providers_opml,
    render_providers_page,
    render_topic_page,
)
from aggregator.plan import (
    Entry,
    FeedFilter,
    FeedPlan,
    FeedStamp,
    FeedSummary,
    feed_stamp,
    to_micros,
    topic_catalog,
    topic_feed_of,
)
from aggregator.providers import ProviderName, provider_feed_of, provider_names
from aggregator.render import (
    OLDEST,
    RENDERING,
    History,
    archive_bound,
    empty_page_date,
    render_atom,
    render_digest,
)
from aggregator.store import StateStore, StoredEntry
from aggregator.stories import held_back
from aggregator.thumbs import FOLDER, HEADER_BYTES, SUFFIX, thumbnail_path, webp_size
from aggregator.topics import Topic, TopicRules

MAX_FEED_BYTES = 400_000
"""A feed stays well under the 512 KB many readers stop at; extra entries give way."""


class Publisher:
    """Keeps the output directory in step with the state (the render use case)."""

    def __init__(self, config: Config, store: StateStore, out: Output) -> None:
        self.store = store
        self.out = out
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
    ) -> RenderReport:
        """Re-render the `changed` feeds (None: every feed), the feeds of kinds that hold
        every entry (`all`), the index and the OPML files.

        `complete`: the last scan read every folder, so files of feeds that are gone may be
        removed. Returns what was written and removed. Raises `Interrupted` when
        `should_stop` turns true (the next render starts over), `OutputError` or
        `StateError` when the output directory or the state file is unusable.

        The files are written together (`Output.batch`): when the render raises, none of
        them is."""
        with self.out.batch():
            return self._render(now, changed, should_stop, complete)

    def _render(
        self,
        now: datetime,
        changed: set[FeedKey] | None,
        should_stop: StopCheck,
        complete: bool,
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
        for target in targets:
            if should_stop():
                self._catalog = None  # the next render starts over
                self._providers = {}
                raise Interrupted
            summary = self._render_feed(target, catalog, flt, report, now)
            slug = target.slug
            if summary is None:
                self._summaries.pop(slug, None)
            else:
                self._summaries[slug] = summary
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

    def _render_feed(
        self,
        feed: Feed,
        catalog: Mapping[str, Topic],
        flt: FeedFilter,
        report: RenderReport,
        now: datetime,
    ) -> FeedSummary | None:
        """Write one feed in every format, its page and its archive; None: it has no entries."""
        feeds, site = self.config.feeds, self.config.site
        slug = feed.slug
        key = feed.key
        rows: list[Row] = []
        bounds: list[Key] = []
        digests: list[str] = []
        if feeds.archive:
            rows = self.store.entries.feed_rows(key, flt.any_age())
            bounds, digests = self.store.feeds.archive(key)
            if not bounds and not digests:  # no record (a new state file): read the pages
                bounds = bounds_on_disk(self.out, slug)
            bounds = reopen(rows, bounds, feeds.max_entries)
        newer_than = bounds[-1] if bounds else None
        stored, total = self.store.entries.feed_page(key, flt, feeds.max_entries, newer_than)
        if not feed.kind.written_empty and total == 0:
            return None

        def entry(e: StoredEntry) -> Entry:
            shown = sorted((catalog[k] for k in e.topic_keys if k in catalog), key=lambda t: t.name)
            article = held_back(e.article, flt.published_before_us)
            return Entry(e.id, article, tuple(shown), e.updated, e.link)

        plan = FeedPlan(feed, tuple(entry(e) for e in stored), total)
        hub = self.config.websub.hub
        data = render_atom(plan, site, feeds.max_related, hub)
        page_size = feeds.max_entries
        while len(data) > MAX_FEED_BYTES and len(plan.entries) > 1:
            # Readers choke on huge feeds: keep fewer (oversized) entries instead, and
            # close archive pages at that size too (they would be as large).
            plan = FeedPlan(feed, plan.entries[: len(plan.entries) * 3 // 4], total)
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
        digest = self._digested(feed)
        if digest:
            self._render_digest(feed, flt, entry, report, now)
        page = render_topic_page(
            plan, site, feeds.formats, thumbs, feeds.max_related, digest=digest
        )
        self._write(page_path(slug), page, report)
        return plan.summary()

    def _digested(self, feed: Feed) -> bool:
        """Whether `feed` has a digest feed (`digests.enabled`: every topic feed has one)."""
        return self.config.digests.enabled and feed.key.kind == TOPIC_KIND

    def _render_digest(
        self,
        feed: Feed,
        flt: FeedFilter,
        entry: Callable[[StoredEntry], Entry],
        report: RenderReport,
        now: datetime,
    ) -> None:
        """Write the digest feed of `feed` (see `aggregator.digests`): its closed days' top
        stories, from the entries the feed's filters let through (whatever their age)."""
        settings, site = self.config.digests, self.config.site
        zone = settings.zone
        start, end = window(now, zone, settings.days)
        span = replace(
            flt.any_age(),
            published_after_us=to_micros(start),
            published_before_us=min(flt.published_before_us, to_micros(end) - 1),
        )
        rows = self.store.entries.feed_rows(feed.key, span)
        stored = self.store.entries.entries([row.entry_id for row in rows])
        digests = plan_digests(
            site.base_url,
            feed.key,
            (entry(e) for e in stored),
            now,
            zone,
            settings.size,
            settings.days,
        )
        plan = DigestPlan(feed.slug, feed.key, feed.name, digests, last_close(now, zone))
        hub = self.config.websub.hub
        data = render_digest(plan, site, hub)
        while len(data) > MAX_FEED_BYTES and len(plan.digests) > 1:  # the oldest days give way
            plan = replace(plan, digests=plan.digests[: len(plan.digests) * 3 // 4])
            data = render_digest(plan, site, hub)
        self._write(digest_path(feed.slug), data, report)

    def _digest_paths(self) -> set[str]:
        """The digest feeds of the feeds the last render wrote."""
        return {
            digest_path(slug)
            for slug, summary in self._summaries.items()
            if self._digested(summary.feed)
        }

    def _prune_digests(self, keep: Collection[str], report: RenderReport) -> None:
        """Remove the digest feeds (but those in `keep`) of feeds that have none any more
        (gone, or digests turned off)."""
        for folder in self.out.folders("feeds"):
            path = digest_path(folder)
            if path not in keep and self.out.remove(path):
                report.removed.append(path)
                self.out.remove_empty(path.rpartition("/")[0])

    def _stamp(self, key: FeedKey, plan: FeedPlan, now: datetime) -> FeedStamp:
        """The feed's stamp after this render: when it last lost an entry (kept in the state)."""
        previous = self.store.feeds.feed_stamp(key)
        stamp = feed_stamp(previous, (e.id for e in plan.entries), plan.updated, now)
        if stamp != previous:
            self.store.feeds.keep_feed_stamp(key, stamp)
        return stamp

    def _thumbnails(self, plan: FeedPlan) -> dict[str, Thumbnail]:
        """The local thumbnails a page can show, with their sizes read from the files; the
        images still missing one are noted."""
        if not self.config.thumbnails.enabled:
            return {}
        images = [e.article.images[0].url for e in plan.entries if e.article.images]
        width = self.config.thumbnails.width
        found = self.store.thumbnails.thumbnails(images)
        present: dict[str, Thumbnail] = {}
        for url, file in found.items():
            head = self.out.head(file, HEADER_BYTES) if file == thumbnail_path(url, width) else None
            size = webp_size(head) if head is not None else None
            if size is not None:
                present[url] = Thumbnail(file, *size)
        if len(present) < len(found):  # files deleted, or another width: fetch them again
            self.store.thumbnails.forget_thumbnails_of([url for url in found if url not in present])
        self._wanted.update(url for url in images if url not in present)
        self._shown_thumbs.update(t.path for t in present.values())
        return present

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
                site.language,
                RENDERING,
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
            stored = self.store.entries.entries([row.entry_id for row in rows])
            page = FeedPlan(plan.feed, tuple(entry(e) for e in stored), len(stored))
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
            self.store.feeds.keep_archive(plan.feed.key, layout.bounds, kept)
        self._archive_pages[slug] = last
        # Pages past the last are stale (reopened, or laid out anew): the server must not
        # take the page before one of them for a closed page.
        keep = {archive_path(slug, n) for n in range(1, last + 1)}
        report.removed += self.out.prune(archive_folder(slug), ARCHIVE_SUFFIX, keep)

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


def bounds_on_disk(out: Output, slug: str) -> list[Key]:
    """Returns where the archive pages already written end, read back from them.

    With a new state file, pages laid out afresh could move entries between
    pages that readers and caches hold as closed; the pages themselves say
    where each one ends (its newest entry). A page with no entries ends
    where the one before it does, so the numbers stay."""
    bounds: list[Key] = []
    number = 1
    while True:
        path = archive_path(slug, number)
        if not (out.exists(path) and out.exists(archive_path(slug, number + 1))):
            return bounds  # the last page is the open one
        data = out.read(path)
        newest = archive_bound(data) if data is not None else None
        previous = bounds[-1] if bounds else OLDEST
        bounds.append(newest if newest is not None and newer(newest, previous) else previous)
        number += 1


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
