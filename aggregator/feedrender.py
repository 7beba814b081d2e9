"""One feed's files: what rendering a feed writes and what it records (`FeedRenderer`).

    state + output (read only) → the feed in every format, its page, the archive pages
        whose entries changed, its digest → `Rendered`

A feed is rendered from the state and the output as they are, and nothing is
written here: what the render would change (files to write, stale archive pages,
the feed's stamp and archive layout, thumbnails to forget) comes back as a
`Rendered`, which the publisher writes and records (`publish.Publisher`). The
feeds are independent of each other, so a cold build renders them in its worker
processes (`render_job`), each reading the state committed before the render
began, while the one process that writes writes them in order (not with archives:
see `publish.Publisher._feeds`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from msgspec import structs

from aggregator.archive import Key, Layout, lay_out, newer, page_digest, reopen
from aggregator.config import Config
from aggregator.digests import DigestPlan, digest_path, last_close, plan_digests, window
from aggregator.feeds import TOPIC_KIND, Feed
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
from aggregator.output import Output, OutputDir
from aggregator.pages import Thumbnail, render_topic_page
from aggregator.plan import (
    Entry,
    FeedFilter,
    FeedPlan,
    FeedStamp,
    FeedSummary,
    feed_stamp,
    to_micros,
)
from aggregator.render import (
    OLDEST,
    RENDERING,
    History,
    archive_bound,
    empty_page_date,
    render_atom,
    render_digest,
)
from aggregator.store import StateStore, StoredEntry, opened_here
from aggregator.stories import held_back
from aggregator.thumbs import HEADER_BYTES, thumbnail_path, webp_size
from aggregator.topics import Topic

MAX_FEED_BYTES = 400_000
"""A feed stays well under the 512 KB many readers stop at; extra entries give way."""


@dataclass
class Rendered:
    """What rendering one feed changes: the files to write, in order, and what to record."""

    files: list[tuple[str, bytes]] = field(default_factory=list)
    unchanged: int = 0
    """Archive pages whose entries did not change, left as they are."""
    summary: FeedSummary | None = None
    """None: the feed has no entries and is not written (its files are pruned)."""
    stamp: FeedStamp | None = None
    """The feed's new stamp, when it moved (`StateStore.feeds.keep_feed_stamp`)."""
    archive: tuple[list[Key], list[str]] | None = None
    """Where the archive pages now end and their digests, when that moved
    (`StateStore.feeds.keep_archive`)."""
    archive_pages: int | None = None
    """How many archive pages the feed has (None: archives are off)."""
    forget_thumbnails: list[str] = field(default_factory=list)
    """Images whose thumbnail files are gone or of another width."""
    wanted: set[str] = field(default_factory=set)
    """Images the page shows without a thumbnail."""
    shown: set[str] = field(default_factory=set)
    """Thumbnail files the page shows."""


class FeedRenderer:
    """Renders one feed at a time from a state and an output it only reads."""

    def __init__(self, config: Config, store: StateStore, out: Output) -> None:
        self.config = config
        self.store = store
        self.out = out

    def render(
        self, feed: Feed, catalog: Mapping[str, Topic], flt: FeedFilter, now: datetime
    ) -> Rendered:
        """Render `feed` in every format, its page, its archive and its digest.

        Raises `StateError` when the state cannot be read, `OutputError` for a path
        outside the output."""
        feeds, site = self.config.feeds, self.config.site
        done = Rendered()
        slug = feed.slug
        key = feed.key
        rows = []
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
            return done

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
        previous = self.store.feeds.feed_stamp(key)
        stamp = feed_stamp(previous, (e.id for e in plan.entries), plan.updated, now)
        if stamp != previous:
            done.stamp = stamp
        if stamp.floor is not None:
            later = stamp.updated != plan.updated  # it lost its newest: dated by the loss
            plan = structs.replace(plan, floor=stamp.floor)
            if later:
                data = render_atom(plan, site, feeds.max_related, hub)
        if feeds.archive:
            # What the current feed leaves out (or sheds for size) goes to the archive.
            layout = lay_out(rows, bounds, len(plan.entries), page_size)
            if layout.pages:
                history = History(prev=len(layout.pages))
                data = render_atom(plan, site, feeds.max_related, hub, history)
            self._archive(plan, catalog, layout, bounds, digests, entry, done)
        done.files.append((feed_path(slug), data))
        # The other formats carry the same entries, in the same order.
        ttl = max(1, self.config.cache_max_age // 60)
        options = FeedOptions(feeds.max_related, hub, ttl)
        for fmt in FEED_FORMATS:
            if fmt != ATOM and fmt in feeds.formats:
                done.files.append((feed_path(slug, fmt), renderer(fmt)(plan, site, options)))
        thumbs = self._thumbnails(plan, done)
        digest = digested(self.config, feed)
        if digest:
            self._digest(feed, flt, entry, now, done)
        page = render_topic_page(
            plan, site, feeds.formats, thumbs, feeds.max_related, digest=digest
        )
        done.files.append((page_path(slug), page))
        done.summary = plan.summary()
        return done

    def _digest(
        self,
        feed: Feed,
        flt: FeedFilter,
        entry: Callable[[StoredEntry], Entry],
        now: datetime,
        done: Rendered,
    ) -> None:
        """The digest feed of `feed` (see `aggregator.digests`): its closed days' top
        stories, from the entries the feed's filters let through (whatever their age)."""
        settings, site = self.config.digests, self.config.site
        zone = settings.zone
        start, end = window(now, zone, settings.days)
        span = structs.replace(
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
        done.files.append((digest_path(feed.slug), data))

    def _thumbnails(self, plan: FeedPlan, done: Rendered) -> dict[str, Thumbnail]:
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
            done.forget_thumbnails = [url for url in found if url not in present]
        done.wanted = {url for url in images if url not in present}
        done.shown = {t.path for t in present.values()}
        return present

    def _archive(
        self,
        plan: FeedPlan,
        catalog: Mapping[str, Topic],
        layout: Layout,
        bounds: Sequence[Key],
        digests: Sequence[str],
        entry: Callable[[StoredEntry], Entry],
        done: Rendered,
    ) -> None:
        """The archive pages whose entries changed, and where pages end."""
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
                done.unchanged += 1
                continue
            stored = self.store.entries.entries([row.entry_id for row in rows])
            page = FeedPlan(plan.feed, tuple(entry(e) for e in stored), len(stored))
            if not stored and number <= len(layout.bounds):  # a closed page emptied by removals
                page = structs.replace(page, floor=empty_page_date(layout.bounds[number - 1]))
            history = History(
                number=number,
                prev=number - 1 if number > 1 else None,
                next=number + 1 if number < last else None,
            )
            data = render_atom(page, site, self.config.feeds.max_related, None, history)
            done.files.append((path, data))
        if list(layout.bounds) != list(bounds) or kept != list(digests):
            done.archive = (list(layout.bounds), kept)
        done.archive_pages = last


def digested(config: Config, feed: Feed) -> bool:
    """Whether `feed` has a digest feed (`digests.enabled`: every topic feed has one)."""
    return config.digests.enabled and feed.key.kind == TOPIC_KIND


def stale_archive_pages(slug: str, pages: int) -> tuple[str, str, set[str]]:
    """(folder, suffix, the pages to keep) of the archive of `slug`, now `pages` long: pages
    past the last are stale (reopened, or laid out anew), and the server must not take the
    page before one of them for a closed page."""
    keep = {archive_path(slug, n) for n in range(1, pages + 1)}
    return archive_folder(slug), ARCHIVE_SUFFIX, keep


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


@dataclass(frozen=True)
class FeedJob:
    """Feeds for a worker process to render (`render_job`)."""

    reader: Callable[[], StateStore]
    """Opens the state read-only (`WorkerAccess.reader`)."""
    root: Path
    """The output directory (`OutputDir.root`), read only."""
    config: Config
    feeds: tuple[Feed, ...]
    catalog: Mapping[str, Topic]
    flt: FeedFilter
    now: datetime


def render_job(job: FeedJob) -> list[Rendered]:
    """`FeedRenderer.render` of each of the job's feeds in a worker process, on the state as
    `job.reader` opens it (once per process) and the output directory as it is on disk."""
    out = OutputDir(job.root)
    renderer_here = FeedRenderer(job.config, opened_here(job.reader), out)
    return [renderer_here.render(feed, job.catalog, job.flt, job.now) for feed in job.feeds]
