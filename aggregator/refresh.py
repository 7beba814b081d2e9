"""Bring the entries whose seeds or links changed up to date: read, decide, write.

The store says which entries are due and holds their inputs; `aggregator.entries`
decides; the store writes the decisions. One transaction: an `Interrupted`
(or any error) rolls everything back, and the entries stay due.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aggregator.entries import decide, pick_copies
from aggregator.errors import Interrupted
from aggregator.feeds import FeedKey
from aggregator.links import DEFAULT_LINK_RULES, LinkRules
from aggregator.providers import provider_key
from aggregator.store.protocol import StateStore
from aggregator.topics import TopicRules

CHUNK = 500
"""Entries decided at a time (what is read for them is read in one go)."""


@dataclass
class Applied:
    """What one `refresh` changed."""

    feeds: set[FeedKey] = field(default_factory=set)
    """The feeds (of kinds that store their members) whose content may have changed."""
    entries_changed: int = 0
    """Entries added, removed or changed (in content, feeds or filter fields)."""


def _never() -> bool:
    return False


def refresh(
    store: StateStore,
    rules: TopicRules,
    now: datetime,
    should_stop: Callable[[], bool] = _never,
    link_rules: LinkRules = DEFAULT_LINK_RULES,
) -> Applied:
    """Bring every entry due for refresh up to date: copy used, feeds, link, ledger.

    Returns what changed. Raises `Interrupted` when `should_stop` turns true
    (checked before each chunk; nothing is kept and the entries stay due), and
    `StateError` from the store.
    """
    applied = Applied()
    resolved: dict[str, str | None] = {}

    def key_of(spelling: str) -> str | None:
        if spelling not in resolved:
            hit = rules.resolve(spelling)
            resolved[spelling] = hit[0] if hit else None
        return resolved[spelling]

    entries, links = store.entries, store.links
    with store.transaction():
        ids = entries.dirty()
        for start in range(0, len(ids), CHUNK):
            if should_stop():
                raise Interrupted
            chunk = ids[start : start + CHUNK]
            copies = pick_copies(entries.copies(chunk))
            urls = sorted({u for c in copies.values() for u in (c.original_url, c.web_url) if u})
            states = links.link_states(urls)
            spellings = entries.spellings(chunk)
            columns = entries.columns(chunk)
            feeds = entries.feeds_of(chunk)
            ledger = entries.ledger(chunk)
            decisions = []
            for entry_id in chunk:
                names = spellings.get(entry_id, ())
                keys = frozenset(k for k in map(key_of, names) if k)
                copy = copies.get(entry_id)
                provider = (
                    None
                    if copy is None
                    else provider_key(copy.provider_domain, copy.original_url or copy.web_url)
                )
                decision = decide(
                    entry_id,
                    copy,
                    keys,
                    columns.get(entry_id),
                    feeds.get(entry_id, frozenset()),
                    ledger.get(entry_id),
                    states,
                    link_rules,
                    now,
                    provider,
                )
                if decision.changed or decision.ledger is not None:
                    decisions.append(decision)
                if decision.changed:
                    applied.entries_changed += 1
                    applied.feeds |= decision.touched
            links.ensure(urls)
            entries.apply(decisions)
        entries.clear_dirty()
    return applied
