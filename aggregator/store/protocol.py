"""The storage protocol: what the app's use cases ask of a state store, by concern.

    store.seeds        SeedStore        seed files: stats, digests, records, errors
    store.entries      EntryStore       entries, their feeds and ledger; what is due for refresh
    store.links        LinkStore        the link checker's state per URL, and host pauses
    store.thumbnails   ThumbnailStore   thumbnails made, and failed fetches to retry
    store.stories      StoryStore       which story each article is in, what links articles
    store.feeds        FeedStateStore   topic slugs, feed stamps, archive bounds and digests
    store.settings     SettingsStore    the recorded settings and the "reread if changed" marks

The store persists decisions and never makes them (see `aggregator.entries`,
`aggregator.refresh`). Every method is one transaction unless called inside
`transaction()`. Every method raises `StateError` when the state cannot be
read or written (the file deleted, replaced, damaged, unwritable); nothing else
unless said. An engine is one class that satisfies `StateStore` and passes
tests/test_store_contract.py. Engines used by the service (SQLite) serialize the
threads that share them; the memory store (tests) is for one thread at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import NamedTuple, Protocol

from aggregator.archive import Key, Row
from aggregator.entries import Decision, EntryColumns, SeedCopy
from aggregator.feeds import FeedKey
from aggregator.links import LinkState
from aggregator.model import Article, LoadedSeed
from aggregator.plan import FeedFilter, FeedStamp, LedgerRow
from aggregator.scan import SeedFile
from aggregator.store.rows import (
    Counts,
    Duplicate,
    Member,
    Rejected,
    SpellingCount,
    StoredEntry,
)


class SeedStore(Protocol):
    """The seed files read: one record each (the last good one), and the current error."""

    def seed_stats(self) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of every known seed file, by source."""
        ...

    def digests(self, sources: Sequence[str]) -> dict[str, str]:
        """The content digest of each of `sources` that is known, by source."""
        ...

    def touch(self, files: Iterable[SeedFile]) -> None:
        """Record a new size and mtime for known files whose bytes did not change."""
        ...

    def store_seeds(self, batch: Sequence[tuple[SeedFile, LoadedSeed]]) -> None:
        """Record read seed files; their entries (before and after) become due for refresh.

        A rejected seed keeps its last good record (and its entry) and gets the error.
        """
        ...

    def forget_seeds(self, sources: Iterable[str]) -> None:
        """Forget deleted seed files; their entries become due for refresh."""
        ...

    def loading(self, count: int) -> AbstractContextManager[None]:
        """A block that stores about `count` seed files (`store_seeds`, in batches): a store
        may prepare for a large load and finish it when the block ends, whether or not it
        raises. Only seeds are stored, touched or forgotten inside it."""
        ...

    def spelling_counts(self) -> list[SpellingCount]:
        """Every topic spelling the good seeds use, with how many seeds use it."""
        ...

    def rejected(self) -> list[Rejected]:
        """Every seed whose current content is rejected, by source."""
        ...

    def duplicates(self) -> list[Duplicate]:
        """Every duplicate seed (and the source of the copy used instead), by source."""
        ...

    def articles(self, sources: Sequence[str]) -> dict[str, Article]:
        """The stored article of each of these seeds that holds a good one, by source."""
        ...


class StoryStore(Protocol):
    """Stories (see `aggregator.stories`): what links articles, and the story each article
    was last given. An article is known by its id (`urls.entry_id` of its URL): the
    `entry_id` of its seeds' records; only good seeds count."""

    def published(self, articles: Sequence[str]) -> dict[str, int]:
        """The earliest date (integer microseconds) a good seed gives each of these
        articles, for those a good seed holds."""
        ...

    def links(self, articles: Sequence[str]) -> list[tuple[str, str]]:
        """(article, an article its seed lists as related) for every such pair with
        either end among `articles` and both held by good seeds; in no order."""
        ...

    def stories_of(self, articles: Sequence[str]) -> dict[str, str]:
        """The story each of these articles was last given (those given one)."""
        ...

    def members(self, stories: Sequence[str]) -> dict[str, set[str]]:
        """The articles last given each of these story ids (ids with none left out)."""
        ...

    def keep_members(self, members: Sequence[Member], forget: Sequence[str]) -> None:
        """Record these members (replacing what was recorded of their articles) and forget
        what was recorded of the articles `forget`."""
        ...


class EntryStore(Protocol):
    """The entries (duplicates merged), the feeds they are in, their ledger rows.

    What `entries`, `feed_page` and `feed_rows` return is defined when nothing is
    due for refresh (the pipeline refreshes right after storing seeds): before,
    an entry whose seed was forgotten may still be counted and listed, or be left
    out for want of an article to show.
    """

    def dirty(self) -> list[str]:
        """The ids of the entries due for refresh, sorted."""
        ...

    def mark_all_dirty(self) -> None:
        """Make every entry due for refresh (after topic or link rules changed)."""
        ...

    def mark_dated_between(self, after_us: int, until_us: int) -> None:
        """Make due for refresh the articles good seeds date after `after_us` and at or
        before `until_us` (integer microseconds): they crossed what the feeds let through."""
        ...

    def clear_dirty(self) -> None:
        """Nothing is due for refresh any more."""
        ...

    def loading(self, count: int) -> AbstractContextManager[None]:
        """A block, inside a transaction, that writes about `count` entries (`apply`): a
        store may prepare for a large load and finish it when the block ends. Entries are
        read by id and feed inside it, not listed by date or URL."""
        ...

    def copies(self, entry_ids: Sequence[str]) -> list[SeedCopy]:
        """Every good seed's copy of these entries (several for a duplicate), in no order."""
        ...

    def provider_names(self) -> list[tuple[str, str | None, int]]:
        """(provider key, the `provider.name` some of its articles give or None, how many
        articles), over the recorded members (`StoryStore`) of the entries no feed hides;
        in no order."""
        ...

    def spellings(self, entry_ids: Sequence[str]) -> dict[str, set[str]]:
        """Entry id → the topic spellings any seed holding it uses (entries with none left out)."""
        ...

    def columns(self, entry_ids: Sequence[str]) -> dict[str, EntryColumns]:
        """What is stored of these entries (those stored), by id."""
        ...

    def feeds_of(self, entry_ids: Sequence[str]) -> dict[str, frozenset[FeedKey]]:
        """The feeds each of these entries is stored in (entries in none left out)."""
        ...

    def ledger(self, entry_ids: Sequence[str]) -> dict[str, LedgerRow]:
        """The ledger rows of these entries (those that have one), by id."""
        ...

    def apply(self, decisions: Sequence[Decision]) -> None:
        """Write what `aggregator.entries.decide` decided: rows, memberships, ledger rows.

        The ledger row of a removed entry is kept (a returning entry keeps its dates).
        """
        ...

    def entries(self, ids: Sequence[str]) -> list[StoredEntry]:
        """The stored entries with these ids, in this order (unknown ids left out)."""
        ...

    def feed_page(
        self, feed: FeedKey, flt: FeedFilter, limit: int, newer_than: Key | None = None
    ) -> tuple[list[StoredEntry], int]:
        """The newest `limit` entries of a feed that `flt` lets through, and how many there are.

        Newest first (ties: by id). Hidden entries are never in a feed. With
        `newer_than`, only entries placed before that key in feed order (the
        ones no closed archive page holds); the count is of them all.
        """
        ...

    def feed_rows(self, feed: FeedKey, flt: FeedFilter) -> list[Row]:
        """Every entry of a feed that `flt` lets through, newest first, as archives need them."""
        ...

    def earliest_held_back(self, flt: FeedFilter) -> int | None:
        """published_us of the earliest article (a story's lead or another of its articles,
        which its coverage shows from then on) dated after what `flt` lets through; None:
        there is none. (A seed whose entry is hidden may count: the feeds are then
        rendered once for nothing.)"""
        ...


class LinkStore(Protocol):
    """Per article URL, the link checker's state and when it is due; per host, pauses."""

    def ensure(self, urls: Iterable[str]) -> None:
        """Know these URLs (never checked, due at once) unless known already."""
        ...

    def link_states(self, urls: Sequence[str]) -> dict[str, LinkState]:
        """The stored state of each of `urls` that was checked, by URL."""
        ...

    def due_links(self, now: datetime, limit: int, everything: bool = False) -> list[str]:
        """At most `limit` URLs to check: never checked first, then the most overdue
        (ties by URL); with `everything`, due or not."""
        ...

    def save_link_states(
        self,
        states: Sequence[LinkState],
        deferred: Mapping[str, datetime],
        due: Collection[str] = (),
    ) -> None:
        """Store check results (each state has its `next_check`) and move the `deferred`
        known URLs to the given moments. The entries that use any URL of `due` (as
        their original or web URL) become due for refresh: the caller decides which
        (`aggregator.entries.visible_change`)."""
        ...

    def forget_unused_links(self) -> int:
        """Drop the URLs no entry refers to any more; returns how many."""
        ...

    def pauses(self) -> dict[str, datetime]:
        """Host name or server → until when it asked (Retry-After) to be left alone."""
        ...

    def keep_pauses(self, pauses: Mapping[str, datetime]) -> None:
        """Replace the recorded host pauses with `pauses`."""
        ...


class ThumbnailStore(Protocol):
    """The thumbnails made (image URL → file), and the failed fetches to try again."""

    def thumbnails(self, urls: Iterable[str]) -> dict[str, str]:
        """Image URL → its thumbnail file, for those of `urls` that have one."""
        ...

    def thumbnails_due(self, urls: Iterable[str], now: datetime, limit: int) -> list[str]:
        """Of `urls`, at most `limit` without a thumbnail whose next try has come: the never
        tried first (in the given order), then the failed ones, longest due first."""
        ...

    def keep_thumbnail(self, url: str, file: str) -> None:
        """Record the thumbnail file made of an image (its failures are forgotten)."""
        ...

    def thumbnail_tries(self, urls: Sequence[str]) -> dict[str, int]:
        """How many fetches of each image failed in a row (0: none, or never tried)."""
        ...

    def thumbnail_failed(self, url: str, detail: str, tries: int, next_try: datetime) -> None:
        """Note a failed fetch (the `tries`-th in a row), not to be tried before `next_try`.
        `detail` is kept to 300 characters."""
        ...

    def forget_thumbnails_of(self, urls: Sequence[str]) -> None:
        """Forget the thumbnails of these images (their files are gone): fetch them anew."""
        ...

    def forget_thumbnails(self, keep_files: Iterable[str], wanted: Iterable[str]) -> None:
        """Drop the thumbnails whose file is not in `keep_files`, and the failures of
        images not in `wanted` (no page wants them any more)."""
        ...


class FeedStateStore(Protocol):
    """What is kept per feed: topic slugs, stamps, archive bounds and page digests."""

    def topic_slugs(self) -> dict[str, str]:
        """The slug every topic ever seen was given (key → slug)."""
        ...

    def keep_topic_slugs(self, slugs: Mapping[str, str]) -> None:
        """Remember newly assigned slugs; existing ones never change (those are ignored)."""
        ...

    def feed_stamp(self, feed: FeedKey) -> FeedStamp | None:
        """What was kept of a feed when it was last rendered; None: nothing."""
        ...

    def keep_feed_stamp(self, feed: FeedKey, stamp: FeedStamp) -> None:
        """Keep a feed's stamp (replacing the one kept)."""
        ...

    def archive(self, feed: FeedKey) -> tuple[list[Key], list[str]]:
        """The closed-page bounds and the page digests kept for a feed's archive
        (both empty: nothing kept)."""
        ...

    def keep_archive(self, feed: FeedKey, bounds: Sequence[Key], digests: Sequence[str]) -> None:
        """Keep a feed's archive bounds and page digests (replacing those kept)."""
        ...

    def forget_archives(self, keep: Iterable[FeedKey]) -> None:
        """Drop what is kept of the archives of every feed not in `keep`."""
        ...


class SettingsStore(Protocol):
    """The settings the stored data depends on, as last recorded."""

    def settings_changed(self, name: str, value: str) -> bool:
        """Record `value` under `name`; True when a different value was recorded before
        (False the first time)."""
        ...

    def recorded(self, name: str) -> str | None:
        """The value recorded under `name`; None when there is none. Only reads."""
        ...

    def setdefault(self, name: str, value: str) -> str:
        """Record `value` under `name` unless a value is recorded there already; returns the
        value recorded (the earlier one, else `value`)."""
        ...

    def reread_all_if_changed(self, name: str, value: str) -> bool:
        """When `value` is not the one recorded under `name` (or none is), record it and make
        every seed due to be read again; True when it did."""
        ...

    def reread_rejected_if_changed(self, settings: str) -> bool:
        """When the settings reading depends on changed, record them and make the rejected
        seeds due to be read again; True when a different value was recorded before."""
        ...


class StateStore(Protocol):
    """A state store: the concerns above, one transaction scope, counts, close."""

    @property
    def path(self) -> str:
        """Where the state lives (a file path, or a name for stores without one)."""
        ...

    @property
    def seeds(self) -> SeedStore: ...
    @property
    def entries(self) -> EntryStore: ...
    @property
    def links(self) -> LinkStore: ...
    @property
    def thumbnails(self) -> ThumbnailStore: ...
    @property
    def stories(self) -> StoryStore: ...
    @property
    def feeds(self) -> FeedStateStore: ...
    @property
    def settings(self) -> SettingsStore: ...

    def transaction(self) -> AbstractContextManager[None]:
        """Everything inside is one transaction: rolled back when the block raises (the
        exception propagates), committed when it ends. Nestable: an inner block that
        raises rolls back its own part only. Other threads wait until it ends (in the
        engines that serialize threads; see above)."""
        ...

    def check_file(self) -> None:
        """Raise `StateError` when the state can no longer be written where it was opened
        (the file deleted or replaced under a running service)."""
        ...

    def counts(self) -> Counts:
        """How many seeds, entries and rejected seeds are stored."""
        ...

    def close(self) -> None:
        """Release the store; no method may be called afterwards."""
        ...


class WorkerAccess(NamedTuple):
    """How worker processes help this process with a state: they read it, and turn what
    they decide into what this process writes (`aggregator.refresh`), or render from it
    (`aggregator.feedrender`). Only engines whose state other processes can open have it
    (`aggregator.store.worker_access`)."""

    reader: Callable[[], StateStore]
    """In a worker: opens the state read-only, seeing what was committed (picklable)."""
    prepare: Callable[[Sequence[str], Sequence[Decision], Sequence[Member]], object]
    """In a worker: what `write` writes for the link URLs to know, the decisions to apply
    and the story members to keep (picklable; what it returns is too)."""
    write: Callable[[object], None]
    """Here: `links.ensure`, `entries.apply` and `stories.keep_members`, in that order, of
    what `prepare` made (in the transaction open, if any)."""
    checkpoint_apart: Callable[[], None]
    """Here, once the workers are started: from now on, commits leave copying what they
    wrote into the state file to a thread of this process (a cold build's; see
    `aggregator.store.sqlite.db.Database.checkpoint_apart`)."""
