"""Link checks: what the checker should look at, and what its results change.

    plan (due URLs, minus paused hosts) → checker run (aggregator.checker)
        → apply (verdicts, host pauses) → refresh the entries whose link changed

The network run itself is the caller's (the app's): planning and applying touch
the state, the run does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aggregator.config import Config, LinksConfig
from aggregator.entries import visible_change
from aggregator.feeds import FeedKey
from aggregator.ingest import link_rules, story_rules, topic_rules
from aggregator.links import (
    LinkState,
    Outcome,
    Policy,
    Request,
    RunResult,
    advance,
    host_pauses,
    is_paused,
    network_down,
    pauses_left,
)
from aggregator.refresh import refresh
from aggregator.store import StateStore


@dataclass
class LinkReport:
    """What one applied link check changed."""

    states: list[LinkState]
    """The state of every URL checked, after the check."""
    changed: int
    """URLs whose change feeds can see (confirmed dead, alive again, moved for good)."""
    network_down: bool
    feeds: set[FeedKey]
    """The feeds (of kinds that store their members) whose content may have changed."""
    entries_changed: int


def stored_pauses(store: StateStore) -> dict[str, datetime]:
    """Returns host → until when it asked to be left alone (kept in the state across runs).

    Raises `StateError` when the state file cannot be read."""
    return store.links.pauses()


def paused(store: StateStore, now: datetime) -> dict[str, float]:
    """Returns host name or server → seconds it still asked to be left alone: for the
    checker, which defers the URLs of every name leading to such a server."""
    return pauses_left(stored_pauses(store), now)


def note_pauses(store: StateStore, result: RunResult, now: datetime) -> None:
    """Keep the pauses the hosts of `result` asked for (and drop those that are over).

    Raises `StateError` when the state file cannot be written."""
    pauses = host_pauses(stored_pauses(store), result, now)
    store.links.keep_pauses(pauses)


class LinkJob:
    """Plans link checks and applies their results to the state."""

    def __init__(self, config: Config, store: StateStore) -> None:
        self.store = store
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Use a new config from the next plan on."""
        self.config = config
        self.rules = topic_rules(config)
        self.link_rules = link_rules(config)
        self.story_rules = story_rules(config)

    @property
    def settings(self) -> LinksConfig:
        """The checker's settings for this job (the config's `links`)."""
        return self.config.links

    def plan(self, now: datetime, limit: int, everything: bool = False) -> list[Request]:
        """Returns what the link checker should look at now: new URLs first, then the most
        overdue. Raises `StateError` when the state file cannot be read."""
        pauses = stored_pauses(self.store)
        urls = [
            url
            for url in self.store.links.due_links(now, limit, everything)
            if not is_paused(url, pauses, now)
        ]
        states = self.store.links.link_states(urls)
        first_confirms = self.config.links.dead_after <= 1
        requests = []
        for url in urls:
            state = states.get(url)
            if state is None:
                requests.append(Request(url, confirm=first_confirms))
                continue
            # A URL already failing is confirmed dead only on what a GET says.
            confirm = first_confirms or state.failures > 0 or state.status is Outcome.DEAD
            requests.append(Request(url, state.etag, state.last_modified, confirm=confirm))
        return requests

    def apply(self, result: RunResult, now: datetime) -> LinkReport:
        """Store what a checker run found; entries whose link changes are brought up to date.

        Returns the verdicts and what changed. Raises `StateError` when the state file
        cannot be written."""
        links = self.config.links
        policy = Policy(
            recheck_hours=links.recheck_hours,
            dead_after=links.dead_after,
            dead_min_hours=links.dead_min_hours,
        )
        note_pauses(self.store, result, now)
        before = self.store.links.link_states([a.url for a in result.attempts])
        down = network_down(result.attempts)
        states = [advance(before.get(a.url), a, now, policy, down) for a in result.attempts]
        deferred = {url: now + timedelta(seconds=s) for url, s in result.deferred.items()}
        due = [s.url for s in states if visible_change(before.get(s.url), s)]
        self.store.links.save_link_states(states, deferred, due)
        changed = len(due)
        applied = refresh(
            self.store, self.rules, now, link_rules=self.link_rules, story_rules=self.story_rules
        )
        self.store.links.forget_unused_links()
        return LinkReport(states, changed, down, applied.feeds, applied.entries_changed)
