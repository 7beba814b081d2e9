"""Which feeds there are: every feed is keyed by its kind and a key within that kind.

    FeedKey("all")              the feed of every article (one feed of its kind)
    FeedKey("topic", "<key>")   one feed per topic, keyed by the topic's key
    FeedKey("provider", "<domain>")  one feed per provider, keyed by its registrable
                                domain (see `aggregator.providers`)

A kind is one entry of `KINDS`: whether its feeds take every entry or only the
entries it names (`members`, a pure function of what is known of an entry), and
everything the renderers and pages say that depends on the kind (a feed's title,
what it is "of", its name on pages, its Atom id, which OPML file lists it, where
it comes in the index). The store keeps, per entry, the feeds it is in (kind,
key) and never decides them; renderers and pages see a `Feed` (its `FeedKey`,
slug and display name), never a `Topic | None`.

Adding a kind is one entry of `KINDS` (and, if its feeds are not to be listed in
an OPML file that is written already, the writing of its own).

No third-party imports: the server, workers and the store all read this.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

import msgspec

FEEDS_OPML = "feeds.opml"
"""The OPML file of the topic feeds, in one folder (see `pages.render_opml`)."""
ALL_OPML = "all.opml"
"""The OPML file of the feed of everything, on its own (see `pages.render_all_opml`)."""
PROVIDERS_OPML = "providers.opml"
"""The OPML file of the provider feeds (see `pages.render_providers_opml`)."""
INDEX_PAGE = "index.html"
"""The home page: it lists the feeds of the kinds whose `page` it is."""
PROVIDERS_PAGE = "providers.html"
"""The page that lists the provider feeds (the home page links to it)."""


class FeedKey(msgspec.Struct, frozen=True, order=True, gc=False):
    """The identity of one feed: its kind and its key within the kind ("" for `all`)."""

    kind: str
    key: str = ""

    def __str__(self) -> str:
        return self.kind if not self.key else f"{self.kind}:{self.key}"


class EntryFacts(msgspec.Struct, frozen=True):
    """What the feed kinds may look at to tell which of their feeds an entry is in."""

    topics: frozenset[str]
    """Keys of the topics the entry is in, after the config's topic rules."""
    providers: frozenset[str] = frozenset()
    """The providers of the entry's articles (registrable domains: see
    `aggregator.providers`): a story's entry is in the feed of each of its outlets."""


class Kind(msgspec.Struct, frozen=True):
    """One kind of feed: which entries its feeds hold, and what pages and feeds call them.

    Its feeds' Atom ids are made from their `FeedKey` (see `feed_id`), so a kind's
    `name` is for good: renaming it gives every feed of the kind a new id.
    """

    name: str
    every_entry: bool
    """True: the kind's one feed holds every entry (nothing is stored per entry)."""
    members: Callable[[EntryFacts], Iterable[str]]
    """Keys of the feeds of this kind that an entry is in."""
    title: str = "{name}"
    """What a feed of this kind is called after the site's title (`<site>: <title>`), as a
    template: `{name}` is the feed's display name (see `Feed.name`)."""
    about: str = "Articles on {name}"
    """What the feed's articles are (`<about>, newest first` in its description), a template."""
    heading: str = "{name}"
    """The feed's name on its page, in the index and in OPML outlines, a template."""
    opml: str = FEEDS_OPML
    """The OPML file (relative to the output directory) that lists the kind's feeds."""
    page: str = INDEX_PAGE
    """The page (relative to the output directory) that lists the kind's feeds."""
    written_empty: bool = False
    """True: its feeds are written even with no entries (the site always has them); False:
    a feed with no entries is not written (and its files go)."""

    def text(self, template: str, feed: Feed) -> str:
        """`template` (one of the kind's) filled in for `feed`: `{name}` and `{key}` (the
        values are text, never templates). Raises KeyError when it names another field."""
        return template.format(name=feed.name, key=feed.key.key)


class Feed(msgspec.Struct, frozen=True, gc=False):
    """One feed as the renderers and pages see it: what it is and where its files live."""

    key: FeedKey
    slug: str
    """The only part of the feed that reaches a file name (see `topics.assign_slugs`); a
    provider feed's holds its folder: `providers/<domain>` (see `providers.provider_slug`)."""
    name: str = ""
    """The display name of what the feed is of (a topic's name); "" for the `all` feed."""

    @property
    def kind(self) -> Kind:
        """The feed's kind (KeyError: a kind `KINDS` does not have)."""
        return KINDS[self.key.kind]

    @property
    def title(self) -> str:
        """What the feed is called after the site's title: a topic's name, `all topics`."""
        return self.kind.text(self.kind.title, self)

    @property
    def about(self) -> str:
        """What its articles are: `Articles on <topic>`, `Articles from <provider>`."""
        return self.kind.text(self.kind.about, self)

    @property
    def heading(self) -> str:
        """Its name on pages and in OPML outlines: a topic's name, `All topics`."""
        return self.kind.text(self.kind.heading, self)

    @property
    def order(self) -> tuple[int, str]:
        """Where the feed comes in the index: by kind (in `KINDS` order), then by slug.
        Raises ValueError for a kind `KINDS` does not have."""
        return (list(KINDS).index(self.key.kind), self.slug)


def feed_id(public_url: str, key: FeedKey) -> str:
    """A stable Atom feed id: a name-based UUID (v5) of the site's address and the feed's
    key (`<url>#all`, `<url>#topic:<key>`), so it never changes while both stay."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{public_url}#{key}')}"


def _nothing(_: EntryFacts) -> Iterable[str]:
    return ()


def _topics(facts: EntryFacts) -> Iterable[str]:
    return facts.topics


def _provider(facts: EntryFacts) -> Iterable[str]:
    return facts.providers


ALL_KIND = "all"
TOPIC_KIND = "topic"
PROVIDER_KIND = "provider"

KINDS: dict[str, Kind] = {
    ALL_KIND: Kind(
        ALL_KIND,
        every_entry=True,
        members=_nothing,
        title="all topics",
        about="Articles on every topic",
        heading="All topics",
        opml=ALL_OPML,
        written_empty=True,
    ),
    TOPIC_KIND: Kind(TOPIC_KIND, every_entry=False, members=_topics),
    PROVIDER_KIND: Kind(
        PROVIDER_KIND,
        every_entry=False,
        members=_provider,
        about="Articles from {name}",
        opml=PROVIDERS_OPML,
        page=PROVIDERS_PAGE,
    ),
}
"""Every kind of feed, by name, in the order the index lists their feeds."""

ALL = FeedKey(ALL_KIND)
"""The feed of every article."""

ALL_SLUG = "all"
"""The slug of the feed of every article; no topic can take it."""

ALL_FEED = Feed(ALL, ALL_SLUG)
"""The feed of every article, as renderers see it."""


def topic_feed(key: str) -> FeedKey:
    """The key of a topic's feed."""
    return FeedKey(TOPIC_KIND, key)


def provider_feed(key: str) -> FeedKey:
    """The key of a provider's feed (`key`: its registrable domain)."""
    return FeedKey(PROVIDER_KIND, key)


def memberships(facts: EntryFacts) -> frozenset[FeedKey]:
    """Every feed an entry is in, of the kinds that store their members (not `all`)."""
    return frozenset(
        FeedKey(kind.name, key)
        for kind in KINDS.values()
        if not kind.every_entry
        for key in kind.members(facts)
    )
