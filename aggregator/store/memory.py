"""An in-memory state store: plain dicts, for tests and for trying the pipeline without a file.

Nothing is persisted. `transaction()` copies the data on entry and puts the
copy back when the block raises. The same contract as the SQLite store
(tests/test_store_contract.py runs against both), except that calls from
several threads are not serialized outside `transaction()`: one thread at a time.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from msgspec import structs

from aggregator.archive import Key, Row
from aggregator.entries import Decision, EntryColumns, SeedCopy, from_micros
from aggregator.feeds import KINDS, FeedKey
from aggregator.links import LinkState
from aggregator.model import (
    Article,
    LoadedSeed,
    SeedRecord,
    article_from_json,
    related_from_json,
)
from aggregator.plan import FeedFilter, FeedStamp, LedgerRow, to_micros
from aggregator.scan import SeedFile
from aggregator.store.rows import (
    Counts,
    Duplicate,
    Member,
    Rejected,
    SpellingCount,
    StoredEntry,
    thumbnails_due,
)

_T = TypeVar("_T")


@dataclass(slots=True)
class _Seed:
    size: int
    mtime_ns: int
    digest: str
    error: str | None
    record: SeedRecord | None


@dataclass(slots=True)
class _Link:
    checked: bool = False
    next_check_us: int = 0
    state: LinkState | None = None


@dataclass(slots=True)
class _Thumb:
    file: str | None
    tries: int
    next_try_us: int
    detail: str


@dataclass(slots=True)
class _Data:
    seeds: dict[str, _Seed] = field(default_factory=dict)
    entries: dict[str, EntryColumns] = field(default_factory=dict)
    feeds: dict[str, frozenset[FeedKey]] = field(default_factory=dict)
    ledger: dict[str, LedgerRow] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    links: dict[str, _Link] = field(default_factory=dict)
    pauses: dict[str, datetime] = field(default_factory=dict)
    thumbs: dict[str, _Thumb] = field(default_factory=dict)
    slugs: dict[str, str] = field(default_factory=dict)
    stamps: dict[FeedKey, FeedStamp] = field(default_factory=dict)
    archives: dict[FeedKey, tuple[list[Key], list[str]]] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)


class _Part:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    @property
    def _d(self) -> _Data:
        return self._store.data


class MemorySeeds(_Part):
    """`SeedStore` in memory."""

    def seed_stats(self) -> dict[str, tuple[int, int]]:
        return {source: (s.size, s.mtime_ns) for source, s in self._d.seeds.items()}

    def digests(self, sources: Sequence[str]) -> dict[str, str]:
        seeds = self._d.seeds
        return {source: seeds[source].digest for source in sources if source in seeds}

    def touch(self, files: Iterable[SeedFile]) -> None:
        for f in files:
            seed = self._d.seeds.get(f.source)
            if seed is not None:
                seed.size, seed.mtime_ns = f.size, f.mtime_ns

    def store_seeds(self, batch: Sequence[tuple[SeedFile, LoadedSeed]]) -> None:
        seeds, dirty = self._d.seeds, self._d.dirty
        for f, loaded in batch:
            old = seeds.get(f.source)
            if old is not None and old.record is not None:
                dirty.add(old.record.entry_id)
            if loaded.record is None:
                record = old.record if old is not None else None
                seeds[f.source] = _Seed(f.size, f.mtime_ns, loaded.digest, loaded.error, record)
            else:
                seeds[f.source] = _Seed(f.size, f.mtime_ns, loaded.digest, None, loaded.record)
                dirty.add(loaded.record.entry_id)

    def loading(self, count: int) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # nothing to prepare in a dict

    def forget_seeds(self, sources: Iterable[str]) -> None:
        for source in sources:
            seed = self._d.seeds.pop(source, None)
            if seed is not None and seed.record is not None:
                self._d.dirty.add(seed.record.entry_id)

    def spelling_counts(self) -> list[SpellingCount]:
        counts: dict[str, int] = {}
        for seed in self._d.seeds.values():
            if seed.record is not None:
                for spelling in set(seed.record.topics):
                    counts[spelling] = counts.get(spelling, 0) + 1
        return [SpellingCount(spelling, count) for spelling, count in counts.items()]

    def rejected(self) -> list[Rejected]:
        return sorted(
            Rejected(source, s.error) for source, s in self._d.seeds.items() if s.error is not None
        )

    def duplicates(self) -> list[Duplicate]:
        found = []
        for source, seed in self._d.seeds.items():
            if seed.record is None:
                continue
            used = self._d.members.get(seed.record.entry_id)
            if used is not None and used.source != source:
                found.append(Duplicate(source, used.source))
        return sorted(found)

    def articles(self, sources: Sequence[str]) -> dict[str, Article]:
        seeds = self._d.seeds
        return {
            source: article_from_json(record.article_json)
            for source in sources
            if (seed := seeds.get(source)) is not None and (record := seed.record) is not None
        }


class MemoryStories(_Part):
    """`StoryStore` in memory."""

    def _records(self) -> Iterator[SeedRecord]:
        for seed in self._d.seeds.values():
            if seed.record is not None:
                yield seed.record

    def published(self, articles: Sequence[str]) -> dict[str, int]:
        wanted = set(articles)
        found: dict[str, int] = {}
        for r in self._records():
            if r.entry_id in wanted:
                found[r.entry_id] = min(found.get(r.entry_id, r.published_us), r.published_us)
        return found

    def links(self, articles: Sequence[str]) -> list[tuple[str, str]]:
        wanted = set(articles)
        held = {r.entry_id for r in self._records()}
        return [
            (r.entry_id, other)
            for r in self._records()
            for other in r.related_ids
            if other in held and (r.entry_id in wanted or other in wanted)
        ]

    def stories_of(self, articles: Sequence[str]) -> dict[str, str]:
        members = self._d.members
        return {a: members[a].story for a in articles if a in members}

    def members(self, stories: Sequence[str]) -> dict[str, set[str]]:
        wanted = set(stories)
        found: dict[str, set[str]] = {}
        for member in self._d.members.values():
            if member.story in wanted:
                found.setdefault(member.story, set()).add(member.article)
        return found

    def keep_members(self, members: Sequence[Member], forget: Sequence[str]) -> None:
        for article in forget:
            self._d.members.pop(article, None)
        for member in members:
            self._d.members[member.article] = member


class MemoryEntries(_Part):
    """`EntryStore` in memory."""

    def dirty(self) -> list[str]:
        return sorted(self._d.dirty)

    def mark_all_dirty(self) -> None:
        self._d.dirty.update(self._d.entries)

    def loading(self, count: int) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # nothing to prepare in a dict

    def mark_dated_between(self, after_us: int, until_us: int) -> None:
        for seed in self._d.seeds.values():
            r = seed.record
            if r is not None and after_us < r.published_us <= until_us:
                self._d.dirty.add(r.entry_id)

    def clear_dirty(self) -> None:
        self._d.dirty.clear()

    def copies(self, entry_ids: Sequence[str]) -> list[SeedCopy]:
        wanted = set(entry_ids)
        return [
            SeedCopy(
                r.entry_id,
                source,
                r.published_us,
                r.quality,
                r.is_published,
                r.shown,
                r.original_url,
                r.web_url,
                _provider(r.article_json)[1],
            )
            for source, seed in self._d.seeds.items()
            if (r := seed.record) is not None and r.entry_id in wanted
        ]

    def provider_names(self) -> list[tuple[str, str | None, int]]:
        counts: dict[tuple[str, str | None], int] = {}
        for member in self._d.members.values():
            columns = self._d.entries.get(member.story)
            seed = self._d.seeds.get(member.source)
            if member.provider is None or columns is None or columns.hidden:
                continue
            if seed is None or seed.record is None:
                continue
            name = _provider(seed.record.article_json)[0]
            counts[(member.provider, name)] = counts.get((member.provider, name), 0) + 1
        return [(key, name, count) for (key, name), count in counts.items()]

    def spellings(self, entry_ids: Sequence[str]) -> dict[str, set[str]]:
        wanted = set(entry_ids)
        found: dict[str, set[str]] = {}
        for seed in self._d.seeds.values():
            r = seed.record
            if r is not None and r.entry_id in wanted and r.topics:
                found.setdefault(r.entry_id, set()).update(r.topics)
        return found

    def columns(self, entry_ids: Sequence[str]) -> dict[str, EntryColumns]:
        entries = self._d.entries
        return {i: entries[i] for i in entry_ids if i in entries}

    def feeds_of(self, entry_ids: Sequence[str]) -> dict[str, frozenset[FeedKey]]:
        feeds = self._d.feeds
        return {i: feeds[i] for i in entry_ids if feeds.get(i)}

    def ledger(self, entry_ids: Sequence[str]) -> dict[str, LedgerRow]:
        ledger = self._d.ledger
        return {i: ledger[i] for i in entry_ids if i in ledger}

    def apply(self, decisions: Sequence[Decision]) -> None:
        d = self._d
        for decision in decisions:
            entry_id = decision.entry_id
            if decision.ledger is not None:
                d.ledger[entry_id] = decision.ledger
            if decision.columns is None:
                if decision.write_columns:
                    d.entries.pop(entry_id, None)
                    d.feeds.pop(entry_id, None)
                continue
            if decision.write_columns:
                d.entries[entry_id] = decision.columns
            if decision.write_feeds:
                d.feeds[entry_id] = decision.feeds

    def entries(self, ids: Sequence[str]) -> list[StoredEntry]:
        d = self._d
        found = []
        for entry_id in ids:
            columns = d.entries.get(entry_id)
            ledger = d.ledger.get(entry_id)
            seed = d.seeds.get(columns.source) if columns is not None else None
            if columns is None or ledger is None or seed is None or seed.record is None:
                continue
            article = article_from_json(seed.record.article_json)
            if columns.related is not None:
                article = structs.replace(article, related=related_from_json(columns.related))
            found.append(
                StoredEntry(
                    entry_id,
                    article,
                    d.feeds.get(entry_id, frozenset()),
                    ledger.updated,
                    columns.link,
                )
            )
        return found

    def _members(self, feed: FeedKey, flt: FeedFilter) -> list[tuple[int, str]]:
        """(published_us, id) of the entries of a feed that `flt` lets through, in feed order."""
        kind = KINDS.get(feed.kind)
        every = kind is not None and kind.every_entry
        found = [
            (c.published_us, entry_id)
            for entry_id, c in self._d.entries.items()
            if (every or feed in self._d.feeds.get(entry_id, ())) and _passes(c, flt)
        ]
        found.sort(key=lambda row: (-row[0], row[1]))
        return found

    def feed_page(
        self, feed: FeedKey, flt: FeedFilter, limit: int, newer_than: Key | None = None
    ) -> tuple[list[StoredEntry], int]:
        members = self._members(feed, flt)
        shown = members
        if newer_than is not None:
            bound_us, bound_id = newer_than
            shown = [
                (us, i) for us, i in members if us > bound_us or (us == bound_us and i < bound_id)
            ]
        return self.entries([i for _, i in _first(shown, limit)]), len(members)

    def feed_rows(self, feed: FeedKey, flt: FeedFilter) -> list[Row]:
        ledger = self._d.ledger
        return [
            Row(us, i, to_micros(ledger[i].updated), ledger[i].content_hash)
            for us, i in self._members(feed, flt)
            if i in ledger
        ]

    def earliest_held_back(self, flt: FeedFilter) -> int | None:
        later = [
            r.published_us
            for seed in self._d.seeds.values()
            if (r := seed.record) is not None and r.published_us > flt.published_before_us
        ]
        return min(later, default=None)


def _provider(article_json: str) -> tuple[str | None, str | None]:
    """The provider's name and domain of a stored article (see `model.article_to_json`)."""
    provider = json.loads(article_json)["provider"]
    return (provider[0], provider[1]) if provider else (None, None)


def _first(items: list[_T], limit: int) -> list[_T]:
    """The first `limit` items; all of them for a negative limit (as SQL's LIMIT)."""
    return items if limit < 0 else items[:limit]


def _passes(c: EntryColumns, flt: FeedFilter) -> bool:
    return (
        (flt.min_quality <= 0 or (c.quality or 0) >= flt.min_quality)
        and (not flt.require_published or c.is_published is True)
        and (flt.published_after_us is None or c.published_us >= flt.published_after_us)
        and c.published_us <= flt.published_before_us
        and not c.hidden
    )


class MemoryLinks(_Part):
    """`LinkStore` in memory."""

    def ensure(self, urls: Iterable[str]) -> None:
        for url in urls:
            self._d.links.setdefault(url, _Link())

    def link_states(self, urls: Sequence[str]) -> dict[str, LinkState]:
        links = self._d.links
        return {
            url: state
            for url in urls
            if (link := links.get(url)) is not None and (state := link.state) is not None
        }

    def due_links(self, now: datetime, limit: int, everything: bool = False) -> list[str]:
        cutoff = to_micros(now)
        rows = sorted(
            (link.checked, link.next_check_us, url)
            for url, link in self._d.links.items()
            if everything or link.next_check_us <= cutoff
        )
        return [url for _, _, url in _first(rows, limit)]

    def save_link_states(
        self,
        states: Sequence[LinkState],
        deferred: Mapping[str, datetime],
        due: Collection[str] = (),
    ) -> None:
        d = self._d
        for state in states:
            assert state.next_check is not None
            d.links[state.url] = _Link(True, to_micros(state.next_check), state)
        urls = set(due)
        d.dirty.update(
            entry_id
            for entry_id, c in d.entries.items()
            if c.original_url in urls or c.web_url in urls
        )
        for url, when in deferred.items():
            link = d.links.get(url)
            if link is not None:
                link.next_check_us = to_micros(when)

    def forget_unused_links(self) -> int:
        used = {u for c in self._d.entries.values() for u in (c.original_url, c.web_url) if u}
        gone = [url for url in self._d.links if url not in used]
        for url in gone:
            del self._d.links[url]
        return len(gone)

    def pauses(self) -> dict[str, datetime]:
        return dict(self._d.pauses)

    def keep_pauses(self, pauses: Mapping[str, datetime]) -> None:
        self._d.pauses = {host: from_micros(to_micros(t)) for host, t in pauses.items()}


class MemoryThumbnails(_Part):
    """`ThumbnailStore` in memory."""

    def thumbnails(self, urls: Iterable[str]) -> dict[str, str]:
        thumbs = self._d.thumbs
        return {
            url: file
            for url in dict.fromkeys(urls)
            if (t := thumbs.get(url)) is not None and (file := t.file) is not None
        }

    def thumbnails_due(self, urls: Iterable[str], now: datetime, limit: int) -> list[str]:
        wanted = list(dict.fromkeys(urls))
        thumbs = self._d.thumbs
        known = {u: (thumbs[u].file, thumbs[u].next_try_us) for u in wanted if u in thumbs}
        return thumbnails_due(wanted, known, to_micros(now), limit)

    def keep_thumbnail(self, url: str, file: str) -> None:
        self._d.thumbs[url] = _Thumb(file, 0, 0, "")

    def thumbnail_tries(self, urls: Sequence[str]) -> dict[str, int]:
        thumbs = self._d.thumbs
        return {url: thumbs[url].tries if url in thumbs else 0 for url in urls}

    def thumbnail_failed(self, url: str, detail: str, tries: int, next_try: datetime) -> None:
        self._d.thumbs[url] = _Thumb(None, tries, to_micros(next_try), detail[:300])

    def forget_thumbnails_of(self, urls: Sequence[str]) -> None:
        for url in urls:
            self._d.thumbs.pop(url, None)

    def forget_thumbnails(self, keep_files: Iterable[str], wanted: Iterable[str]) -> None:
        kept, still = set(keep_files), set(wanted)
        self._d.thumbs = {
            url: t
            for url, t in self._d.thumbs.items()
            if not (
                (t.file is not None and t.file not in kept) or (t.file is None and url not in still)
            )
        }


class MemoryFeeds(_Part):
    """`FeedStateStore` in memory."""

    def topic_slugs(self) -> dict[str, str]:
        return dict(self._d.slugs)

    def keep_topic_slugs(self, slugs: Mapping[str, str]) -> None:
        taken = set(self._d.slugs.values())
        for key, slug in slugs.items():
            if key not in self._d.slugs and slug not in taken:
                self._d.slugs[key] = slug
                taken.add(slug)

    def feed_stamp(self, feed: FeedKey) -> FeedStamp | None:
        return self._d.stamps.get(feed)

    def keep_feed_stamp(self, feed: FeedKey, stamp: FeedStamp) -> None:
        def moment(value: datetime | None) -> datetime | None:
            return None if value is None else from_micros(to_micros(value))

        self._d.stamps[feed] = structs.replace(
            stamp, floor=moment(stamp.floor), updated=moment(stamp.updated)
        )

    def archive(self, feed: FeedKey) -> tuple[list[Key], list[str]]:
        bounds, digests = self._d.archives.get(feed, ([], []))
        return list(bounds), list(digests)

    def keep_archive(self, feed: FeedKey, bounds: Sequence[Key], digests: Sequence[str]) -> None:
        self._d.archives[feed] = ([(int(us), str(i)) for us, i in bounds], list(digests))

    def forget_archives(self, keep: Iterable[FeedKey]) -> None:
        kept = set(keep)
        self._d.archives = {f: a for f, a in self._d.archives.items() if f in kept}


class MemorySettings(_Part):
    """`SettingsStore` in memory."""

    def settings_changed(self, name: str, value: str) -> bool:
        before = self._d.meta.get(name)
        if before == value:
            return False
        self._d.meta[name] = value
        return before is not None

    def recorded(self, name: str) -> str | None:
        return self._d.meta.get(name)

    def setdefault(self, name: str, value: str) -> str:
        return self._d.meta.setdefault(name, value)

    def reread_all_if_changed(self, name: str, value: str) -> bool:
        if self._d.meta.get(name) == value:
            return False
        for seed in self._d.seeds.values():
            seed.mtime_ns, seed.digest = -1, ""
        self._d.meta[name] = value
        return True

    def reread_rejected_if_changed(self, settings: str) -> bool:
        before = self._d.meta.get("seed_settings")
        if before == settings:
            return False
        for seed in self._d.seeds.values():
            if seed.error is not None:
                seed.mtime_ns, seed.digest = -1, ""
        self._d.meta["seed_settings"] = settings
        return before is not None


class MemoryStore:
    """`StateStore` in memory. Raises nothing of its own (no file to lose)."""

    def __init__(self, path: str = ":memory:") -> None:
        self._path = path
        self.data = _Data()
        self._lock = threading.RLock()
        self.seeds = MemorySeeds(self)
        self.entries = MemoryEntries(self)
        self.links = MemoryLinks(self)
        self.thumbnails = MemoryThumbnails(self)
        self.stories = MemoryStories(self)
        self.feeds = MemoryFeeds(self)
        self.settings = MemorySettings(self)

    @property
    def path(self) -> str:
        return self._path

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            saved = copy.deepcopy(self.data)
            try:
                yield
            except BaseException:
                self.data = saved
                raise

    def check_file(self) -> None:
        return None

    def counts(self) -> Counts:
        seeds = self.data.seeds
        rejected = sum(1 for s in seeds.values() if s.error is not None)
        return Counts(len(seeds), len(self.data.entries), rejected)

    def close(self) -> None:
        return None
