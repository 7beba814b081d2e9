"""What an entry is, decided from its seeds, its feeds' rules and its links: pure functions.

    pick_copies     which copy of a duplicate article is used (the first by source path)
    decide          an entry after its seeds, topics and link verdicts: its stored row,
                    its ledger row, and whether anything readers can see changed
    visible_change  whether a new link state can change what a feed shows

No I/O and no clock (`now` is passed in): the store persists what these
decide, and `aggregator.refresh` moves the rows between the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
from msgspec import structs

from aggregator.feeds import EntryFacts, FeedKey, memberships
from aggregator.links import LinkRules, LinkState, Outcome, effective_link
from aggregator.plan import LedgerRow, fingerprint, ledger_update


def from_micros(value: int) -> datetime:
    """Integer microseconds since the epoch (the stored form) as a UTC datetime."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


class SeedCopy(msgspec.Struct, frozen=True, gc=False):
    """One good seed's copy of an article: what deciding its entry needs."""

    entry_id: str
    source: str
    published_us: int
    quality: float | None
    is_published: bool | None
    shown: str
    """Hash of what readers see of the article (topics aside)."""
    original_url: str | None
    web_url: str | None
    provider_domain: str | None = None
    """The seed's `provider.domain`, as written (see `aggregator.providers.provider_key`)."""


class EntryColumns(msgspec.Struct, frozen=True, gc=False):
    """What the store keeps of an entry besides its feeds: the copy used and the columns
    the feeds filter and order on."""

    source: str
    published_us: int
    quality: float | None
    is_published: bool | None
    original_url: str | None
    web_url: str | None
    link: str | None
    """The link shown when link checking replaced the article's own; None: its own."""
    hidden: bool
    """True: every link of the entry is dead (or `drop` applies): no feed shows it."""
    related: str | None = None
    """A story's coverage (its other members and their related articles, see
    `stories.story_related`) as stored (`model.related_to_json`); None: a lone article,
    whose coverage is its own related articles."""


class StoryFacts(msgspec.Struct, frozen=True, gc=False):
    """What an entry takes from the other articles of its story."""

    providers: frozenset[str] = frozenset()
    """The providers (registrable domains) of all its articles: it is in their feeds."""
    related: str | None = None
    """See `EntryColumns.related`."""
    outlets: tuple[str, ...] = ()
    """The outlets its coverage shows beyond what the lead's seed names (see
    `stories.new_outlets`): one more dates the entry anew."""


LONE = StoryFacts()
"""A lone article with no provider."""


class Decision(msgspec.Struct, frozen=True):
    """What becomes of one entry."""

    entry_id: str
    columns: EntryColumns | None
    """The entry's row after the decision; None: the entry is gone (no good seed left)."""
    feeds: frozenset[FeedKey]
    """The feeds (of kinds that store members) the entry is in after the decision."""
    ledger: LedgerRow | None
    """The ledger row to write; None: the stored one stays as it is."""
    write_columns: bool
    """True: the row (`columns`, or its removal) must be written."""
    write_feeds: bool
    """True: the entry's feed memberships must be written anew."""
    touched: frozenset[FeedKey]
    """The feeds whose content may have changed (empty: nothing changed)."""
    had_feeds: bool = True
    """Whether the store held feed memberships of the entry before: when it held none (a
    new entry), writing them anew deletes nothing first."""

    @property
    def changed(self) -> bool:
        """True when the entry was added, removed, or changed in content, feeds or filters."""
        return self.write_columns or self.write_feeds


def pick_copies(copies: Iterable[SeedCopy]) -> dict[str, SeedCopy]:
    """The copy used of each entry: of the seeds holding the same article, the first by path.

    Returns entry id → copy, for every entry id among `copies`.
    """
    chosen: dict[str, SeedCopy] = {}
    for copy in copies:
        held = chosen.get(copy.entry_id)
        if held is None or copy.source < held.source:
            chosen[copy.entry_id] = copy
    return chosen


def story_copy(lead: SeedCopy, members: Sequence[SeedCopy]) -> SeedCopy:
    """The lead's copy as a story's entry uses it: the feed filters see the story's best
    quality, and it counts as published (`published: true`) when any of its articles
    does, so merging never hides an article the filters would let through alone."""
    qualities = [c.quality for c in members if c.quality is not None]
    flags = [c.is_published for c in members if c.is_published is not None]
    return structs.replace(
        lead,
        quality=max(qualities) if qualities else None,
        is_published=any(flags) if flags else None,
    )


def decide(
    entry_id: str,
    copy: SeedCopy | None,
    topic_keys: frozenset[str],
    before: EntryColumns | None,
    before_feeds: frozenset[FeedKey],
    ledger: LedgerRow | None,
    link_states: Mapping[str, LinkState],
    link_rules: LinkRules,
    now: datetime,
    story: StoryFacts = LONE,
    rehash: bool = False,
) -> Decision:
    """The entry `entry_id` after its seeds changed or a link verdict came in.

    `copy` is the copy used (None: no good seed holds it any more), `topic_keys`
    the keys of the topics its seeds name (after the topic rules), `before` and
    `before_feeds` what the store holds of it, `ledger` its ledger row (kept
    even when the entry went away, so a returning entry keeps its dates), and
    `link_states` what is known of its URLs, `story` what it takes from the other
    articles of its story (`copy` is the lead's), `rehash` whether the ledger's hashes are
    made another way now (see `plan.ledger_update`). Returns the `Decision`; raises
    nothing.
    """
    if copy is None:
        gone = before is not None
        return Decision(
            entry_id,
            None,
            frozenset(),
            None,
            write_columns=gone,
            write_feeds=gone,
            touched=before_feeds if gone else frozenset(),
        )
    feeds = memberships(EntryFacts(topic_keys, story.providers))
    own = copy.original_url or copy.web_url
    link = effective_link(copy.original_url, copy.web_url, link_states, link_rules)
    shown_link = None if link in (None, own) else link
    row = ledger_update(
        ledger,
        fingerprint(copy.shown, topic_keys, shown_link, story.outlets),
        from_micros(copy.published_us),
        now,
        rehash and before is not None and before.source == copy.source,
    )
    columns = EntryColumns(
        copy.source,
        copy.published_us,
        copy.quality,
        copy.is_published,
        copy.original_url,
        copy.web_url,
        shown_link,
        link is None,
        story.related,
    )
    new_ledger = None if row == ledger else row
    if new_ledger is None and before == columns and feeds == before_feeds:
        return Decision(entry_id, columns, feeds, None, False, False, frozenset())
    return Decision(
        entry_id,
        columns,
        feeds,
        new_ledger,
        write_columns=True,
        write_feeds=feeds != before_feeds,
        touched=before_feeds | feeds,
        had_feeds=bool(before_feeds),
    )


def visible_change(old: LinkState | None, new: LinkState | None) -> bool:
    """True when going from `old` to `new` can change what a feed shows of an entry with
    that URL: a confirmed death (or its end), or a different permanent new home."""
    return _feed_view(old) != _feed_view(new)


def _feed_view(state: LinkState | None) -> tuple[bool, str | None]:
    if state is None:
        return (False, None)
    moved = state.final_url if state.permanent and state.status is Outcome.ALIVE else None
    return (state.status is Outcome.DEAD, moved)
