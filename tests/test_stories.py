"""One entry per story: the seeds that tell the same story become one entry.

The rules readers depend on are checked three ways:

- the pure decisions (`aggregator.stories`) on examples, and for any input (Hypothesis):
  ids do not depend on the order of anything, deciding again changes nothing;
- a Hypothesis state machine that adds, edits, re-dates, renames and removes seeds of a
  handful of articles on a real SQLite state file, refreshing after each step, and
  checks after each: the stories are what the relation says; an id once published
  names no other story and does not vanish while its story lives (on a merge the older
  id survives); a cold refresh of the same seeds (other names, another order) on a copy
  of the ledger gives the same stories, ids, entries and dates; an entry's `updated`
  stays unless what it shows changed, and moves when its coverage gains an outlet;
- real builds: the real seed and a seed whose article is among its related articles
  give one entry, with both outlets' coverage, in Atom, RSS, JSON Feed and on the
  topic page, every document validated, and one entry in `reader` and feedparser.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from msgspec import structs
from reader import make_reader

from aggregator.entries import Decision
from aggregator.model import Article, LoadedSeed, Provider, Related
from aggregator.plan import LedgerRow, to_record
from aggregator.providers import provider_key
from aggregator.refresh import refresh
from aggregator.scan import SeedFile
from aggregator.store import MemoryStore, SqliteStore, StateStore
from aggregator.store.rows import Member
from aggregator.stories import (
    StoryRules,
    assign_ids,
    components,
    coverage,
    lead_of,
    outlet,
    story_related,
)
from aggregator.topics import TopicRules
from aggregator.urls import entry_id, host_of
from tests.conftest import NOW, Site, seed_text
from tests.feedcheck import ATOM, check_feed, check_rss
from tests.pagecheck import check_page, validate_pages, vnu

ROOT = Path(__file__).parent.parent
REAL_SEED = ROOT / "seeds" / "000_792b0d4a2dfad34b.txt"
JURIST = (
    "https://www.jurist.org/news/2021/08/"
    "civil-society-groups-urge-uk-to-ban-live-facial-recognition-technology/"
)
SKY = (
    "https://news.sky.com/story/"
    "civil-liberties-groups-demand-government-bans-facial-recognition-cameras-12388513"
)
REGISTER = "https://www.theregister.com/2021/08/23/facial_recognition_letter/"
DAY = 86_400_000_000
RULES = StoryRules()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ids(*names: str) -> dict[str, int]:
    return {name: day * DAY for day, name in enumerate(names)}


# -- the pure decisions ----------------------------------------------------------------------


def test_a_link_either_way_within_the_window_makes_one_story() -> None:
    published = {"a": 0, "b": 2 * DAY, "c": 4 * DAY, "d": 10 * DAY}
    links = [("b", "a"), ("b", "c"), ("d", "c"), ("a", "x")]  # x: no seed holds it
    assert components(published, links, RULES) == [("a", "b", "c"), ("d",)]
    assert components(published, links, StoryRules(merge=False)) == [
        ("a",),
        ("b",),
        ("c",),
        ("d",),
    ]
    narrow = StoryRules(window=timedelta(days=1))
    assert components(published, links, narrow) == [("a",), ("b",), ("c",), ("d",)]


def test_the_lead_is_the_earliest_published_then_the_smaller_id() -> None:
    assert lead_of(("b", "a", "c"), {"a": 5, "b": 1, "c": 1}) == "b"


def test_a_new_story_takes_its_leads_id_and_a_published_one_keeps_its_own() -> None:
    published = {"a": 0, "b": DAY}
    assert assign_ids([("a", "b")], published, {}, {}) == ["a"]
    # b was published on its own first: when a (earlier) joins, the entry stays b
    assert assign_ids([("a", "b")], published, {"b": "b"}, {"b": T0}) == ["b"]


def test_when_two_published_stories_merge_the_older_id_survives() -> None:
    published = {"a": 0, "b": DAY, "c": 0}
    previous = {"a": "a", "b": "a", "c": "c"}
    seen = {"a": T0 + timedelta(hours=1), "c": T0}  # c was published first
    assert assign_ids([("a", "b", "c")], published, previous, seen) == ["c"]
    # and when they split again, a comes back for its own story
    assert assign_ids([("a", "b"), ("c",)], published, {**previous, "a": "c", "b": "c"}, seen) == [
        "a",
        "c",
    ]


def test_on_a_split_the_part_holding_the_ids_article_keeps_it() -> None:
    published = {"a": 0, "b": DAY, "c": 2 * DAY}
    previous = {"a": "a", "b": "a", "c": "a"}
    seen = {"a": T0}
    assert assign_ids([("a",), ("b", "c")], published, previous, seen) == ["a", "b"]


def test_an_article_back_after_its_id_went_on_without_it_gets_a_new_id() -> None:
    """a's id went on with b when a's seed went; a, back and unrelated, does not take it."""
    published = {"a": 20 * DAY, "b": DAY}
    previous = {"b": "a"}
    seen = {"a": T0}
    b_id, a_id = assign_ids([("b",), ("a",)], published, previous, seen)
    assert b_id == "a" and a_id not in {"a", "b"} and a_id.startswith("urn:uuid:")
    # once published, the new id stays with a
    again = assign_ids([("b",), ("a",)], published, {"b": "a", "a": a_id}, {**seen, a_id: T0})
    assert again == ["a", a_id]


def test_when_the_ids_article_is_gone_the_part_with_most_of_its_members_keeps_it() -> None:
    published = {"b": DAY, "c": 2 * DAY, "d": 3 * DAY}
    previous = {"b": "a", "c": "a", "d": "a"}
    seen = {"a": T0}
    assert assign_ids([("b",), ("c", "d")], published, previous, seen) == ["b", "a"]
    # a tie: the part whose lead was published first
    assert assign_ids([("c",), ("b",)], published, {"b": "a", "c": "a"}, seen) == ["c", "a"]


@st.composite
def story_inputs(
    draw: st.DrawFn,
) -> tuple[list[tuple[str, ...]], dict[str, int], dict[str, str], dict[str, datetime]]:
    names = [f"u{n}" for n in range(draw(st.integers(1, 8)))]
    published = {n: draw(st.integers(0, 5)) * DAY for n in names}
    links = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(names)), max_size=12))
    groups = components(published, links, RULES)
    pool = [*names, "gone1", "gone2"]
    previous = draw(st.dictionaries(st.sampled_from(names), st.sampled_from(pool)))
    seen_ids = draw(st.sets(st.sampled_from(pool)))
    seen_ids |= set(previous.values())
    seen = {i: T0 + timedelta(hours=draw(st.integers(0, 3))) for i in sorted(seen_ids)}
    return groups, published, previous, seen


@settings(max_examples=300, deadline=None)
@given(inputs=story_inputs(), order=st.randoms(use_true_random=False))
def test_ids_are_distinct_order_free_and_settled(
    inputs: tuple[list[tuple[str, ...]], dict[str, int], dict[str, str], dict[str, datetime]],
    order: Any,
) -> None:
    groups, published, previous, seen = inputs
    first = assign_ids(groups, published, previous, seen)
    assert len(set(first)) == len(first)
    for story, story_id in zip(groups, first, strict=True):
        # an id is a member's own, or one a member was given before, or a new one
        new = story_id not in {*published, *seen, *previous.values()}
        assert story_id in story or story_id in {previous.get(m) for m in story} or new
    # the same inputs in any order give the same ids
    shuffled = list(zip(groups, first, strict=True))
    order.shuffle(shuffled)
    again = assign_ids(
        [tuple(reversed(s)) for s, _ in shuffled],
        dict(reversed(list(published.items()))),
        dict(reversed(list(previous.items()))),
        dict(reversed(list(seen.items()))),
    )
    assert again == [i for _, i in shuffled]
    # deciding again, once the ids are published, changes nothing
    now_given = {m: i for story, i in zip(groups, first, strict=True) for m in story}
    now_seen = {**seen, **{i: T0 + timedelta(hours=9) for i in first if i not in seen}}
    assert assign_ids(groups, published, now_given, now_seen) == first


def _outlet_as_specified(provider: Provider | None, url: str) -> str:
    """`outlet` as its docstring says it: the provider's key, else the URL's host, else the
    provider's name, else the URL."""
    host = ""
    with contextlib.suppress(ValueError):
        host = host_of(url)
    found = [provider_key(provider.domain if provider else None, url), host]
    return next((x for x in found if x), provider.name.casefold() if provider else url)


_DOMAINS = st.sampled_from(
    [
        "",
        "bbc.co.uk",
        "news.bbc.co.uk",
        "https://www.sky.com/news",
        "x.example",
        "localhost",
        "127.0.0.1",
        "[::1]",
        "co.uk",
        "Straße.de",
        "xn--strae-oqa.de",
        "a..b",
        "-bad-.com",
        "//",
    ]
)
_URLS = st.sampled_from(
    [
        "",
        "https://www.theregister.com/a",
        "http://news.bbc.co.uk/x",
        "https://x.example/p",
        "http://[::1]:8080/x",
        "https://127.0.0.1/",
        "http://bad port:99999/",
        "https://h:99999/",
        "http:///path",
        "not a url",
        "https://Straße.de/p",
        "https://user@mail.example.org/",
    ]
)


@given(
    st.none()
    | st.builds(Provider, st.sampled_from(["Wire", "", "BBC News"]), _DOMAINS | st.none()),
    _URLS | st.text(max_size=30),
)
def test_an_outlet_is_the_provider_then_the_host_then_the_name(
    provider: Provider | None, url: str
) -> None:
    assert outlet(provider, url) == _outlet_as_specified(provider, url)


def test_coverage_of_a_story_is_every_member_and_related_article_one_per_outlet() -> None:
    day = datetime(2021, 8, 23, tzinfo=UTC)
    sky = Provider("Sky", "sky.com")
    lead = Article(
        "sky.md",
        "Sky's",
        day,
        SKY,
        None,
        provider=sky,
        related=(Related("Jurist's, as Sky lists it", JURIST),),
    )
    jurist = Article(
        "jurist.md",
        "Jurist's",
        day + timedelta(days=2),
        JURIST,
        None,
        provider=Provider("Jurist", "jurist.org"),
        excerpt="The letter.",
        quality=70,
        related=(
            Related("Sky's, as Jurist lists it", SKY, sky),
            Related("The Register", REGISTER, Provider("The Register", "theregister.com")),
            Related("Another on Jurist", "https://www.jurist.org/other/"),
        ),
    )
    related = story_related(lead, [jurist])
    # a member comes before a mention of it, with its own fields; the lead is never listed
    assert [r.url for r in related] == [JURIST, REGISTER, "https://www.jurist.org/other/"]
    assert related[0].title == "Jurist's" and related[0].excerpt == "The letter."
    shown = coverage(structs.replace(lead, related=related), 5)
    assert [outlet(r.provider, r.url) for r in shown] == ["jurist.org", "theregister.com"]


# -- the state machine -----------------------------------------------------------------------

ARTICLES = 5
OUTLETS = ("alpha.co.uk", "beta.com", "gamma.org")
TOPICS = ("AI", "Space")
NAMES = ("a.md", "b.md", "c.md", "d.md", "e.md", "f.md", "g.md")
BASE = datetime(2024, 5, 1, 8, tzinfo=UTC)
MACHINE_RULES = StoryRules(window=timedelta(days=2))


def url_of(article: int) -> str:
    return f"https://www.{OUTLETS[article % len(OUTLETS)]}/story/{article}"


@dataclass(frozen=True)
class SeedModel:
    """What the machine put in one article's seed."""

    day: int
    related: frozenset[int]
    """Other articles of the machine its seed lists."""
    outside: int | None
    """An outlet (index) it also lists an article of that no seed holds, if any."""
    topic: str
    title: str

    def article(self, number: int, source: str) -> Article:
        related = [
            Related(f"About {n}", url_of(n), Provider(f"Outlet {n}")) for n in sorted(self.related)
        ]
        if self.outside is not None:
            related.append(Related("Elsewhere", f"https://news.outside{self.outside}.net/x"))
        return Article(
            source,
            self.title,
            BASE + timedelta(days=self.day),
            url_of(number),
            None,
            topics=(self.topic,),
            provider=Provider(f"Outlet {number}", OUTLETS[number % len(OUTLETS)]),
            related=tuple(related),
        )


def seed_models() -> st.SearchStrategy[SeedModel]:
    return st.builds(
        SeedModel,
        day=st.integers(0, 5),
        related=st.frozensets(st.integers(0, ARTICLES - 1), max_size=2),
        outside=st.none() | st.integers(0, 1),
        topic=st.sampled_from(TOPICS),
        title=st.sampled_from(("One", "Two")),
    )


def put(store: StateStore, seeds: Mapping[int, tuple[str, SeedModel]], order: list[int]) -> None:
    """Store the seeds of these articles (as `scan` would: every file read)."""
    batch = []
    for number in order:
        source, model = seeds[number]
        record = to_record(model.article(number, source))
        batch.append(
            (
                SeedFile(f"/seeds/{source}", source, 1, 1, 0, 0),
                LoadedSeed(source, f"{source}:{record.shown}", record, None, ()),
            )
        )
    store.seeds.store_seeds(batch)


@dataclass(frozen=True)
class Shown:
    """What the machine reads back of one entry."""

    members: frozenset[int]
    title: str
    url: str
    related: tuple[str, ...]
    topics: tuple[str, ...]
    updated: datetime


def read_back(store: StateStore) -> dict[str, Shown]:
    """Entry id → what it shows, for every story of the machine's articles."""
    articles = {entry_id(url_of(n)): n for n in range(ARTICLES)}
    given = store.stories.stories_of(sorted(articles))
    found: dict[str, set[int]] = {}
    for article, story in given.items():
        found.setdefault(story, set()).add(articles[article])
    shown = {}
    for entry in store.entries.entries(sorted(found)):
        shown[entry.id] = Shown(
            frozenset(found[entry.id]),
            entry.article.title,
            entry.article.url,
            tuple(r.url for r in entry.article.related),
            entry.topic_keys,
            entry.updated,
        )
    assert shown.keys() == found.keys(), "every story has its entry"
    return shown


def expected_stories(seeds: Mapping[int, tuple[str, SeedModel]]) -> set[frozenset[int]]:
    """The stories, worked out here by brute force from what the seeds say."""
    groups = {n: {n} for n in seeds}
    window = MACHINE_RULES.window.days
    changed = True
    while changed:
        changed = False
        for a, (_, one) in seeds.items():
            for b, (_, other) in seeds.items():
                linked = b in one.related or a in other.related
                near = abs(one.day - other.day) <= window
                if a != b and linked and near and groups[a] is not groups[b]:
                    merged = groups[a] | groups[b]
                    for n in merged:
                        groups[n] = merged
                    changed = True
    return {frozenset(g) for g in groups.values()}


Signature = tuple[int, SeedModel, list[str], frozenset[str]]


def signature(seeds: Mapping[int, tuple[str, SeedModel]], members: frozenset[int]) -> Signature:
    """What readers see of a story, as far as it may date the entry anew: its lead's
    seed, its topics, and the outlets its coverage names."""
    lead = min(members, key=lambda n: (seeds[n][1].day, entry_id(url_of(n))))
    outlets = set()  # of the coverage: every article of the story but the lead itself
    for n in members:
        article = seeds[n][1].article(n, "x")
        if n != lead:
            outlets.add(outlet(article.provider, article.url))
        outlets.update(outlet(r.provider, r.url) for r in article.related if r.url != url_of(lead))
    topics = sorted({seeds[n][1].topic for n in members})
    return (lead, seeds[lead][1], topics, frozenset(outlets))


class StoriesMachine(RuleBasedStateMachine):
    """Seeds of a handful of articles come, change, move and go; refreshed each step."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="stories-"))
        self.store = SqliteStore(self.tmp / "state.sqlite3")
        self.seeds: dict[int, tuple[str, SeedModel]] = {}
        self.step = 0
        self.before: dict[str, Shown] = {}
        self.signatures: dict[str, Signature] = {}
        self.history: dict[str, set[int]] = {}
        """Every entry id ever published → every article it has named."""

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def now(self) -> datetime:
        return T0 + timedelta(hours=self.step)

    def free_name(self, data: st.DataObject) -> str:
        taken = {source for source, _ in self.seeds.values()}
        return data.draw(st.sampled_from([n for n in NAMES if n not in taken]))

    def apply(self, changed: list[int], removed: tuple[str, ...] = ()) -> None:
        self.step += 1
        if removed:
            self.store.seeds.forget_seeds(removed)
        if changed:
            put(self.store, self.seeds, changed)
        refresh(self.store, TopicRules.build(), self.now(), story_rules=MACHINE_RULES)
        self.check()

    @rule(data=st.data(), number=st.integers(0, ARTICLES - 1), model=seed_models())
    def write(self, data: st.DataObject, number: int, model: SeedModel) -> None:
        """Add an article's seed, or change what it says (dates, related, topic, title)."""
        source = self.seeds[number][0] if number in self.seeds else self.free_name(data)
        self.seeds[number] = (source, replace(model, related=model.related - {number}))
        self.apply([number])

    @rule(number=st.integers(0, ARTICLES - 1))
    def remove(self, number: int) -> None:
        if number in self.seeds:
            source, _ = self.seeds.pop(number)
            self.apply([], (source,))

    @rule(data=st.data(), number=st.integers(0, ARTICLES - 1))
    def rename(self, data: st.DataObject, number: int) -> None:
        if number in self.seeds:
            source, model = self.seeds[number]
            self.seeds[number] = (self.free_name(data), model)
            self.step += 1
            self.store.seeds.forget_seeds([source])
            put(self.store, self.seeds, [number])
            refresh(self.store, TopicRules.build(), self.now(), story_rules=MACHINE_RULES)
            self.check()

    def check(self) -> None:
        shown = read_back(self.store)
        # the stories are what the relation says
        assert {s.members for s in shown.values()} == expected_stories(self.seeds)
        for story_id, entry in shown.items():
            lead = min(entry.members, key=lambda n: (self.seeds[n][1].day, entry_id(url_of(n))))
            assert entry.url == url_of(lead)  # the lead: the earliest published
            assert entry.topics == tuple(
                sorted({self.seeds[n][1].topic.lower() for n in entry.members})
            )
            # a published id names no other story: it shares an article with what it named
            named = self.history.get(story_id)
            assert named is None or named & entry.members, (story_id, named, entry.members)
        self.vanished_only_by_merging(shown)
        self.dated_as_readers_expect(shown)
        self.same_as_a_cold_refresh(shown)
        for story_id, entry in shown.items():
            self.history.setdefault(story_id, set()).update(entry.members)
        self.before = shown
        self.signatures = {i: signature(self.seeds, e.members) for i, e in shown.items()}

    def vanished_only_by_merging(self, shown: dict[str, Shown]) -> None:
        """An id that named a story before and names none now: every article of its story
        still held is in a story that kept an id published before (merged), or none is."""
        story_of = {n: i for i, e in shown.items() for n in e.members}
        for story_id, entry in self.before.items():
            if story_id in shown:
                continue
            living = [n for n in entry.members if n in story_of]
            assert all(story_of[n] in self.before for n in living), (story_id, entry, shown)

    def dated_as_readers_expect(self, shown: dict[str, Shown]) -> None:
        for story_id, entry in shown.items():
            earlier = self.before.get(story_id)
            if earlier is None:
                continue
            was, now = self.signatures[story_id], signature(self.seeds, entry.members)
            if was == now:
                assert entry.updated == earlier.updated, (story_id, was)
            elif was[:3] == now[:3] and now[3] > was[3]:
                assert entry.updated == self.now(), "a new outlet dates the story anew"

    def same_as_a_cold_refresh(self, shown: dict[str, Shown]) -> None:
        """The same seeds under other names, stored in another order, on a copy of the
        ledger and of the stories given: the same stories, ids, entries and dates."""
        cold = MemoryStore()
        try:
            renamed = {n: (f"z/{n}-{source}", m) for n, (source, m) in self.seeds.items()}
            if renamed:
                put(cold, renamed, sorted(renamed, reverse=True))
            ids = sorted({*shown, *(entry_id(url_of(n)) for n in range(ARTICLES)), *self.history})
            ledger = self.store.entries.ledger(ids)
            copy_ledger(cold, ledger)
            numbers = {entry_id(url_of(n)): n for n in range(ARTICLES)}
            given = self.store.stories.stories_of(sorted(numbers))
            cold.stories.keep_members(
                [Member(a, story, f"z/{numbers[a]}", None) for a, story in given.items()], []
            )
            refresh(cold, TopicRules.build(), self.now(), story_rules=MACHINE_RULES)
            assert read_back(cold) == shown
        finally:
            cold.close()

    @invariant()
    def nothing_is_due(self) -> None:
        assert self.store.entries.dirty() == []


def copy_ledger(store: StateStore, ledger: Mapping[str, LedgerRow]) -> None:
    """Write these ledger rows into `store` (and nothing else)."""
    store.entries.apply(
        [
            Decision(i, None, frozenset(), row, False, False, frozenset())
            for i, row in ledger.items()
        ]
    )


def run_machine(examples: int, steps: int) -> None:
    run_state_machine_as_test(
        StoriesMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_stories_keep_their_ids_and_dates_as_seeds_come_and_go() -> None:
    run_machine(20, 15)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_stories_keep_their_ids_and_dates_as_seeds_come_and_go_long() -> None:
    run_machine(400, 50)


# -- real builds -----------------------------------------------------------------------------

ALL_FORMATS = {"feeds.formats": ("atom", "json", "rss")}


def add_sky(site: Site, **fields: Any) -> None:
    """Sky's article, which the real seed (Jurist's) lists among its related articles."""
    doc: dict[str, Any] = {
        "title": "Civil liberties groups demand government bans facial recognition cameras",
        "excerpt": "Police and Home Office are accused of bypassing parliament.",
        "publishedDateTime": "2021-08-23T09:27:00Z",
        "originalUrl": None,
        "webUrl": SKY,
        "provider": {"name": "Sky", "domain": "sky.com"},
        "topics": ["Privacy"],
        "quality": 58,
        "related": [
            {
                "title": "Letter calls for a ban",
                "webUrl": REGISTER,
                "provider": {"name": "The Register", "domain": "theregister.com"},
            }
        ],
    }
    doc.update(fields)
    site.add("sky.md", seed_text(**doc))


def outlets_in(markup: str) -> list[str]:
    return [li.split(":")[0].strip() for li in markup.split("<li>")[1:]]


def test_the_real_seed_and_an_article_it_lists_are_one_entry_everywhere(site: Site) -> None:
    shutil.copy(REAL_SEED, site.seeds / REAL_SEED.name)
    add_sky(site)
    report = site.build(overrides=ALL_FORMATS)
    assert report.rejected == [] and report.scan.warnings == []
    sky_id, jurist_id = entry_id(SKY), entry_id(JURIST)
    for slug in ("all", "ai", "privacy"):  # in the topic feeds of both seeds
        atom = check_feed(site.feed(slug))
        entries = atom.findall(f"{ATOM}entry")
        assert [e.findtext(f"{ATOM}id") for e in entries] == [sky_id], slug
        content = entries[0].findtext(f"{ATOM}content") or ""
        # the lead (Sky's, the earliest) is the entry; both seeds' coverage is in it
        assert entries[0].findtext(f"{ATOM}title", "").startswith("Civil liberties groups")
        assert f'href="{JURIST}"' in content and f'href="{REGISTER}"' in content
        assert "Daily Mail" in content and "Sky:" not in content
        rss = check_rss((site.out / "feeds" / f"{slug}.rss").read_bytes())
        assert [i.findtext("guid") for i in rss.iter("item")] == [sky_id]
        assert f'href="{JURIST}"' in (rss.findtext("channel/item/description") or "")
        data = json.loads((site.out / "feeds" / f"{slug}.json").read_bytes())
        assert [i["id"] for i in data["items"]] == [sky_id]
        assert f'href="{REGISTER}"' in data["items"][0]["content_html"]
    assert jurist_id not in (site.out / "feeds" / "all.atom").read_text("utf-8")
    # in the feed of each outlet whose article it holds
    for provider in ("sky.com", "jurist.org"):
        provider_feed = check_feed(
            (site.out / "feeds" / "providers" / f"{provider}.atom").read_bytes()
        )
        assert [e.findtext(f"{ATOM}id") for e in provider_feed.findall(f"{ATOM}entry")] == [sky_id]
    opml = (site.out / "providers.opml").read_text("utf-8")
    assert "providers/sky.com.atom" in opml and "providers/jurist.org.atom" in opml
    page_path = site.out / "topics" / "privacy.html"
    page = check_page(page_path.read_bytes())
    line = next(p for p in page.tree.iter("p") if "".join(p.itertext()).startswith("Also covered"))
    assert "Jurist" in "".join(line.itertext()) and "The Register" in "".join(line.itertext())
    if vnu() is not None:
        assert validate_pages([page_path, site.out / "index.html"]) == ""
    parsed = feedparser.parse(site.feed("all"))
    assert parsed.bozo == 0 and [e.id for e in parsed.entries] == [sky_id]
    reader = make_reader(":memory:", feed_root=str(site.out))
    try:
        for name in ("all.atom", "all.rss", "all.json"):
            reader.add_feed(f"feeds/{name}")
        for result in reader.update_feeds_iter(scheduled=False):
            assert not isinstance(result.value, Exception), result.value
        seen = {(e.feed_url, e.id) for e in reader.get_entries()}
        assert {feed for feed, _ in seen} == {
            f"feeds/{n}" for n in ("all.atom", "all.rss", "all.json")
        }
        assert {entry for _, entry in seen} == {sky_id}  # one entry in each feed, not two
    finally:
        reader.close()


def test_merging_off_keeps_one_entry_per_article(site: Site) -> None:
    shutil.copy(REAL_SEED, site.seeds / REAL_SEED.name)
    add_sky(site)
    site.build(overrides={"stories.merge": False})
    assert sorted(updated_of(site)) == sorted([entry_id(SKY), entry_id(JURIST)])
    # and on again: one entry, with the id published first kept (both were: the older)
    site.build(NOW + timedelta(hours=1))
    ids = list(updated_of(site))
    assert len(ids) == 1 and ids[0] in {entry_id(SKY), entry_id(JURIST)}


def test_seeds_too_far_apart_are_two_stories(site: Site) -> None:
    shutil.copy(REAL_SEED, site.seeds / REAL_SEED.name)
    add_sky(site, publishedDateTime="2021-08-10T09:00:00Z")  # 16 days before Jurist's
    site.build()
    assert len(check_feed(site.feed("all")).findall(f"{ATOM}entry")) == 2
    site.build(NOW + timedelta(hours=1), overrides={"stories.window_days": 20})
    assert len(check_feed(site.feed("all")).findall(f"{ATOM}entry")) == 1


def updated_of(site: Site, slug: str = "all") -> dict[str, str]:
    entries = check_feed(site.feed(slug)).findall(f"{ATOM}entry")
    return {e.findtext(f"{ATOM}id") or "": e.findtext(f"{ATOM}updated") or "" for e in entries}


def test_a_story_is_updated_when_a_new_outlet_joins_and_not_for_one_it_shows(site: Site) -> None:
    shutil.copy(REAL_SEED, site.seeds / REAL_SEED.name)
    site.build()
    (jurist_id,) = updated_of(site)
    first = updated_of(site)[jurist_id]
    # Sky's own article joins, later than Jurist's, on the same topics: Sky is an outlet
    # the story showed already
    later_on_the_story = {"publishedDateTime": "2021-08-26T10:00:00Z", "topics": ["AI"]}
    add_sky(site, related=[], **later_on_the_story)
    site.build(NOW + timedelta(hours=1))
    assert updated_of(site) == {jurist_id: first}  # the published id stays; not updated
    content = check_feed(site.feed("all")).findtext(f"{ATOM}entry/{ATOM}content") or ""
    assert "Police and Home Office are accused of bypassing parliament." in content  # Sky's own
    # now Sky's seed names The Register: a new outlet
    add_sky(site, **later_on_the_story)
    later = NOW + timedelta(hours=2)
    site.build(later)
    assert updated_of(site) == {jurist_id: later.isoformat()}
    # Sky's seed goes: the story is Jurist's alone again, under its id
    (site.seeds / "sky.md").unlink()
    site.build(NOW + timedelta(hours=3))
    assert list(updated_of(site)) == [jurist_id]


def entries_of(site: Site, slug: str = "all") -> list[Any]:
    return check_feed(site.feed(slug)).findall(f"{ATOM}entry")


def test_an_article_dated_ahead_joins_the_coverage_only_when_it_falls_due(site: Site) -> None:
    now = datetime(2026, 11, 30, 8, tzinfo=UTC)
    site.add(
        "c.md", title="Current", originalUrl="https://www.cur.com/s", publishedDateTime=iso(now)
    )
    ahead = now + timedelta(days=2, hours=4)
    site.add(
        "f.md",
        title="Embargoed",
        originalUrl="https://www.fut.com/s",
        publishedDateTime=iso(ahead),
        related=[{"title": "Current", "webUrl": "https://www.cur.com/s"}],
    )
    site.build(now)
    assert len(entries_of(site)) == 1
    assert "Embargoed" not in site.feed("all").decode()
    assert "Embargoed" not in (site.out / "topics" / "all.html").read_text("utf-8")
    assert not (site.out / "feeds" / "providers" / "fut.com.atom").exists()
    (first,) = updated_of(site).values()
    assert first == iso(now).replace("Z", "+00:00")  # not dated anew by what is held back
    due = ahead - timedelta(days=1)
    site.build(due)  # the moment it falls due
    content = entries_of(site)[0].findtext(f"{ATOM}content") or ""
    assert "Embargoed" in content
    assert list(updated_of(site).values()) == [due.isoformat()]  # dated anew then
    assert (site.out / "feeds" / "providers" / "fut.com.atom").exists()


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_story_passes_the_feed_filters_when_any_of_its_articles_does(site: Site) -> None:
    site.add("a.md", title="Early", originalUrl="https://early.com/s", quality=5, published=False)
    site.add(
        "b.md",
        title="Good",
        originalUrl="https://good.com/s",
        quality=90,
        published=True,
        publishedDateTime="2024-05-01T16:00:00Z",
        related=[{"title": "Early", "webUrl": "https://early.com/s"}],
    )
    site.build(overrides={"feeds.min_quality": 50, "feeds.require_published": True})
    (entry,) = entries_of(site)
    assert entry.findtext(f"{ATOM}title") == "Early"  # the lead, shown for the story
    assert "Good" in (entry.findtext(f"{ATOM}content") or "")


def test_an_article_from_the_leads_own_outlet_joining_dates_the_story_anew(site: Site) -> None:
    site.add("lead.md", title="Lead", originalUrl="https://www.o.com/lead", related=[])
    site.build()
    (first,) = updated_of(site).values()
    site.add(
        "follow.md",
        title="Follow-up",
        originalUrl="https://www.o.com/followup",
        publishedDateTime="2024-05-01T15:00:00Z",
        related=[{"title": "Lead", "webUrl": "https://www.o.com/lead"}],
    )
    later = NOW + timedelta(hours=1)
    site.build(later)
    assert list(updated_of(site).values()) == [later.isoformat()] != [first]


def test_an_article_is_never_coverage_of_itself_however_its_url_is_spelled(site: Site) -> None:
    site.add(
        "lead.md",
        title="Lead",
        originalUrl="https://www.lead.com/s",
        related=[{"title": "Self", "webUrl": "https://WWW.lead.com:443/s?utm_source=x#top"}],
    )
    site.add(
        "m.md",
        title="Member",
        originalUrl="https://www.member.com/s",
        publishedDateTime="2024-05-01T15:00:00Z",
        related=[{"title": "Lead again", "webUrl": "https://www.LEAD.com/s?utm_medium=y"}],
    )
    site.build()
    (entry,) = entries_of(site)
    content = entry.findtext(f"{ATOM}content") or ""
    assert "Member" in content and "Self" not in content and "Lead again" not in content
    related = [link.get("href") for link in entry.findall(f"{ATOM}link[@rel='related']")]
    assert related == ["https://www.member.com/s"]


def test_an_upgrade_that_merges_entries_under_another_lead_dates_them_anew(site: Site) -> None:
    shutil.copy(REAL_SEED, site.seeds / REAL_SEED.name)
    add_sky(site, topics=["AI"], related=[])
    site.build(overrides={"stories.merge": False})  # as a release before stories left it
    with sqlite3.connect(site.state) as db:
        db.execute("UPDATE ledger SET content_hash = 'made-the-old-way'")
        db.execute("DELETE FROM meta WHERE key = 'ledger_rules'")
    db.close()
    later = NOW + timedelta(hours=1)
    site.build(later)
    ((entry_id_kept, updated),) = updated_of(site).items()
    assert entry_id_kept in {entry_id(SKY), entry_id(JURIST)}
    assert entries_of(site)[0].findtext(f"{ATOM}title", "").startswith("Civil liberties")
    assert updated == later.isoformat()  # it shows Sky's article now: dated anew


def test_a_new_id_is_never_one_a_story_outside_the_change_holds() -> None:
    """Found by the state machine: a new id made from an article's own id must not be one
    an unrelated story, untouched by the change, holds already."""

    class Names:
        def __init__(self, *names: str) -> None:
            self.names = list(names)

        def draw(self, strategy: object) -> str:
            return self.names.pop(0)

    machine = StoriesMachine()

    def write(number: int, day: int, related: list[int], *name: str) -> None:
        model = SeedModel(day, frozenset(related), None, "AI", "One")
        machine.write(Names(*name), number, model)

    try:
        write(0, 0, [], "a.md")
        write(0, 0, [0, 2])
        write(2, 0, [], "b.md")
        machine.remove(0)
        write(1, 0, [], "a.md")
        write(0, 1, [], "c.md")
        write(3, 3, [0], "d.md")
        machine.remove(0)
        write(3, 0, [])
        write(0, 0, [], "c.md")  # checks every rule after each step
    finally:
        machine.teardown()
