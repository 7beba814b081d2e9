"""Thumbnails: which images the pages show without one, and keeping what was fetched.

    plan (each feed's current page in the state → first image of each entry,
          minus those with a thumbnail file, minus paused hosts, minus those not due)
        → fetch (aggregator.checker, the caller's) → apply (make, write, keep or note)

The plan is read from the state, not from a render: a fresh process can plan a
fetch before it renders anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from aggregator.config import Config, LinksConfig
from aggregator.feeds import FeedKey
from aggregator.ingest import topic_rules
from aggregator.linkjob import note_pauses, stored_pauses
from aggregator.links import Request, RunResult, is_paused
from aggregator.output import Output
from aggregator.plan import FeedFilter
from aggregator.publish import feed_listing, provider_catalog_of, topic_catalog_of
from aggregator.store import StateStore
from aggregator.thumbs import (
    HEADER_BYTES,
    ThumbnailError,
    make_thumbnail,
    retry_delay,
    thumbnail_path,
    webp_size,
)

IMAGE_FETCHES = 8
"""Image fetches in flight at most: each keeps a body of up to `thumbnails.max_bytes`."""


@dataclass
class ThumbnailReport:
    """What one thumbnail run made and what failed."""

    made: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(image URL, why) of each image that gave no thumbnail."""
    feeds: set[FeedKey] = field(default_factory=set)
    """The feeds whose pages can now show more thumbnails."""
    tried: int = 0
    """Images asked for (0: nothing was due, or the run was stopped before it began)."""
    written: list[str] = field(default_factory=list)
    """Files the pages that gained thumbnails were rendered to, when their bytes changed."""


def image_fetching(config: Config) -> LinksConfig:
    """Returns the link checker's rules for fetching images: the same safety, fewer at once."""
    concurrency = min(config.links.concurrency, IMAGE_FETCHES)
    return msgspec.structs.replace(config.links, concurrency=concurrency)


class ThumbnailJob:
    """Plans image fetches from the state and keeps the thumbnails made of them."""

    def __init__(self, config: Config, store: StateStore, out: Output) -> None:
        self.store = store
        self.out = out
        self.reconfigure(config)
        self._planned: dict[str, set[FeedKey]] = {}
        """Image URL → the feeds whose pages show it, at the last plan."""

    def reconfigure(self, config: Config) -> None:
        """Use a new config from the next plan on."""
        self.config = config
        self.rules = topic_rules(config)

    @property
    def settings(self) -> LinksConfig:
        """The checker's settings for fetching images (`image_fetching`)."""
        return image_fetching(self.config)

    def wanted(self, now: datetime) -> dict[str, set[FeedKey]]:
        """Returns image URL → the feeds whose current page shows the
        image and no thumbnail of it yet, in the order the pages show them.

        A thumbnail whose file is gone (or of another width) is forgotten here, so that it
        is fetched again. Raises `StateError` when the state file cannot be used."""
        store = self.store
        shown = self.shown(now)
        width = self.config.thumbnails.width
        found = store.thumbnails.thumbnails(shown)
        gone = []
        for url, file in found.items():
            head = self.out.head(file, HEADER_BYTES) if file == thumbnail_path(url, width) else None
            if head is not None and webp_size(head) is not None:
                del shown[url]
            else:
                gone.append(url)
        if gone:  # files deleted, or another width: fetch them again
            store.thumbnails.forget_thumbnails_of(gone)
        return shown

    def shown(self, now: datetime) -> dict[str, set[FeedKey]]:
        """Returns image URL → the feeds whose current page (in the state) shows the image
        first for its entry, in the order the pages show them. Raises `StateError` when the
        state file cannot be read."""
        feeds, store = self.config.feeds, self.store
        flt = FeedFilter.of(feeds, now)
        shown: dict[str, set[FeedKey]] = {}
        providers = provider_catalog_of(store) if feeds.providers else {}
        listing = feed_listing(topic_catalog_of(store, self.rules), providers)
        for key in (feed.key for feed in listing):
            newer_than = None
            if feeds.archive:  # the current page holds what is newer than the last closed one
                bounds, _ = store.feeds.archive(key)
                newer_than = bounds[-1] if bounds else None
            entries, _ = store.entries.feed_page(key, flt, feeds.max_entries, newer_than)
            for entry in entries:
                if entry.article.images:
                    shown.setdefault(entry.article.images[0].url, set()).add(key)
        return shown

    def plan(self, now: datetime, limit: int) -> list[Request]:
        """Returns the images the pages want a thumbnail of, never tried first, then failed
        ones due again (at most `limit`). Raises `StateError` as `wanted` does."""
        if not self.config.thumbnails.enabled:
            self._planned = {}
            return []
        self._planned = self.wanted(now)
        keep = self.config.thumbnails.max_bytes
        pauses = stored_pauses(self.store)
        urls = [url for url in self._planned if not is_paused(url, pauses, now)]
        return [
            Request(url, keep=keep)
            for url in self.store.thumbnails.thumbnails_due(urls, now, limit)
        ]

    def apply(self, result: RunResult, now: datetime) -> ThumbnailReport:
        """Make and keep thumbnails of what was fetched; note what failed, to try later.

        Returns what was made and which feeds' pages can show more. Raises `OutputError`
        or `StateError` when a thumbnail cannot be written or kept."""
        report = ThumbnailReport()
        note_pauses(self.store, result, now)
        width = self.config.thumbnails.width
        failed: list[tuple[str, str]] = []
        made: list[str] = []
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
            self.store.thumbnails.keep_thumbnail(attempt.url, file)
            report.made += 1
            made.append(attempt.url)
        if made:
            # Entries may have moved between feeds while the images were fetched (the
            # lock is not held then): the pages that show them now are rendered too.
            shown = self.shown(now)
            for url in made:
                report.feeds.update(self._planned.pop(url, set()) | shown.get(url, set()))
        tries = self.store.thumbnails.thumbnail_tries([url for url, _ in failed])
        for url, why in failed:
            self.store.thumbnails.thumbnail_failed(
                url, why, tries[url] + 1, now + retry_delay(tries[url] + 1)
            )
        report.failed = failed
        for url, seconds in result.deferred.items():  # the host asked for a pause
            later = now + max(timedelta(seconds=seconds), retry_delay(1))
            self.store.thumbnails.thumbnail_failed(url, "the host asked to wait", 0, later)
        return report
