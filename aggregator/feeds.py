"""Which feeds there are: every feed is keyed by its kind and a key within that kind.

    FeedKey("all")              the feed of every article (one feed of its kind)
    FeedKey("topic", "<key>")   one feed per topic, keyed by the topic's key

A kind is one entry of `KINDS`: whether its feeds take every entry or only the
entries it names (`members`, a pure function of what is known of an entry). The
store keeps, per entry, the feeds it is in (kind, key) and never decides them;
renderers, pages and the server see a `FeedKey`, never a `Topic | None`.

No third-party imports: the server, workers and the store all read this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class FeedKey:
    """The identity of one feed: its kind and its key within the kind ("" for `all`)."""

    kind: str
    key: str = ""

    def __str__(self) -> str:
        return self.kind if not self.key else f"{self.kind}:{self.key}"


@dataclass(frozen=True, slots=True)
class EntryFacts:
    """What the feed kinds may look at to tell which of their feeds an entry is in."""

    topics: frozenset[str]
    """Keys of the topics the entry is in, after the config's topic rules."""


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of feed."""

    name: str
    every_entry: bool
    """True: the kind's one feed holds every entry (nothing is stored per entry)."""
    members: Callable[[EntryFacts], Iterable[str]]
    """Keys of the feeds of this kind that an entry is in."""


def _nothing(_: EntryFacts) -> Iterable[str]:
    return ()


def _topics(facts: EntryFacts) -> Iterable[str]:
    return facts.topics


ALL_KIND = "all"
TOPIC_KIND = "topic"

KINDS: dict[str, Kind] = {
    ALL_KIND: Kind(ALL_KIND, every_entry=True, members=_nothing),
    TOPIC_KIND: Kind(TOPIC_KIND, every_entry=False, members=_topics),
}
"""Every kind of feed, by name."""

ALL = FeedKey(ALL_KIND)
"""The feed of every article."""


def topic_feed(key: str) -> FeedKey:
    """The key of a topic's feed."""
    return FeedKey(TOPIC_KIND, key)


def memberships(facts: EntryFacts) -> frozenset[FeedKey]:
    """Every feed an entry is in, of the kinds that store their members (not `all`)."""
    return frozenset(
        FeedKey(kind.name, key)
        for kind in KINDS.values()
        if not kind.every_entry
        for key in kind.members(facts)
    )


def feed_key(topic_key: str | None) -> FeedKey:
    """The key of a topic's feed, or of `all` for None (for callers still holding a
    `Topic | None`)."""
    return ALL if topic_key is None else topic_feed(topic_key)
