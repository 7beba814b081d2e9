"""The typed rows that cross the storage seam (no positional tuples), the one rule
every engine shares (which thumbnails are due), and how the SQL engines keep a feed's
stamp and archive record in columns."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import msgspec
from msgspec import structs

from aggregator.archive import Key
from aggregator.entries import Decision, from_micros
from aggregator.feeds import TOPIC_KIND, FeedKey
from aggregator.model import Article, article_from_json, related_from_json
from aggregator.plan import FeedStamp, to_micros


class StoredEntry(msgspec.Struct, frozen=True):
    """One entry as the feeds show it."""

    id: str
    article: Article
    feeds: frozenset[FeedKey]
    """The feeds the entry is in, of the kinds that store their members (not `all`)."""
    updated: datetime
    link: str | None = None
    """The link shown when link checking replaced the article's own; None: its own."""

    @property
    def topic_keys(self) -> tuple[str, ...]:
        """Keys of the topics the entry is in, sorted."""
        return tuple(sorted(f.key for f in self.feeds if f.kind == TOPIC_KIND))


@dataclass(frozen=True, slots=True)
class Counts:
    """How many seed files, entries and rejected seeds the store holds."""

    seeds: int
    entries: int
    rejected: int


class Rejected(NamedTuple):
    """A seed whose current content is rejected."""

    source: str
    reason: str


class Duplicate(NamedTuple):
    """A seed holding an article another seed's copy is used for."""

    source: str
    used: str
    """The source of the copy used instead."""


class Member(NamedTuple):
    """An article in a story, as the state records it."""

    article: str
    """The article's id (`urls.entry_id` of its URL)."""
    story: str
    """The id of its story's entry."""
    source: str
    """The seed whose copy of the article is used."""
    provider: str | None
    """The article's provider (registrable domain), if it has one."""


class SpellingCount(NamedTuple):
    """A topic spelling in use, and how many seeds use it."""

    spelling: str
    seeds: int


def thumbnails_due(
    wanted: Sequence[str], known: Mapping[str, tuple[str | None, int]], cutoff: int, limit: int
) -> list[str]:
    """Of `wanted` (no repeats), at most `limit` to fetch: those never tried, in order, then
    those without a file whose next try (`known`: url → (file, next_try_us)) is at or before
    `cutoff`, longest due first."""
    fresh = [u for u in wanted if u not in known]
    retry = sorted(
        (u for u in wanted if u in known and known[u][0] is None and known[u][1] <= cutoff),
        key=lambda u: known[u][1],
    )
    return (fresh + retry)[:limit]


def story_article(article_json: str, related: str | None) -> Article:
    """The article an entry shows: its lead's (`article_json`), with the story's coverage
    (`EntryColumns.related`) when it has one."""
    article = article_from_json(article_json)
    if related is None:
        return article
    return structs.replace(article, related=related_from_json(related))


# -- how the SQL engines keep a feed's stamp and archive record in columns ---------------


def stamp_columns(stamp: FeedStamp) -> tuple[str, int | None, int | None]:
    """A feed stamp as the SQL engines store it: (ids as JSON, floor_us, updated_us)."""
    return (
        json.dumps(list(stamp.ids), separators=(",", ":")),
        None if stamp.floor is None else to_micros(stamp.floor),
        None if stamp.updated is None else to_micros(stamp.updated),
    )


def stamp_of(ids: str, floor_us: int | None, updated_us: int | None) -> FeedStamp:
    """The feed stamp `stamp_columns` stored. Raises ValueError on columns it did not write."""
    return FeedStamp(
        tuple(json.loads(ids)),
        None if floor_us is None else from_micros(floor_us),
        None if updated_us is None else from_micros(updated_us),
    )


def archive_columns(bounds: Sequence[Key], digests: Sequence[str]) -> tuple[str, str]:
    """An archive record as the SQL engines store it: (bounds as JSON, digests as JSON)."""
    return json.dumps([list(b) for b in bounds]), json.dumps(list(digests))


def archive_of(bounds: str, digests: str) -> tuple[list[Key], list[str]]:
    """The archive record `archive_columns` stored: (closed-page bounds, page digests)."""
    return [(int(us), str(i)) for us, i in json.loads(bounds)], list(json.loads(digests))


class EntryRows(NamedTuple):
    """What an engine's `EntryStore.apply` writes for some decisions, as rows
    (`entry_rows`)."""

    gone: list[str]
    """Entries to delete, with their feed memberships."""
    ledger: list[tuple[str, str, int, int]]
    entries: list[tuple[object, ...]]
    moved: list[str]
    """Entries whose feed memberships are written anew (`feeds`) and that held some before:
    those are deleted first."""
    feeds: list[tuple[str, str, str]]


def entry_rows(decisions: Sequence[Decision]) -> EntryRows:
    """The rows `apply` writes for `decisions`, in the column order of the SQL engines'
    tables: built apart from the writing, they can be built in another process (plain
    tuples pickle cheaply)."""
    return EntryRows(
        [d.entry_id for d in decisions if d.columns is None and d.write_columns],
        [
            (d.entry_id, r.content_hash, to_micros(r.first_seen), to_micros(r.updated))
            for d in decisions
            if (r := d.ledger) is not None
        ],
        [
            (
                d.entry_id,
                c.source,
                c.published_us,
                c.quality,
                None if c.is_published is None else int(c.is_published),
                c.original_url,
                c.web_url,
                c.link,
                int(c.hidden),
                c.related,
            )
            for d in decisions
            if d.write_columns and (c := d.columns) is not None
        ],
        [d.entry_id for d in decisions if d.write_feeds and d.had_feeds and d.columns is not None],
        [
            (feed.kind, feed.key, d.entry_id)
            for d in decisions
            if d.write_feeds and d.columns is not None
            for feed in sorted(d.feeds)
        ],
    )
