"""Which entries go into which feed, in what order: pure decisions.

Articles in, a `Catalog` out: duplicates merged into one entry, filters
applied, topics resolved, each feed's entries newest first and capped. Takes
`now` as an argument (for `max_age_days`) and reads no clock, file or config
file, so the same input always plans the same feeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from aggregator.config import FeedsConfig
from aggregator.model import Article
from aggregator.topics import ALL_SLUG, Topic, TopicRules, assign_slugs, display_names


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    article: Article
    topics: tuple[Topic, ...]
    updated: datetime


@dataclass(frozen=True, slots=True)
class FeedPlan:
    slug: str
    topic: Topic | None
    """None for the feed of all articles."""
    entries: tuple[Entry, ...]
    """Newest first, at most `feeds.max_entries`."""
    total: int
    """Entries the topic has before the cap."""

    @property
    def updated(self) -> datetime | None:
        return self.entries[0].updated if self.entries else None


@dataclass(frozen=True, slots=True)
class Duplicate:
    source: str
    kept: str
    """The seed whose copy of the same article is used instead."""


@dataclass(frozen=True, slots=True)
class Catalog:
    feeds: tuple[FeedPlan, ...]
    """The `all` feed first, then one per topic, by slug."""
    duplicates: tuple[Duplicate, ...] = ()
    filtered: int = 0
    """Articles left out by `min_quality`, `max_age_days` or `require_published`."""

    @property
    def topics(self) -> tuple[FeedPlan, ...]:
        return self.feeds[1:]


def merge_duplicates(
    articles: Iterable[Article],
) -> tuple[dict[str, list[Article]], list[Duplicate]]:
    """Group copies of one article (same normalized URL) and put the one to use first.

    The copy from the seed whose path sorts first is used, whatever order the
    seeds were read in.
    """
    groups: dict[str, list[Article]] = {}
    for article in articles:
        groups.setdefault(article.id, []).append(article)
    duplicates: list[Duplicate] = []
    for copies in groups.values():
        if len(copies) > 1:
            copies.sort(key=lambda a: a.source)
            duplicates.extend(Duplicate(c.source, copies[0].source) for c in copies[1:])
    return groups, duplicates


def passes_filters(article: Article, feeds: FeedsConfig, now: datetime) -> bool:
    if feeds.min_quality > 0 and (article.quality or 0) < feeds.min_quality:
        return False
    if feeds.require_published and article.is_published is not True:
        return False
    return not (feeds.max_age_days and article.published < now - timedelta(days=feeds.max_age_days))


def newest_first(entry: Entry) -> tuple[float, str]:
    return (-entry.updated.timestamp(), entry.id)


def plan_feeds(
    articles: Iterable[Article],
    feeds: FeedsConfig,
    rules: TopicRules,
    now: datetime,
    updated: Mapping[str, datetime] | None = None,
) -> Catalog:
    """Plan every feed. `updated` maps entry ids to their last change (default: published)."""
    groups, duplicates = merge_duplicates(articles)
    kept: list[tuple[str, list[Article]]] = []
    filtered = 0
    for entry_id, copies in groups.items():
        if passes_filters(copies[0], feeds, now):
            kept.append((entry_id, copies))
        else:
            filtered += 1

    spellings: list[tuple[str, str]] = []
    entry_keys: dict[str, list[str]] = {}
    for entry_id, copies in kept:
        keys: list[str] = []
        for copy in copies:
            for name in copy.topics:
                resolved = rules.resolve(name)
                if resolved is not None:
                    spellings.append(resolved)
                    if resolved[0] not in keys:
                        keys.append(resolved[0])
        entry_keys[entry_id] = keys
    topics = assign_slugs(display_names(spellings, rules))

    entries = [
        Entry(
            id=entry_id,
            article=copies[0],
            topics=tuple(sorted((topics[k] for k in entry_keys[entry_id]), key=lambda t: t.name)),
            updated=(updated or {}).get(entry_id, copies[0].published),
        )
        for entry_id, copies in kept
    ]
    entries.sort(key=newest_first)
    by_topic: dict[str, list[Entry]] = {}
    for entry in entries:
        for topic in entry.topics:
            by_topic.setdefault(topic.key, []).append(entry)

    cap = feeds.max_entries
    plans = [FeedPlan(ALL_SLUG, None, tuple(entries[:cap]), len(entries))]
    for topic in sorted(topics.values(), key=lambda t: t.slug):
        members = by_topic.get(topic.key, [])
        if members:
            plans.append(FeedPlan(topic.slug, topic, tuple(members[:cap]), len(members)))
    return Catalog(tuple(plans), tuple(duplicates), filtered)
