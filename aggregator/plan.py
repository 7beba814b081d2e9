"""What goes into a feed and how it is dated: pure decisions.

The state store selects and orders entries; the rules it applies and the
values it compares live here, as functions of data and `now`:

- which topic each spelling belongs to, its display name and slug (`topic_catalog`);
- what a reader sees of an entry, as a hash (`fingerprint`), and when that
  makes the entry `updated` (`ledger_update`);
- which articles the feed filters let through (`FeedFilter`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from aggregator.feeds import Feed, topic_feed
from aggregator.model import Article, Related, SeedRecord, article_to_json, dumps
from aggregator.stories import coverage, outlet
from aggregator.topics import Topic, TopicRules, assign_slugs, display_names
from aggregator.urls import entry_id

if TYPE_CHECKING:  # workers import this module; they need no config machinery
    from aggregator.config import FeedsConfig


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    article: Article
    topics: tuple[Topic, ...]
    updated: datetime
    link: str | None = None
    """The link to show when link checking chose another than the article's own."""
    _shown: dict[int, tuple[Related, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def url(self) -> str:
        return self.link or self.article.url

    def coverage(self, limit: int) -> tuple[Related, ...]:
        """`stories.coverage(article, limit)`, worked out once per limit: a feed's formats
        and its page show the same coverage of each entry."""
        shown = self._shown.get(limit)
        if shown is None:
            shown = self._shown[limit] = coverage(self.article, limit)
        return shown


def topic_feed_of(topic: Topic) -> Feed:
    """The feed of `topic`: keyed by the topic's key, written under its slug, named after it."""
    return Feed(topic_feed(topic.key), topic.slug, topic.name)


class FeedSummary(msgspec.Struct, frozen=True):
    """One feed as the index page and OPML list it."""

    feed: Feed
    total: int
    """Entries the feed has before `feeds.max_entries` caps it."""
    updated: datetime | None

    @property
    def slug(self) -> str:
        """The feed's slug (see `Feed.slug`)."""
        return self.feed.slug


class FeedPlan(msgspec.Struct, frozen=True):
    """One feed document to render: the feed and its entries."""

    feed: Feed
    entries: tuple[Entry, ...]
    """Newest published first, at most `feeds.max_entries`."""
    total: int
    floor: datetime | None = None
    """The latest moment the feed lost an entry, as the state recorded it (see `feed_stamp`)."""

    @property
    def updated(self) -> datetime | None:
        """The feed's `updated`: its newest entry `updated`, or the time it last lost an
        entry when that is later (never the build time)."""
        newest = max((e.updated for e in self.entries), default=None)
        if self.floor is None or (newest is not None and newest >= self.floor):
            return newest
        return self.floor

    @property
    def slug(self) -> str:
        """The feed's slug (see `Feed.slug`)."""
        return self.feed.slug

    def summary(self) -> FeedSummary:
        """What the index and OPML say of the feed."""
        return FeedSummary(self.feed, self.total, self.updated)


class FeedStamp(msgspec.Struct, frozen=True):
    """What the state keeps of a feed so that its `updated` never goes backwards."""

    ids: tuple[str, ...]
    """The ids of the entries the feed showed when last rendered, sorted."""
    floor: datetime | None
    """When it was last seen to lose an entry (or the `updated` it had then, if later)."""
    updated: datetime | None
    """The feed's `updated` when last rendered."""


def feed_stamp(
    previous: FeedStamp | None, ids: Iterable[str], newest: datetime | None, now: datetime
) -> FeedStamp:
    """The stamp of a feed now showing the entries `ids` (newest `updated`: `newest`) at `now`.

    A feed that lost an entry (deleted, gone to another topic, aged out, pushed
    out by newer ones) changed for its readers even though its newest entry may
    now be older: its floor moves to `now` (whole seconds), or to the `updated`
    it had, if that was later, so its `updated` never goes backwards. A feed
    with no entries and no floor yet (the feed of everything, built from no
    seeds) gets `now` as its floor: the moment it was first written empty, not
    the epoch readers would show. Rendering reads the stamp from the state and
    never the clock, so the same state gives the same bytes.
    """
    current = tuple(sorted(set(ids)))
    floor = previous.floor if previous else None
    if previous is not None and not set(previous.ids) <= set(current):
        moments = [now.replace(microsecond=0), previous.floor, previous.updated]
        floor = max(m for m in moments if m is not None)
    if floor is None and newest is None:
        floor = now.replace(microsecond=0)
    updated = newest if floor is None or (newest is not None and newest >= floor) else floor
    return FeedStamp(current, floor, updated)


def to_micros(moment: datetime) -> int:
    """A UTC datetime as integer microseconds since the epoch: the stored, sortable form."""
    delta = moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


FUTURE_TOLERANCE = timedelta(days=1)
"""Articles dated further ahead wait until then: a typo'd 9999 must not top every feed."""


def falls_due(held_back_us: int | None) -> datetime | None:
    """When the earliest article held back for being dated too far ahead (published at
    `held_back_us`; None: there is none) may be published: a running service renders
    the feeds then, since no seed changes to make it look."""
    if held_back_us is None:
        return None
    return (
        datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=held_back_us) - FUTURE_TOLERANCE
    )


class FeedFilter(msgspec.Struct, frozen=True, gc=False):
    min_quality: float
    published_after_us: int | None
    require_published: bool
    published_before_us: int

    def any_age(self) -> FeedFilter:
        """The same filter without `feeds.max_age_days`: what the archive keeps (an article
        that ages out of a feed goes into its history, not out of it)."""
        return FeedFilter(self.min_quality, None, self.require_published, self.published_before_us)

    @classmethod
    def of(cls, feeds: FeedsConfig, now: datetime) -> FeedFilter:
        cutoff = to_micros(now - timedelta(days=feeds.max_age_days)) if feeds.max_age_days else None
        return cls(
            feeds.min_quality,
            cutoff,
            feeds.require_published,
            to_micros(now + FUTURE_TOLERANCE),
        )


def topic_catalog(
    spellings: Iterable[tuple[str, int]],
    rules: TopicRules,
    slugs: Mapping[str, str] | None = None,
) -> dict[str, Topic]:
    """Every topic, by key, from the spellings seeds use and how often.

    `slugs` holds the slugs assigned before (key → slug); topics keep them.
    """
    resolved: list[tuple[str, str, int]] = []
    for spelling, count in spellings:
        hit = rules.resolve(spelling)
        if hit is not None:
            resolved.append((hit[0], hit[1], count))
    return assign_slugs(display_names(resolved, rules), slugs)


LEDGER_RULES = "2"
"""What the ledger's hashes are made of (`shown_hash`, `fingerprint`); when the state
recorded other rules, the next refresh writes every hash anew without dating any entry
anew (see `ledger_update`). 2: the outlets of the coverage, not its titles and URLs."""


def shown_hash(article: Article) -> str:
    """A hash of what a reader sees of an article, apart from its topics.

    Of the related articles (the coverage), the outlets they are from (see
    `stories.outlet`): an article from a new outlet on the story moves `updated`; another
    from an outlet it names already, or a related article's new title, excerpt, date,
    quality or provider name, or the article's `language`, does not.
    """
    own = article.id
    outlets = {outlet(r.provider, r.url) for r in article.related if entry_id(r.url) != own}
    shown = [
        article.title,
        article.excerpt,
        article.url,
        [article.provider.name, article.provider.domain] if article.provider else None,
        [[i.url, i.width, i.height] for i in article.images],
        sorted(outlets),
        article.published.isoformat(),
    ]
    # `model.dumps`, byte for byte what json.dumps writes here (no float in `shown`).
    data = dumps(shown).encode("utf-8")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def fingerprint(
    shown: str, topic_keys: Iterable[str], link: str | None = None, outlets: Iterable[str] = ()
) -> str:
    """The ledger's content hash of an entry: what readers see, categories included.

    `link` is the link shown when link checking replaced the article's own, `outlets`
    the outlets a story's coverage shows beyond what its lead's seed names (see
    `stories.new_outlets`). An entry's `updated` moves when, and only when, this changes.
    """
    parts = [shown, *sorted(topic_keys)]
    if link is not None:
        parts.append("\x1elink:" + link)
    parts.extend("\x1eoutlet:" + name for name in sorted(outlets))
    data = "\x1f".join(parts).encode("utf-8")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def to_record(article: Article) -> SeedRecord:
    """The stored form of an article, with the columns feeds filter and sort on."""
    return SeedRecord(
        entry_id=article.id,
        article_json=article_to_json(article),
        topics=article.topics,
        published_us=to_micros(article.published),
        quality=article.quality,
        is_published=article.is_published,
        shown=shown_hash(article),
        original_url=article.original_url,
        web_url=article.web_url,
        related_ids=tuple(sorted({entry_id(r.url) for r in article.related} - {article.id})),
    )


class LedgerRow(msgspec.Struct, frozen=True, gc=False):
    content_hash: str
    first_seen: datetime
    updated: datetime


def ledger_update(
    previous: LedgerRow | None,
    content_hash: str,
    published: datetime,
    now: datetime,
    rehash: bool = False,
) -> LedgerRow:
    """The ledger row of an entry after seeing its content (hash) at `now`.

    A new entry is `updated` when it was published; afterwards `updated` moves
    to the moment a change was seen, and only when what readers see changed. It
    is never before `published` (an edit can move the date ahead, up to the day a
    future date is shown early). With `rehash` (the hashes are made another way
    now: see `LEDGER_RULES`), a known entry takes the new hash and keeps its dates.
    """
    if previous is None:
        return LedgerRow(content_hash, now, published)
    if previous.content_hash == content_hash:
        return previous
    if rehash:
        return LedgerRow(content_hash, previous.first_seen, previous.updated)
    return LedgerRow(content_hash, previous.first_seen, max(now, previous.updated, published))
