"""Daily digests: which days are closed, and which stories each day's digest lists (pure).

With `digests.enabled`, every topic feed has a digest feed beside it
(`feeds/<slug>/daily.atom`, see `digest_path`) holding one entry per closed day:

- a day is a calendar day in `digests.timezone`, from one midnight there to the
  next (as instants, so a day of a daylight-saving change is 23 or 25 hours
  long); it is *closed* once its second midnight has passed, so today never is;
- the feed keeps the newest `digests.days` closed days that have at least one
  story; a story belongs to the day its article was published in;
- a day's stories are its entries ranked by quality (none last), then by breadth
  of coverage (how many other outlets covered the story, see `breadth`), then
  newest first, then by id, cut to `digests.size`;
- a digest's id is a name-based UUID of the site's address, the topic's feed key
  and the date, and its `published` and `updated` are the moment its day closed:
  nothing here reads a clock, so the same state and `now` give the same digests.

The running service renders the digests again when the next day closes
(`next_close`), since no seed changes then.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from aggregator.defaults import DEFAULT_DIGEST_DAYS, DEFAULT_DIGEST_SIZE
from aggregator.feeds import FeedKey
from aggregator.formats import ATOM, FEED_FORMATS, FEEDS_FOLDER
from aggregator.model import Article
from aggregator.plan import Entry
from aggregator.stories import coverage, outlet
from aggregator.urls import host_of

DIGEST_NAME = "daily"
"""The file name (before the suffix) of a feed's digest, in the feed's own folder."""

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
"""Day names as titles show them (never the locale's)."""


def digest_path(slug: str) -> str:
    """Where the digest of the feed `slug` lives, relative to the output directory:
    `feeds/<slug>/daily.atom`, beside the feed's archive folder."""
    return f"{FEEDS_FOLDER}/{slug}/{DIGEST_NAME}{FEED_FORMATS[ATOM].suffix}"


def day_start(day: date, zone: tzinfo) -> datetime:
    """The instant `day` begins in `zone` (its midnight), in UTC. A midnight that a
    daylight-saving change skips is the instant of the change."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def day_close(day: date, zone: tzinfo) -> datetime:
    """The instant `day` closes in `zone`: the next day's midnight, in UTC."""
    return day_start(day + timedelta(days=1), zone)


def today(now: datetime, zone: tzinfo) -> date:
    """The day in `zone` that `now` (timezone-aware) falls in: the one whose midnight is
    the latest at or before `now`."""
    day = now.astimezone(zone).date()
    if day_start(day, zone) > now:
        day -= timedelta(days=1)
    elif day_close(day, zone) <= now:
        day += timedelta(days=1)
    return day


def last_close(now: datetime, zone: tzinfo) -> datetime:
    """When the latest closed day closed (today's midnight), in UTC."""
    return day_start(today(now, zone), zone)


def next_close(now: datetime, zone: tzinfo) -> datetime:
    """When today closes (the next midnight in `zone`), in UTC: the digests change then."""
    return day_close(today(now, zone), zone)


def closed_days(now: datetime, zone: tzinfo, days: int = DEFAULT_DIGEST_DAYS) -> list[date]:
    """The `days` latest closed days at `now`, newest first (yesterday first)."""
    current = today(now, zone)
    return [current - timedelta(days=n) for n in range(1, days + 1)]


def window(
    now: datetime, zone: tzinfo, days: int = DEFAULT_DIGEST_DAYS
) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the `days` latest closed days: the articles a digest feed
    may list were published in it."""
    current = today(now, zone)
    return day_start(current - timedelta(days=days), zone), day_start(current, zone)


def outlet_name(article: Article) -> str:
    """Who published the article, as readers are told: its provider's name, else its host."""
    if article.provider is not None:
        return article.provider.name
    return host_of(article.url) or article.url


def breadth(article: Article) -> int:
    """How many other outlets covered the story: the outlets (as `stories.outlet` tells
    them apart) of the entry's coverage (`stories.coverage`), the article's own left out."""
    shown = coverage(article, len(article.related))
    others = {outlet(related.provider, related.url) for related in shown}
    others.discard(outlet(article.provider, article.url))
    return len(others)


@dataclass(frozen=True, slots=True)
class Story:
    """One story of a digest: the entry, and how many other outlets covered it."""

    entry: Entry
    breadth: int


def _rank(story: Story) -> tuple[bool, float, int, float, str]:
    quality = story.entry.article.quality
    return (
        quality is None,
        -(quality or 0.0),
        -story.breadth,
        -story.entry.article.published.timestamp(),
        story.entry.id,
    )


def top_stories(entries: Iterable[Entry], size: int = DEFAULT_DIGEST_SIZE) -> tuple[Story, ...]:
    """The best `size` of `entries`: by quality (none last), then breadth of coverage, then
    newest first, then by id (so the order never depends on the input's)."""
    stories = sorted((Story(e, breadth(e.article)) for e in entries), key=_rank)
    return tuple(stories[:size])


@dataclass(frozen=True, slots=True)
class Digest:
    """One day's digest: one entry of a digest feed."""

    id: str
    day: date
    closed: datetime
    """When the day closed, in UTC: the entry's `published` and `updated`."""
    stories: tuple[Story, ...]
    """Best first; never empty."""

    @property
    def weekday(self) -> str:
        """The day's name: `Monday`."""
        return WEEKDAYS[self.day.weekday()]


def digest_id(public_url: str, feed: FeedKey, day: date) -> str:
    """The id of `feed`'s digest of `day`: a name-based UUID (v5) of the site's address, the
    feed's key and the ISO date, so it never changes while the site's address stays."""
    name = f"{public_url}#{feed}/{DIGEST_NAME}/{day.isoformat()}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


def digest_feed_id(public_url: str, feed: FeedKey) -> str:
    """The Atom id of `feed`'s digest feed: stable, and never the id of a feed itself
    (see `feeds.feed_id`)."""
    name = f"{public_url}#{feed}/{DIGEST_NAME}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


def plan_digests(
    public_url: str,
    feed: FeedKey,
    entries: Iterable[Entry],
    now: datetime,
    zone: tzinfo,
    size: int = DEFAULT_DIGEST_SIZE,
    days: int = DEFAULT_DIGEST_DAYS,
) -> tuple[Digest, ...]:
    """The digests of `feed` at `now`, newest first: one per closed day of the latest
    `days` that has a story among `entries` (entries of other days are left out)."""
    by_day: dict[date, list[Entry]] = {}
    bounds = [
        (day, day_start(day, zone), day_close(day, zone)) for day in closed_days(now, zone, days)
    ]
    for entry in entries:
        published = entry.article.published
        for day, start, end in bounds:
            if start <= published < end:
                by_day.setdefault(day, []).append(entry)
                break
    return tuple(
        Digest(digest_id(public_url, feed, day), day, end, top_stories(by_day[day], size))
        for day, _, end in bounds
        if day in by_day
    )


@dataclass(frozen=True, slots=True)
class DigestPlan:
    """One digest feed to render: the topic it is of and its digests."""

    slug: str
    """The topic feed's slug (the digest lives in its folder, see `digest_path`)."""
    key: FeedKey
    """The topic feed's key."""
    name: str
    """The topic's display name."""
    digests: tuple[Digest, ...]
    """Newest first."""
    last_close: datetime
    """When the latest closed day closed: the feed's `updated` while it has no digest."""

    @property
    def updated(self) -> datetime:
        """The feed's `updated`: its newest digest's, else the latest day's close."""
        return self.digests[0].closed if self.digests else self.last_close
