"""The decisions about entries: which copy wins, what an entry looks like, what changed."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.entries import (
    Decision,
    EntryColumns,
    SeedCopy,
    decide,
    pick_copies,
    visible_change,
)
from aggregator.feeds import FeedKey, topic_feed
from aggregator.links import DEFAULT_LINK_RULES, LinkRules, LinkState, Outcome
from aggregator.plan import LedgerRow, fingerprint, to_micros
from aggregator.store.rows import entry_rows

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORIGINAL, WEB = "https://o.example/a", "https://w.example/a"


def copy(
    source: str = "a.md",
    entry_id: str = "e1",
    shown: str = "s",
    original: str | None = ORIGINAL,
    web: str | None = WEB,
    published: datetime = T0,
) -> SeedCopy:
    return SeedCopy(entry_id, source, to_micros(published), 0.5, True, shown, original, web)


def columns_of(c: SeedCopy, link: str | None = None, hidden: bool = False) -> EntryColumns:
    return EntryColumns(
        c.source, c.published_us, c.quality, c.is_published, c.original_url, c.web_url, link, hidden
    )


def state(
    url: str, status: Outcome, final: str | None = None, permanent: bool = False
) -> LinkState:
    return LinkState(url, status, final_url=final, permanent=permanent)


def test_the_copy_used_is_the_first_by_source_path() -> None:
    copies = [copy("b.md"), copy("a/z.md"), copy("c.md", "e2"), copy("a.md")]
    chosen = pick_copies(copies)
    assert {i: c.source for i, c in chosen.items()} == {"e1": "a.md", "e2": "c.md"}
    assert pick_copies([]) == {}


NOW = T0 + timedelta(days=2)
DEAD_ORIGINAL = {ORIGINAL: state(ORIGINAL, Outcome.DEAD)}
BOTH_DEAD = {**DEAD_ORIGINAL, WEB: state(WEB, Outcome.DEAD)}
MOVED = {ORIGINAL: state(ORIGINAL, Outcome.ALIVE, "https://o.example/new", permanent=True)}


@pytest.mark.parametrize(
    ("states", "rules", "link", "hidden"),
    [
        ({}, DEFAULT_LINK_RULES, None, False),
        (DEAD_ORIGINAL, DEFAULT_LINK_RULES, WEB, False),
        (BOTH_DEAD, DEFAULT_LINK_RULES, None, True),
        (DEAD_ORIGINAL, LinkRules(on_dead="drop"), None, True),
        (BOTH_DEAD, LinkRules(on_dead="keep"), None, False),
        (MOVED, DEFAULT_LINK_RULES, "https://o.example/new", False),
        (MOVED, LinkRules(follow_permanent=False), None, False),
    ],
)
def test_link_verdicts_decide_the_shown_link_and_whether_the_entry_is_hidden(
    states: dict[str, LinkState], rules: LinkRules, link: str | None, hidden: bool
) -> None:
    c = copy()
    decision = decide("e1", c, frozenset(), None, frozenset(), None, states, rules, NOW)
    assert decision.columns == columns_of(c, link, hidden)
    assert decision.ledger == LedgerRow(fingerprint("s", (), link), NOW, T0)
    assert decision.changed and decision.write_columns


def test_a_new_entry_is_written_with_its_feeds_and_dated_when_published() -> None:
    c = copy()
    d = decide(
        "e1", c, frozenset({"ai", "go"}), None, frozenset(), None, {}, DEFAULT_LINK_RULES, NOW
    )
    assert d.feeds == {topic_feed("ai"), topic_feed("go")}
    assert d.write_columns and d.write_feeds and d.touched == d.feeds
    assert d.ledger == LedgerRow(fingerprint("s", ("ai", "go")), NOW, T0)
    # It held no feed rows: writing its feeds deletes none first.
    assert not d.had_feeds
    assert entry_rows([d]).moved == [] and len(entry_rows([d]).feeds) == 2


def test_an_unchanged_entry_writes_nothing() -> None:
    c = copy()
    feeds = frozenset({topic_feed("ai")})
    ledger = LedgerRow(fingerprint("s", ("ai",)), T0, T0)
    d = decide(
        "e1", c, frozenset({"ai"}), columns_of(c), feeds, ledger, {}, DEFAULT_LINK_RULES, NOW
    )
    assert d == Decision("e1", columns_of(c), feeds, None, False, False, frozenset())
    assert not d.changed


def test_an_edit_moves_updated_and_a_topic_change_touches_both_feeds() -> None:
    c = copy(shown="edited")
    before = frozenset({topic_feed("ai")})
    ledger = LedgerRow(fingerprint("s", ("ai",)), T0, T0)
    d = decide(
        "e1", c, frozenset({"go"}), columns_of(c), before, ledger, {}, DEFAULT_LINK_RULES, NOW
    )
    assert d.ledger == LedgerRow(fingerprint("edited", ("go",)), T0, NOW)
    assert d.write_feeds and d.touched == {topic_feed("ai"), topic_feed("go")}
    assert d.had_feeds and entry_rows([d]).moved == ["e1"]


def test_an_entry_without_a_good_seed_is_removed_and_its_ledger_kept() -> None:
    before = frozenset({topic_feed("ai")})
    ledger = LedgerRow("h", T0, T0)
    stored = columns_of(copy())
    d = decide("e1", None, frozenset(), stored, before, ledger, {}, DEFAULT_LINK_RULES, NOW)
    assert d.columns is None and d.ledger is None
    assert d.write_columns and d.touched == before
    never = decide("e1", None, frozenset(), None, frozenset(), None, {}, DEFAULT_LINK_RULES, NOW)
    assert not never.changed and never.touched == frozenset()


@pytest.mark.parametrize(
    ("old", "new", "visible"),
    [
        (None, None, False),
        (None, state(ORIGINAL, Outcome.ALIVE), False),
        (None, state(ORIGINAL, Outcome.SUSPECT), False),
        (None, state(ORIGINAL, Outcome.DEAD), True),
        (state(ORIGINAL, Outcome.DEAD), state(ORIGINAL, Outcome.ALIVE), True),
        (None, state(ORIGINAL, Outcome.ALIVE, "https://n.example/", permanent=True), True),
        (None, state(ORIGINAL, Outcome.ALIVE, "https://n.example/", permanent=False), False),
    ],
)
def test_visible_change(old: LinkState | None, new: LinkState | None, visible: bool) -> None:
    assert visible_change(old, new) is visible


# -- properties -------------------------------------------------------------------------

sources = st.text(alphabet="abc/._", min_size=1, max_size=6)
copies_st = st.lists(
    st.builds(copy, source=sources, entry_id=st.sampled_from(["e1", "e2", "e3"])), max_size=12
)


@given(copies_st, st.randoms())
def test_the_copy_chosen_is_the_least_path_whatever_the_order(
    copies: list[SeedCopy], rnd: random.Random
) -> None:
    shuffled = list(copies)
    rnd.shuffle(shuffled)
    chosen = pick_copies(shuffled)
    assert set(chosen) == {c.entry_id for c in copies}
    for entry_id, c in chosen.items():
        assert c.source == min(x.source for x in copies if x.entry_id == entry_id)


outcomes = st.sampled_from(list(Outcome))
states_st = st.dictionaries(
    st.sampled_from([ORIGINAL, WEB]),
    st.builds(
        state,
        url=st.just(ORIGINAL),
        status=outcomes,
        final=st.sampled_from([None, "https://n.example/"]),
        permanent=st.booleans(),
    ),
)
topics_st = st.frozensets(st.sampled_from(["ai", "go", "rust"]))
rules_st = st.builds(
    LinkRules, on_dead=st.sampled_from(["fallback", "drop", "keep"]), follow_permanent=st.booleans()
)


@given(
    topics_st,
    topics_st,
    states_st,
    rules_st,
    st.booleans(),
    st.sampled_from([None, WEB]),
    st.integers(0, 10),
)
def test_deciding_again_after_applying_a_decision_changes_nothing(
    before_topics: frozenset[str],
    topics: frozenset[str],
    states: dict[str, LinkState],
    rules: LinkRules,
    stored: bool,
    web: str | None,
    days: int,
) -> None:
    states = {
        url: LinkState(url, s.status, final_url=s.final_url, permanent=s.permanent)
        for url, s in states.items()
    }
    c = copy(web=web)
    now = T0 + timedelta(days=days)
    before_feeds = frozenset(topic_feed(t) for t in before_topics) if stored else frozenset()
    before = columns_of(c) if stored else None
    ledger = LedgerRow("old", T0, T0) if stored else None
    first = decide("e1", c, topics, before, before_feeds, ledger, states, rules, now)
    assert first.feeds == {topic_feed(t) for t in topics}
    assert first.touched >= (first.feeds ^ before_feeds)
    if first.write_feeds:
        assert first.feeds != before_feeds
    assert first.columns is not None
    assert first.columns.hidden == (
        rules.on_dead != "keep"
        and ORIGINAL in states
        and states[ORIGINAL].status is Outcome.DEAD
        and (
            rules.on_dead == "drop"
            or web is None
            or (web in states and states[web].status is Outcome.DEAD)
        )
    )
    settled = first.ledger if first.ledger is not None else ledger
    again = decide(
        "e1", c, topics, first.columns, first.feeds, settled, states, rules, now + timedelta(days=1)
    )
    assert not again.changed and again.ledger is None
    assert again.touched == frozenset()


@given(st.lists(st.sampled_from(["x", "y"]), max_size=4))
def test_feeds_are_only_of_kinds_that_store_members(keys: list[str]) -> None:
    d = decide("e1", copy(), frozenset(keys), None, frozenset(), None, {}, DEFAULT_LINK_RULES, NOW)
    assert all(isinstance(f, FeedKey) and f.kind == "topic" for f in d.feeds)
