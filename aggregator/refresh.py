"""Bring the entries whose seeds or links changed up to date: read, decide, write.

The store says which articles and entries are due and holds their inputs;
`aggregator.stories` groups articles into stories and gives each its entry id,
`aggregator.entries` decides each entry; the store writes the decisions. One
transaction: an `Interrupted` (or any error) rolls everything back, and the
entries stay due.

What is due is widened to whole stories before deciding: every article linked to
a due one (either way), every article its story held, and so on, so a story is
always decided whole and a split or a merge is seen from both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from aggregator.entries import Decision, SeedCopy, StoryFacts, decide, pick_copies, story_copy
from aggregator.errors import Interrupted
from aggregator.feeds import FeedKey
from aggregator.links import DEFAULT_LINK_RULES, LinkRules
from aggregator.model import related_to_json
from aggregator.parallel import in_order
from aggregator.plan import FUTURE_TOLERANCE, to_micros
from aggregator.providers import provider_key
from aggregator.store import opened_here
from aggregator.store.protocol import StateStore, WorkerAccess
from aggregator.store.rows import Member
from aggregator.stories import (
    StoryRules,
    assign_ids,
    components,
    kept_coverage,
    lead_of,
    new_outlets,
    story_related,
)
from aggregator.topics import TopicRules

if TYPE_CHECKING:  # a refresh without workers imports no pool
    from concurrent.futures import Executor

CHUNK = 500
"""Articles decided at a time (what is read for them is read in one go)."""
PARALLEL_REFRESH = 4 * CHUNK
"""From this many due entries, a refresh given worker processes decides in them."""
AHEAD = 4
"""Chunks given out to worker processes ahead of the one being written."""

DEFAULT_STORY_RULES = StoryRules()
HORIZON_SETTING = "story_horizon"
"""Where the state records the latest date (integer microseconds) the last refresh let
into stories' coverage: `plan.FUTURE_TOLERANCE` after its `now`."""
LEDGER_SETTING = "ledger_rules"
"""Where the state records the `plan.LEDGER_RULES` its ledger hashes were made with."""


@dataclass
class Applied:
    """What one `refresh` changed."""

    feeds: set[FeedKey] = field(default_factory=set)
    """The feeds (of kinds that store their members) whose content may have changed."""
    entries_changed: int = 0
    """Entries added, removed or changed (in content, feeds or filter fields)."""


class _Stories(msgspec.Struct, frozen=True):
    """The stories that due articles are in, and the entry ids they no longer have."""

    stories: list[tuple[str, tuple[str, ...]]]
    """(entry id, members) of every story to decide."""
    published: dict[str, int]
    gone: list[str]
    """Entry ids that named one of these stories before and name none now."""
    left: list[str]
    """Articles recorded in a story that no good seed holds any more."""


def _never() -> bool:
    return False


def refresh(
    store: StateStore,
    rules: TopicRules,
    now: datetime,
    should_stop: Callable[[], bool] = _never,
    link_rules: LinkRules = DEFAULT_LINK_RULES,
    story_rules: StoryRules = DEFAULT_STORY_RULES,
    rehash: str | None = None,
    pool: Executor | None = None,
    access: WorkerAccess | None = None,
) -> Applied:
    """Bring every entry due for refresh up to date: its story, copy used, feeds, link,
    ledger.

    With `rehash` (the `plan.LEDGER_RULES` the state has not recorded yet; every entry
    must be due), ledger hashes are written anew without dating entries anew, and the
    rules are recorded in the same transaction. Returns what changed. Raises
    `Interrupted` when `should_stop` turns true (checked before each chunk; nothing is
    kept and the entries stay due), and `StateError` from the store.

    With `pool` (worker processes) and `access` (how they read the state and prepare
    what is written), a large refresh decides its chunks in the workers, each reading
    what was committed before this refresh began (what a chunk reads, no chunk before it
    writes), while this process writes what they prepared, in order.
    """
    applied = Applied()
    key_of = _keys(rules)
    entries = store.entries
    horizon = to_micros(now + FUTURE_TOLERANCE)
    with store.transaction():
        # Articles whose date crossed what the feeds let through since the last refresh
        # join (or leave) their story's coverage now: their stories are redone.
        last = store.settings.recorded(HORIZON_SETTING)
        if last is not None and int(last) != horizon:
            entries.mark_dated_between(min(int(last), horizon), max(int(last), horizon))
        store.settings.settings_changed(HORIZON_SETTING, str(horizon))
        due = entries.dirty()
        found = _widen(store, due, story_rules, should_stop) if due else None
        if found is None:
            entries.clear_dirty()
            if rehash is not None:
                store.settings.settings_changed(LEDGER_SETTING, rehash)
            return applied
        before, before_feeds = entries.columns(found.gone), entries.feeds_of(found.gone)
        decisions = [
            decide(
                i,
                None,
                frozenset(),
                columns,
                before_feeds.get(i, frozenset()),
                None,
                {},
                link_rules,
                now,
            )
            for i, columns in before.items()
        ]
        for decision in decisions:
            applied.entries_changed += 1
            applied.feeds |= decision.touched
        entries.apply(decisions)
        store.stories.keep_members([], found.left)
        with entries.loading(len(found.stories)):
            batches = _batches(found.stories)
            if pool is not None and access is not None and len(due) >= PARALLEL_REFRESH:
                jobs = (
                    _Job(
                        access.reader,
                        access.prepare,
                        batch,
                        {a: found.published[a] for _, members in batch for a in members},
                        horizon,
                        rules,
                        link_rules,
                        now,
                        rehash,
                    )
                    for batch in batches
                )
                for prepared in in_order(pool, decide_job, jobs, AHEAD):
                    access.write(prepared.rows)
                    applied.entries_changed += prepared.changed
                    applied.feeds.update(FeedKey(kind, key) for kind, key in prepared.touched)
                    if should_stop():
                        raise Interrupted
            else:
                for batch in batches:
                    decided = _decide(
                        store, batch, found.published, horizon, key_of, link_rules, now, rehash
                    )
                    _write(store, decided, applied)
                    if should_stop():
                        raise Interrupted
        entries.clear_dirty()
        if rehash is not None:
            store.settings.settings_changed(LEDGER_SETTING, rehash)
    return applied


def _keys(rules: TopicRules) -> Callable[[str], str | None]:
    """The key of the topic a spelling names under `rules` (None: none), remembered."""
    resolved: dict[str, str | None] = {}

    def key_of(spelling: str) -> str | None:
        if spelling not in resolved:
            hit = rules.resolve(spelling)
            resolved[spelling] = hit[0] if hit else None
        return resolved[spelling]

    return key_of


def _widen(
    store: StateStore, due: Sequence[str], rules: StoryRules, should_stop: Callable[[], bool]
) -> _Stories:
    """The whole stories that the due ids (articles, or entry ids of stories) are in,
    before and after, with their entry ids decided (`stories.assign_ids`)."""
    stories = store.stories
    reached = set(due)
    frontier = sorted(reached)
    published: dict[str, int] = {}
    previous: dict[str, str] = {}
    asked: set[str] = set()
    edges: list[tuple[str, str]] = []
    while frontier:
        if should_stop():
            raise Interrupted
        published.update(stories.published(frontier))
        was = stories.stories_of(frontier)
        previous.update(was)
        ids = sorted((set(was.values()) | set(frontier)) - asked)
        asked.update(ids)
        found: set[str] = set()
        for members in stories.members(ids).values():
            found |= members
        if rules.merge:
            pairs = stories.links(frontier)
            edges.extend(pairs)
            found.update(a for pair in pairs for a in pair)
        frontier = sorted(found - reached)
        reached |= found
    groups = components(published, edges, rules)
    # What was published before: the ledger rows of every id a story could keep.
    candidates = sorted(set(published) | set(previous.values()))
    seen = {i: row.first_seen for i, row in store.entries.ledger(candidates).items()}
    given = set(previous.values())
    reserved: set[str] = set()
    while True:  # a new id made for a story must be one no story outside these holds
        ids = assign_ids(groups, published, previous, seen, reserved)
        made = [i for i in ids if i not in published and i not in given]
        clash = set(store.entries.ledger(made)) if made else set()
        if not clash:
            break
        reserved |= clash
    kept = set(ids)
    gone = sorted((given | asked) - kept)
    left = sorted(a for a in previous if a not in published)
    return _Stories(list(zip(ids, groups, strict=True)), published, gone, left)


@dataclass(slots=True)
class _Decided:
    """What deciding one batch of stories gives, to be written (`_write`)."""

    urls: list[str]
    """The URLs of the entries' links: the link checker is to know them."""
    decisions: list[Decision]
    kept: list[Member]
    changed: int = 0
    touched: set[FeedKey] = field(default_factory=set)


def _decide(
    store: StateStore,
    batch: Sequence[tuple[str, tuple[str, ...]]],
    published: Mapping[str, int],
    horizon: int,
    key_of: Callable[[str], str | None],
    link_rules: LinkRules,
    now: datetime,
    rehash: str | None,
) -> _Decided:
    """Decide the entries of these stories (reading only)."""
    entries, links = store.entries, store.links
    articles = [a for _, members in batch for a in members]
    copies = pick_copies(entries.copies(articles))
    spellings = entries.spellings(articles)
    ids = [story_id for story_id, _ in batch]
    leads = {story_id: lead_of(members, published) for story_id, members in batch}
    urls = sorted(
        {u for i in ids for u in (copies[leads[i]].original_url, copies[leads[i]].web_url) if u}
    )
    states = links.link_states(urls)
    columns = entries.columns(ids)
    feeds = entries.feeds_of(ids)
    ledger = entries.ledger(ids)
    shared = [copies[a].source for _, members in batch if len(members) > 1 for a in members]
    stored = store.seeds.articles(shared) if shared else {}
    decided = _Decided(urls, [], [])
    for story_id, everyone in batch:
        lead = copies[leads[story_id]]
        # An article dated past what the feeds let through waits to join the coverage,
        # the topics and the providers of its story until it falls due.
        members = tuple(a for a in everyone if published[a] <= horizon or a == leads[story_id])
        keys = frozenset(
            k for a in members for k in map(key_of, spellings.get(a, ())) if k is not None
        )
        providers = {a: _provider(copies[a]) for a in everyone}
        decided.kept.extend(Member(a, story_id, copies[a].source, providers[a]) for a in everyone)
        facts = StoryFacts(frozenset(p for a in members if (p := providers[a]) is not None))
        if len(members) > 1:
            lead = story_copy(lead, [copies[a] for a in members])
            first = stored[lead.source]
            others = [stored[copies[a].source] for a in members if a != leads[story_id]]
            related = story_related(first, others)
            shown = related_to_json(kept_coverage(first, related))
            facts = StoryFacts(facts.providers, shown, new_outlets(first, related))
        decision = decide(
            story_id,
            lead,
            keys,
            columns.get(story_id),
            feeds.get(story_id, frozenset()),
            ledger.get(story_id),
            states,
            link_rules,
            now,
            facts,
            rehash is not None,
        )
        if decision.changed or decision.ledger is not None:
            decided.decisions.append(decision)
        if decision.changed:
            decided.changed += 1
            decided.touched |= decision.touched
    return decided


def _write(store: StateStore, decided: _Decided, applied: Applied) -> None:
    """Write what `_decide` decided."""
    store.links.ensure(decided.urls)
    store.entries.apply(decided.decisions)
    store.stories.keep_members(decided.kept, [])
    applied.entries_changed += decided.changed
    applied.feeds |= decided.touched


def _batches(
    stories: Sequence[tuple[str, tuple[str, ...]]],
) -> Iterator[list[tuple[str, tuple[str, ...]]]]:
    """The stories, CHUNK articles (or one story more) at a time."""
    batch: list[tuple[str, tuple[str, ...]]] = []
    size = 0
    for story in stories:
        batch.append(story)
        size += len(story[1])
        if size >= CHUNK:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class _Job(msgspec.Struct, frozen=True):
    """One chunk of stories for a worker to decide (`decide_job`)."""

    reader: Callable[[], StateStore]
    prepare: Callable[[Sequence[str], Sequence[Decision], Sequence[Member]], object]
    batch: list[tuple[str, tuple[str, ...]]]
    published: dict[str, int]
    """Of the batch's articles."""
    horizon: int
    rules: TopicRules
    link_rules: LinkRules
    now: datetime
    rehash: str | None


class _Prepared(NamedTuple):
    """What a worker sends back for one chunk: the rows to write, and what changed."""

    rows: object
    changed: int
    touched: list[tuple[str, str]]


def decide_job(job: _Job) -> _Prepared:
    """`_decide` in a worker process, on the state as `job.reader` opens it (once per
    process); returns the rows `WorkerAccess.write` writes."""
    store = opened_here(job.reader)
    key_of = _keys(job.rules)
    decided = _decide(
        store, job.batch, job.published, job.horizon, key_of, job.link_rules, job.now, job.rehash
    )
    return _Prepared(
        job.prepare(decided.urls, decided.decisions, decided.kept),
        decided.changed,
        [(f.kind, f.key) for f in decided.touched],
    )


def _provider(copy: SeedCopy) -> str | None:
    return provider_key(copy.provider_domain, copy.original_url or copy.web_url)
