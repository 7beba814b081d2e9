"""The typed rows that cross the storage seam (no positional tuples)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from aggregator.feeds import TOPIC_KIND, FeedKey
from aggregator.model import Article


@dataclass(frozen=True, slots=True)
class StoredEntry:
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


class SpellingCount(NamedTuple):
    """A topic spelling in use, and how many seeds use it."""

    spelling: str
    seeds: int
