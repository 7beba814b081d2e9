"""The storage contract: the same tests against every state store engine.

Adding an engine = adding one entry to `ENGINES`; it is done when this file passes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.app import make_app
from aggregator.config import load_config
from aggregator.errors import Interrupted
from aggregator.feeds import ALL, FeedKey, topic_feed
from aggregator.links import LinkRules, LinkState, Outcome
from aggregator.model import Article, LoadedSeed, Related, SeedRecord, article_to_json
from aggregator.plan import FeedFilter, FeedStamp, to_micros
from aggregator.refresh import refresh
from aggregator.scan import SeedFile
from aggregator.store import MemoryStore, SqliteStore, StateStore
from aggregator.store.postgres import PostgresStore
from aggregator.store.rows import Member
from aggregator.topics import TopicRules
from tests.conftest import NOW
from tests.postgres import SCRATCH

ENGINES: dict[str, Callable[[Path], StateStore]] = {
    "sqlite": lambda tmp: SqliteStore(tmp / "state" / "aggregator.sqlite3"),
    "memory": lambda tmp: MemoryStore(),
    # A fresh schema of a database made for this test run; skipped when PostgreSQL cannot
    # be reached (unless AGGREGATOR_REQUIRE_POSTGRES is set: then failed).
    "postgres": lambda tmp: PostgresStore(SCRATCH.schema_url()),
}

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RULES = TopicRules.build()
EVERYTHING = FeedFilter(0.0, None, False, to_micros(T0 + timedelta(days=3650)))


@pytest.fixture(scope="module", autouse=True)
def _postgres_scratch() -> Iterator[None]:
    """Drop the scratch PostgreSQL database once this module's tests are done."""
    yield
    SCRATCH.drop()


@pytest.fixture(params=sorted(ENGINES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    engine = ENGINES[request.param](tmp_path)
    yield engine
    engine.close()


def file(source: str, size: int = 10, mtime_ns: int = 1) -> SeedFile:
    return SeedFile(f"/seeds/{source}", source, size, mtime_ns, 0, 0)


def good(
    source: str,
    url: str,
    *,
    topics: tuple[str, ...] = (),
    published: datetime = T0,
    quality: float | None = None,
    is_published: bool | None = None,
    title: str = "title",
    web: str | None = None,
    size: int = 10,
    related: tuple[str, ...] = (),
) -> tuple[SeedFile, LoadedSeed]:
    article = Article(
        source,
        title,
        published,
        url,
        web,
        topics,
        quality=quality,
        is_published=is_published,
        related=tuple(Related(f"on {r}", r) for r in related),
    )
    record = SeedRecord(
        entry_id=article.id,
        article_json=article_to_json(article),
        topics=topics,
        published_us=to_micros(published),
        quality=quality,
        is_published=is_published,
        shown=f"{title}|{url}",
        original_url=url,
        web_url=web,
        related_ids=tuple(sorted({entry_id(r) for r in related})),
    )
    return file(source, size), LoadedSeed(source, f"digest-{source}-{title}", record, None, ())


def bad(source: str, error: str = "no title") -> tuple[SeedFile, LoadedSeed]:
    return file(source, 7), LoadedSeed(source, f"bad-{source}", None, error, ())


def titles(store: StateStore, feed: FeedKey = ALL, flt: FeedFilter = EVERYTHING) -> list[str]:
    entries, _ = store.entries.feed_page(feed, flt, 100)
    return [e.article.title for e in entries]


def entry_id(url: str) -> str:
    return Article("x", "x", T0, url, None).id


# -- seeds ------------------------------------------------------------------------------


def test_seeds_are_stored_touched_and_forgotten(store: StateStore) -> None:
    store.seeds.store_seeds([good("a.md", "https://a.example/1"), bad("b.md")])
    assert store.seeds.seed_stats() == {"a.md": (10, 1), "b.md": (7, 1)}
    assert store.seeds.digests(["a.md", "b.md", "c.md"]) == {
        "a.md": "digest-a.md-title",
        "b.md": "bad-b.md",
    }
    store.seeds.touch([file("a.md", 11, 5)])
    assert store.seeds.seed_stats()["a.md"] == (11, 5)
    assert store.entries.dirty() == [entry_id("https://a.example/1")]
    refresh(store, RULES, T0)
    assert store.entries.dirty() == []
    assert store.counts().seeds == 2 and store.counts().entries == 1
    assert store.counts().rejected == 1
    store.seeds.forget_seeds(["a.md", "b.md"])
    assert store.seeds.seed_stats() == {}
    assert store.entries.dirty() == [entry_id("https://a.example/1")]
    refresh(store, RULES, T0)
    assert store.counts().seeds == 0 and store.counts().entries == 0


def test_a_rejected_seed_keeps_its_last_good_record(store: StateStore) -> None:
    store.seeds.store_seeds([good("a.md", "https://a.example/1", title="First")])
    refresh(store, RULES, T0)
    store.seeds.store_seeds([bad("a.md", "half-saved")])
    refresh(store, RULES, T0)
    assert titles(store) == ["First"]
    assert store.seeds.rejected() == [("a.md", "half-saved")]
    assert store.seeds.digests(["a.md"]) == {"a.md": "bad-a.md"}
    store.seeds.store_seeds([good("a.md", "https://a.example/1", title="Fixed")])
    refresh(store, RULES, T0)
    assert titles(store) == ["Fixed"]
    assert store.seeds.rejected() == []
    store.seeds.store_seeds([bad("new.md")])
    refresh(store, RULES, T0)
    assert titles(store) == ["Fixed"]
    assert store.counts().rejected == 1


def test_the_first_copy_by_path_wins_and_the_others_are_duplicates(store: StateStore) -> None:
    url = "https://a.example/same"
    store.seeds.store_seeds(
        [good("b.md", url, title="B"), good("a.md", url, title="A"), good("c.md", url, title="C")]
    )
    refresh(store, RULES, T0)
    assert titles(store) == ["A"]
    assert store.seeds.duplicates() == [("b.md", "a.md"), ("c.md", "a.md")]
    store.seeds.forget_seeds(["a.md"])
    refresh(store, RULES, T0)
    assert titles(store) == ["B"]
    assert store.seeds.duplicates() == [("c.md", "b.md")]
    assert store.counts().entries == 1


def test_spelling_counts_count_seeds_per_spelling(store: StateStore) -> None:
    store.seeds.store_seeds(
        [
            good("a.md", "https://a.example/1", topics=("AI", "Go")),
            good("b.md", "https://a.example/2", topics=("AI",)),
        ]
    )
    assert sorted(store.seeds.spelling_counts()) == [("AI", 2), ("Go", 1)]


# -- stories ----------------------------------------------------------------------------


def test_links_run_both_ways_between_articles_good_seeds_hold(store: StateStore) -> None:
    a, b, c = (f"https://a.example/{n}" for n in "abc")
    ids = {u: entry_id(u) for u in (a, b, c)}
    store.seeds.store_seeds(
        [
            good("a.md", a, related=(b, "https://elsewhere.example/")),
            good("b.md", b),
            good("c2.md", c, published=T0 + timedelta(days=1)),
            good("c1.md", c, published=T0 - timedelta(days=2), related=(a,)),
        ]
    )
    assert sorted(set(store.stories.links([ids[a]]))) == sorted(
        [(ids[a], ids[b]), (ids[c], ids[a])]
    )
    assert set(store.stories.links([ids[b]])) == {(ids[a], ids[b])}
    assert store.stories.published([ids[a], ids[c], "nobody"]) == {
        ids[a]: to_micros(T0),
        ids[c]: to_micros(T0 - timedelta(days=2)),  # the earliest of its seeds
    }
    store.seeds.store_seeds([bad("a.md")])  # a rejected seed keeps its last good record
    assert set(store.stories.links([ids[b]])) == {(ids[a], ids[b])}
    store.seeds.forget_seeds(["b.md"])
    assert store.stories.links([ids[b]]) == []  # no good seed holds b
    store.seeds.forget_seeds(["a.md"])
    assert store.stories.links([ids[a]]) == [] and store.stories.published([ids[a]]) == {}


def test_the_story_each_article_was_given_is_kept_and_forgotten(store: StateStore) -> None:
    store.stories.keep_members(
        [Member("a", "s1", "a.md", "a.example"), Member("b", "s1", "b.md", None)], []
    )
    store.stories.keep_members([Member("c", "s2", "c.md", None)], [])
    assert store.stories.stories_of(["a", "b", "c", "d"]) == {"a": "s1", "b": "s1", "c": "s2"}
    assert store.stories.members(["s1", "s2", "s3"]) == {"s1": {"a", "b"}, "s2": {"c"}}
    store.stories.keep_members([Member("b", "s2", "b.md", None)], ["a"])
    assert store.stories.members(["s1", "s2"]) == {"s2": {"b", "c"}}


def test_seeds_on_one_story_are_one_entry_in_the_feeds_of_both(store: StateStore) -> None:
    lead, other = "https://www.alpha.co.uk/lead", "https://news.beta.com/other"
    store.seeds.store_seeds(
        [
            good("lead.md", lead, title="Lead", topics=("AI",)),
            good(
                "other.md",
                other,
                title="Other",
                topics=("Go",),
                published=T0 + timedelta(days=1),
                related=(lead, "https://c.example/3"),
            ),
        ]
    )
    refresh(store, RULES, T0)
    (entry,) = store.entries.entries([entry_id(lead)])
    assert entry.article.title == "Lead"
    assert [r.url for r in entry.article.related] == [other, "https://c.example/3"]
    assert entry.topic_keys == ("ai", "go")
    assert store.counts().entries == 1
    assert titles(store, topic_feed("go")) == ["Lead"]
    assert sorted(store.entries.provider_names()) == [
        ("alpha.co.uk", None, 1),
        ("beta.com", None, 1),
    ]
    assert store.seeds.duplicates() == []
    # the other seed no longer names the lead: two entries again
    store.seeds.store_seeds([good("other.md", other, title="Other", topics=("Go",))])
    refresh(store, RULES, T0 + timedelta(hours=1))
    assert sorted(titles(store)) == ["Lead", "Other"]
    (entry,) = store.entries.entries([entry_id(lead)])
    assert entry.article.related == ()


# -- entries and feeds ------------------------------------------------------------------


def test_entries_carry_their_feeds_and_topic_feeds_hold_their_members(store: StateStore) -> None:
    store.seeds.store_seeds(
        [
            good("a.md", "https://a.example/1", topics=("AI", "Go"), title="A"),
            good(
                "b.md",
                "https://a.example/2",
                topics=("Go",),
                title="B",
                published=T0 - timedelta(1),
            ),
            good("c.md", "https://a.example/3", title="C", published=T0 - timedelta(2)),
        ]
    )
    applied = refresh(store, RULES, T0)
    assert applied.entries_changed == 3
    assert applied.feeds == {topic_feed("ai"), topic_feed("go")}
    assert applied.feeds == {topic_feed("ai"), topic_feed("go")}
    assert titles(store) == ["A", "B", "C"]
    assert titles(store, topic_feed("go")) == ["A", "B"]
    assert titles(store, topic_feed("ai")) == ["A"]
    assert titles(store, topic_feed("none")) == []
    (a,) = store.entries.entries([entry_id("https://a.example/1")])
    assert a.feeds == {topic_feed("ai"), topic_feed("go")}
    assert a.topic_keys == ("ai", "go")
    # Nothing changed: nothing to do, nothing touched.
    store.entries.mark_all_dirty()
    assert len(store.entries.dirty()) == 3
    again = refresh(store, RULES, T0 + timedelta(hours=1))
    assert again.entries_changed == 0 and again.feeds == set()
    # A topic dropped from a seed: both feeds are touched, the entry leaves one.
    store.seeds.store_seeds([good("a.md", "https://a.example/1", topics=("AI",), title="A")])
    applied = refresh(store, RULES, T0)
    assert applied.feeds == {topic_feed("ai"), topic_feed("go")}
    assert titles(store, topic_feed("go")) == ["B"]


def test_entries_come_in_the_order_asked_and_unknown_ids_are_left_out(store: StateStore) -> None:
    store.seeds.store_seeds(
        [
            good("a.md", "https://a.example/1", title="A"),
            good("b.md", "https://a.example/2", title="B"),
        ]
    )
    refresh(store, RULES, T0)
    ids = [entry_id("https://a.example/2"), "nope", entry_id("https://a.example/1")]
    found = store.entries.entries(ids)
    assert [e.article.title for e in found] == ["B", "A"]
    assert found[0].updated == T0 and found[0].link is None


def test_feed_pages_filter_order_count_and_stop_at_a_bound(store: StateStore) -> None:
    day = timedelta(days=1)
    store.seeds.store_seeds(
        [
            good(
                "1.md",
                "https://e.example/1",
                published=T0,
                quality=0.9,
                is_published=True,
                title="1",
            ),
            good(
                "2.md",
                "https://e.example/2",
                published=T0,
                quality=0.2,
                is_published=True,
                title="2",
            ),
            good("3.md", "https://e.example/3", published=T0 - day, quality=None, title="3"),
            good(
                "4.md",
                "https://e.example/4",
                published=T0 - 9 * day,
                quality=0.9,
                is_published=False,
                title="4",
            ),
            good(
                "5.md",
                "https://e.example/5",
                published=T0 + 5 * day,
                quality=0.9,
                is_published=True,
                title="5",
            ),
        ]
    )
    refresh(store, RULES, T0)
    same_day = sorted(["1", "2"], key=lambda t: entry_id(f"https://e.example/{t}"))
    before = to_micros(T0 + day)
    plain = FeedFilter(0.0, None, False, before)
    assert titles(store, ALL, plain) == [*same_day, "3", "4"]
    assert titles(store, ALL, FeedFilter(0.5, None, False, before)) == ["1", "4"]
    assert titles(store, ALL, FeedFilter(0.0, None, True, before)) == same_day
    assert titles(store, ALL, FeedFilter(0.0, to_micros(T0 - 2 * day), False, before)) == [
        *same_day,
        "3",
    ]
    entries, total = store.entries.feed_page(ALL, plain, 2)
    assert [e.article.title for e in entries] == same_day and total == 4
    bound = (to_micros(T0), entry_id(f"https://e.example/{same_day[1]}"))
    entries, total = store.entries.feed_page(ALL, plain, 10, newer_than=bound)
    assert [e.article.title for e in entries] == [same_day[0]] and total == 4
    rows = store.entries.feed_rows(ALL, plain)
    assert [r.entry_id for r in rows] == [e.id for e in store.entries.feed_page(ALL, plain, 9)[0]]
    assert rows[-1].published_us == to_micros(T0 - 9 * day)
    assert rows[-1].updated_us == to_micros(T0 - 9 * day)
    assert store.entries.earliest_held_back(plain) == to_micros(T0 + 5 * day)
    assert store.entries.earliest_held_back(EVERYTHING) is None


def test_the_ledger_outlives_an_entry_so_a_returning_entry_keeps_its_dates(
    store: StateStore,
) -> None:
    url = "https://a.example/1"
    store.seeds.store_seeds([good("a.md", url, title="A")])
    refresh(store, RULES, T0)
    first = store.entries.ledger([entry_id(url)])[entry_id(url)]
    store.seeds.forget_seeds(["a.md"])
    assert refresh(store, RULES, T0 + timedelta(days=1)).entries_changed == 1
    assert store.entries.entries([entry_id(url)]) == []
    assert store.entries.ledger([entry_id(url)]) == {entry_id(url): first}
    store.seeds.store_seeds([good("a.md", url, title="A")])
    refresh(store, RULES, T0 + timedelta(days=2))
    (back,) = store.entries.entries([entry_id(url)])
    assert back.updated == first.updated
    store.seeds.store_seeds([good("a.md", url, title="A, edited")])
    refresh(store, RULES, T0 + timedelta(days=3))
    (edited,) = store.entries.entries([entry_id(url)])
    assert edited.updated == T0 + timedelta(days=3)


def test_a_transaction_is_rolled_back_when_it_raises(store: StateStore) -> None:
    store.seeds.store_seeds([good("a.md", "https://a.example/1", title="A")])
    refresh(store, RULES, T0)
    with pytest.raises(RuntimeError), store.transaction():
        store.seeds.store_seeds([good("b.md", "https://a.example/2", title="B")])
        store.feeds.keep_topic_slugs({"x": "x"})
        refresh(store, RULES, T0)
        assert titles(store) == ["A", "B"]
        raise RuntimeError("boom")
    assert titles(store) == ["A"]
    assert store.seeds.seed_stats() == {"a.md": (10, 1)}
    assert store.feeds.topic_slugs() == {}
    with store.transaction():
        store.feeds.keep_topic_slugs({"kept": "kept"})
        with pytest.raises(RuntimeError), store.transaction():
            store.feeds.keep_topic_slugs({"inner": "inner"})
            raise RuntimeError("inner")
    assert store.feeds.topic_slugs() == {"kept": "kept"}


def test_an_interrupted_refresh_keeps_nothing_and_the_entries_stay_due(store: StateStore) -> None:
    store.seeds.store_seeds([good("a.md", "https://a.example/1", title="A")])
    with pytest.raises(Interrupted):
        refresh(store, RULES, T0, should_stop=lambda: True)
    assert titles(store) == []
    assert store.entries.dirty() == [entry_id("https://a.example/1")]
    refresh(store, RULES, T0)
    assert titles(store) == ["A"]


# -- links ------------------------------------------------------------------------------


def checked(url: str, status: Outcome, next_check: datetime, **more: object) -> LinkState:
    return LinkState(url, status, next_check=next_check, last_checked=T0, **more)  # type: ignore[arg-type]


def test_links_are_due_new_first_then_most_overdue(store: StateStore) -> None:
    store.seeds.store_seeds(
        [
            good("a.md", "https://a.example/1", web="https://w.example/1"),
            good("b.md", "https://a.example/2"),
        ]
    )
    refresh(store, RULES, T0)
    new = ["https://a.example/1", "https://a.example/2", "https://w.example/1"]
    assert store.links.due_links(T0, 10) == new
    assert store.links.due_links(T0, 1) == new[:1]
    later, soon = T0 + timedelta(hours=5), T0 + timedelta(hours=1)
    store.links.save_link_states(
        [
            checked("https://a.example/1", Outcome.ALIVE, later),
            checked("https://a.example/2", Outcome.ALIVE, soon),
        ],
        {},
    )
    assert store.links.due_links(T0, 10) == ["https://w.example/1"]
    assert store.links.due_links(T0 + timedelta(hours=6), 10) == [
        "https://w.example/1",
        "https://a.example/2",
        "https://a.example/1",
    ]
    assert store.links.due_links(T0, 10, everything=True)[1:] == [
        "https://a.example/2",
        "https://a.example/1",
    ]
    store.links.save_link_states([], {"https://a.example/2": T0 + timedelta(hours=9)})
    assert store.links.due_links(T0 + timedelta(hours=6), 10)[1:] == ["https://a.example/1"]
    states = store.links.link_states(["https://a.example/1", "https://w.example/1", "nope"])
    assert list(states) == ["https://a.example/1"]
    assert states["https://a.example/1"].status is Outcome.ALIVE
    assert states["https://a.example/1"].next_check == later


def test_a_dead_link_hides_or_moves_an_entry_after_refresh(store: StateStore) -> None:
    store.seeds.store_seeds(
        [
            good("a.md", "https://a.example/1", web="https://w.example/1", title="A"),
            good("b.md", "https://a.example/2", title="B"),
        ]
    )
    refresh(store, RULES, T0)
    later = T0 + timedelta(days=1)
    store.links.save_link_states(
        [
            checked("https://a.example/1", Outcome.DEAD, later),
            checked("https://a.example/2", Outcome.ALIVE, later),
        ],
        {},
        due=["https://a.example/1"],  # alive is what was assumed: nothing a feed shows changes
    )
    assert store.entries.dirty() == [entry_id("https://a.example/1")]
    applied = refresh(store, RULES, T0)
    assert applied.entries_changed == 1
    (a,) = store.entries.entries([entry_id("https://a.example/1")])
    assert a.link == "https://w.example/1"
    dead = checked("https://w.example/1", Outcome.DEAD, later)
    store.links.save_link_states([dead], {}, due=[dead.url])
    refresh(store, RULES, T0)
    assert titles(store) == ["B"]  # every link dead: hidden
    assert store.entries.earliest_held_back(FeedFilter(0, None, False, 0)) == to_micros(T0)
    store.seeds.store_seeds(
        [good("a.md", "https://a.example/1", web="https://w.example/1", title="A")]
    )
    refresh(store, RULES, T0, link_rules=LinkRules(on_dead="keep"))
    assert sorted(titles(store)) == ["A", "B"]


def test_unused_links_are_forgotten(store: StateStore) -> None:
    store.seeds.store_seeds(
        [good("a.md", "https://a.example/1"), good("b.md", "https://a.example/2")]
    )
    refresh(store, RULES, T0)
    store.seeds.forget_seeds(["b.md"])
    refresh(store, RULES, T0)
    assert store.links.forget_unused_links() == 1
    assert store.links.due_links(T0, 10) == ["https://a.example/1"]


def test_host_pauses_are_kept_and_replaced(store: StateStore) -> None:
    assert store.links.pauses() == {}
    pauses = {"a.example": T0 + timedelta(seconds=30), "1.2.3.4": T0 + timedelta(hours=1)}
    store.links.keep_pauses(pauses)
    assert store.links.pauses() == pauses
    store.links.keep_pauses({"b.example": T0})
    assert store.links.pauses() == {"b.example": T0}


# -- thumbnails ---------------------------------------------------------------------------


def test_thumbnails_due_kept_failed_and_forgotten(store: StateStore) -> None:
    thumbs = store.thumbnails
    images = ["https://i.example/1", "https://i.example/2", "https://i.example/3"]
    assert thumbs.thumbnails_due(images + images[:1], T0, 10) == images
    thumbs.keep_thumbnail(images[0], "thumbs/1.webp")
    thumbs.thumbnail_failed(images[1], "x" * 400, 2, T0 + timedelta(hours=2))
    thumbs.thumbnail_failed(images[2], "nope", 1, T0 + timedelta(hours=1))
    assert thumbs.thumbnails(images) == {images[0]: "thumbs/1.webp"}
    assert thumbs.thumbnail_tries([*images, "https://i.example/4"]) == {
        images[0]: 0,
        images[1]: 2,
        images[2]: 1,
        "https://i.example/4": 0,
    }
    assert thumbs.thumbnails_due(images, T0, 10) == []
    later = T0 + timedelta(hours=3)
    assert thumbs.thumbnails_due([*images, "https://i.example/4"], later, 10) == [
        "https://i.example/4",
        images[2],
        images[1],
    ]
    assert thumbs.thumbnails_due(images, later, 1) == [images[2]]
    thumbs.forget_thumbnails_of([images[0]])
    assert thumbs.thumbnails(images) == {}
    thumbs.keep_thumbnail(images[0], "thumbs/1.webp")
    thumbs.keep_thumbnail("https://i.example/5", "thumbs/5.webp")
    thumbs.forget_thumbnails(["thumbs/1.webp"], [images[1]])
    assert thumbs.thumbnails([*images, "https://i.example/5"]) == {images[0]: "thumbs/1.webp"}
    assert thumbs.thumbnail_tries(images) == {images[0]: 0, images[1]: 2, images[2]: 0}


# -- feeds: slugs, stamps, archives -----------------------------------------------------


def test_topic_slugs_never_change(store: StateStore) -> None:
    store.feeds.keep_topic_slugs({"c++": "c-plus-plus", "go": "go"})
    store.feeds.keep_topic_slugs({"c++": "c", "rust": "rust"})
    assert store.feeds.topic_slugs() == {"c++": "c-plus-plus", "go": "go", "rust": "rust"}


def test_feed_stamps_are_kept_per_feed(store: StateStore) -> None:
    assert store.feeds.feed_stamp(ALL) is None
    stamp = FeedStamp(("a", "b"), T0, T0 + timedelta(microseconds=5))
    store.feeds.keep_feed_stamp(ALL, stamp)
    store.feeds.keep_feed_stamp(topic_feed("ai"), FeedStamp((), None, None))
    assert store.feeds.feed_stamp(ALL) == stamp
    assert store.feeds.feed_stamp(topic_feed("ai")) == FeedStamp((), None, None)
    assert store.feeds.feed_stamp(topic_feed("go")) is None
    store.feeds.keep_feed_stamp(ALL, FeedStamp(("c",), None, T0))
    assert store.feeds.feed_stamp(ALL) == FeedStamp(("c",), None, T0)


def test_archives_are_kept_per_feed_and_forgotten(store: StateStore) -> None:
    assert store.feeds.archive(ALL) == ([], [])
    store.feeds.keep_archive(ALL, [(5, "e1"), (3, "e2")], ["d1", "d2", "d3"])
    store.feeds.keep_archive(topic_feed(""), [(1, "x")], ["t"])
    store.feeds.keep_archive(topic_feed("go"), [], ["g"])
    assert store.feeds.archive(ALL) == ([(5, "e1"), (3, "e2")], ["d1", "d2", "d3"])
    assert store.feeds.archive(topic_feed("")) == ([(1, "x")], ["t"])
    store.feeds.forget_archives([ALL, topic_feed("rust")])
    assert store.feeds.archive(ALL) == ([(5, "e1"), (3, "e2")], ["d1", "d2", "d3"])
    assert store.feeds.archive(topic_feed("go")) == ([], [])
    assert store.feeds.archive(topic_feed("")) == ([], [])


# -- settings ---------------------------------------------------------------------------


def test_settings_are_recorded_and_changes_reported(store: StateStore) -> None:
    settings = store.settings
    assert settings.settings_changed("rules", "1") is False
    assert settings.settings_changed("rules", "1") is False
    assert settings.settings_changed("rules", "2") is True
    assert settings.settings_changed("rules", "2") is False
    assert settings.settings_changed("other", "x") is False  # the first value recorded


def test_setdefault_keeps_the_first_value_recorded(store: StateStore) -> None:
    settings = store.settings
    assert settings.recorded("site_url") is None
    assert settings.setdefault("site_url", "http://127.0.0.1:8101/") == "http://127.0.0.1:8101/"
    assert settings.setdefault("site_url", "http://127.0.0.1:8102/") == "http://127.0.0.1:8101/"
    assert settings.settings_changed("site_url", "http://127.0.0.1:8101/") is False
    assert settings.recorded("site_url") == "http://127.0.0.1:8101/"


def test_reread_marks_make_seeds_due_again(store: StateStore) -> None:
    store.seeds.store_seeds([good("a.md", "https://a.example/1"), bad("b.md")])
    settings = store.settings
    # Nothing recorded yet: the rejected seeds are read again, but nothing "changed".
    assert settings.reread_rejected_if_changed("limits 1") is False
    assert store.seeds.seed_stats() == {"a.md": (10, 1), "b.md": (7, -1)}
    store.seeds.touch([file("b.md", 7)])
    assert settings.reread_rejected_if_changed("limits 1") is False
    assert store.seeds.seed_stats() == {"a.md": (10, 1), "b.md": (7, 1)}
    assert settings.reread_rejected_if_changed("limits 2") is True
    assert store.seeds.seed_stats() == {"a.md": (10, 1), "b.md": (7, -1)}
    assert store.seeds.digests(["b.md"]) == {"b.md": ""}
    assert settings.reread_all_if_changed("reading", "v1") is True
    assert store.seeds.seed_stats() == {"a.md": (10, -1), "b.md": (7, -1)}
    store.seeds.touch([file("a.md")])
    assert settings.reread_all_if_changed("reading", "v1") is False
    assert store.seeds.seed_stats()["a.md"] == (10, 1)


def test_an_entry_whose_seed_was_replaced_by_a_rejected_one_before_refresh_is_left_out(
    store: StateStore,
) -> None:
    store.seeds.store_seeds([good("a.md", "https://a.example/1")])
    refresh(store, RULES, T0)
    store.seeds.forget_seeds(["a.md"])
    store.seeds.store_seeds([bad("a.md")])
    assert store.entries.entries([entry_id("https://a.example/1")]) == []
    refresh(store, RULES, T0)
    assert store.counts().entries == 0


def test_clearing_dirty_leaves_nothing_due(store: StateStore) -> None:
    store.seeds.store_seeds([good("a.md", "https://a.example/1")])
    store.entries.clear_dirty()
    assert store.entries.dirty() == []
    assert refresh(store, RULES, T0).entries_changed == 0


def test_the_pipeline_on_the_memory_store_gives_the_golden_output(tmp_path: Path) -> None:
    root = Path(__file__).parent.parent
    golden = Path(__file__).parent / "golden" / "bundled"
    config = load_config(
        root / "config" / "aggregator.yaml",
        overrides={
            "seeds.dir": root / "seeds",
            "output.dir": tmp_path / "out",
            "state.path": tmp_path / "unused.sqlite3",
        },
        environ={},
    )
    memory = MemoryStore()
    with make_app(config, memory) as app:
        app.build(NOW)
        produced = {
            p.relative_to(tmp_path / "out").as_posix(): p.read_bytes()
            for p in sorted((tmp_path / "out").rglob("*"))
            if p.is_file()
        }
        expected = {
            p.relative_to(golden).as_posix(): p.read_bytes()
            for p in sorted(golden.rglob("*"))
            if p.is_file()
        }
        assert produced == expected
        assert not (tmp_path / "unused.sqlite3").exists()
        again = app.ingest.scan(NOW)
        assert again.entries_changed == 0
        assert app.publisher.render(NOW).written == []


# -- every engine does the same with the same calls -----------------------------------

SOURCES = ["a.md", "b.md", "c/d.md"]
URLS = ["https://u.example/1", "https://u.example/2"]

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("store"),
            st.sampled_from(SOURCES),
            st.sampled_from(URLS),
            st.sampled_from(["T1", "T2"]),
            st.frozensets(st.sampled_from(["AI", "ai", "Go"]), max_size=2),
            st.booleans(),
        ),
        st.tuples(st.just("forget"), st.sampled_from(SOURCES)),
        st.tuples(st.just("link"), st.sampled_from(URLS), st.sampled_from(list(Outcome))),
        st.tuples(st.just("refresh")),
    ),
    max_size=12,
)


def apply_operation(store: StateStore, op: tuple[object, ...], step: int) -> None:
    now = T0 + timedelta(hours=step)
    match op:
        case ("store", str(source), str(url), str(title), frozenset() as topics, bool(ok)):
            names = tuple(sorted(str(t) for t in topics))
            seed = good(source, url, title=title, topics=names) if ok else bad(source)
            store.seeds.store_seeds([seed])
        case ("forget", str(source)):
            store.seeds.forget_seeds([source])
        case ("link", str(url), Outcome() as outcome):
            store.links.save_link_states(
                [checked(url, outcome, now + timedelta(days=1))], {}, due=[url]
            )
        case _:
            refresh(store, RULES, now)


def observed(store: StateStore) -> object:
    feeds = [ALL, topic_feed("ai"), topic_feed("go")]
    pages = [
        [
            (e.id, e.article.title, e.updated, e.link, e.feeds)
            for e in store.entries.feed_page(f, EVERYTHING, 10)[0]
        ]
        for f in feeds
    ]
    return (
        store.counts(),
        store.seeds.rejected(),
        store.seeds.duplicates(),
        sorted(store.seeds.spelling_counts()),
        store.seeds.seed_stats(),
        store.entries.dirty(),
        pages,
        [store.entries.feed_rows(f, EVERYTHING) for f in feeds],
        store.links.due_links(T0 + timedelta(days=30), 10),
    )


@settings(max_examples=60, deadline=None)
@given(operations)
def test_every_engine_answers_the_same_after_the_same_calls(ops: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        engines = {n: make for n, make in ENGINES.items() if n != "postgres" or SCRATCH.usable()}
        stores = [make(Path(scratch) / name) for name, make in sorted(engines.items())]
        try:
            for step, op in enumerate([*ops, ("refresh",)]):
                for store in stores:
                    apply_operation(store, op, step)
                first, *others = (observed(store) for store in stores)
                for other in others:
                    assert other == first
        finally:
            for store in stores:
                store.close()


# -- edges the tests above leave open ---------------------------------------------------


def test_a_never_checked_link_comes_before_checked_ones_even_when_deferred(
    store: StateStore,
) -> None:
    store.seeds.store_seeds(
        [good("a.md", "https://a.example/1"), good("b.md", "https://b.example/2")]
    )
    refresh(store, RULES, T0)
    # b.example/2 was checked and is due at T0+1h; a.example/1 was never checked, but
    # its host asked for a pause until T0+2h.
    store.links.save_link_states(
        [checked("https://b.example/2", Outcome.ALIVE, T0 + timedelta(hours=1))],
        {"https://a.example/1": T0 + timedelta(hours=2)},
    )
    assert store.links.due_links(T0 + timedelta(minutes=90), 10) == ["https://b.example/2"]
    assert store.links.due_links(T0 + timedelta(hours=3), 10) == [
        "https://a.example/1",
        "https://b.example/2",
    ]


def test_the_earliest_held_back_article_counts_the_articles_of_stories(store: StateStore) -> None:
    day = timedelta(days=1)
    lead = "https://a.example/lead"
    store.seeds.store_seeds(
        [
            good("a.md", "https://a.example/1", published=T0 + 5 * day, title="A"),
            good("b.md", "https://a.example/2", published=T0 + 9 * day, title="B"),
            good("lead.md", lead, published=T0 - day, title="Lead"),
        ]
    )
    refresh(store, RULES, T0)
    now = FeedFilter(0.0, None, False, to_micros(T0))
    assert store.entries.earliest_held_back(now) == to_micros(T0 + 5 * day)
    # an article on the lead's story, dated ahead: shown in its coverage from then on
    store.seeds.store_seeds(
        [good("c.md", "https://c.example/3", published=T0 + day, related=(lead,))]
    )
    refresh(store, RULES, T0)
    (entry,) = store.entries.entries([entry_id(lead)])
    assert [r.url for r in entry.article.related] == ["https://c.example/3"]
    assert store.entries.earliest_held_back(now) == to_micros(T0 + day)


def test_articles_dated_between_two_moments_are_made_due(store: StateStore) -> None:
    day = timedelta(days=1)
    store.seeds.store_seeds(
        [
            good("a.md", "https://a.example/1", published=T0 + day),
            good("b.md", "https://a.example/2", published=T0 + 2 * day),
            good("c.md", "https://a.example/3", published=T0 + 3 * day),
        ]
    )
    refresh(store, RULES, T0)
    store.entries.mark_dated_between(to_micros(T0 + day), to_micros(T0 + 2 * day))
    assert store.entries.dirty() == [entry_id("https://a.example/2")]


def test_a_feed_filter_lets_through_entries_exactly_at_its_bounds(store: StateStore) -> None:
    day = timedelta(days=1)
    store.seeds.store_seeds(
        [
            good("old.md", "https://a.example/old", published=T0 - day, quality=0.5, title="O"),
            good("new.md", "https://a.example/new", published=T0 + day, quality=0.5, title="N"),
        ]
    )
    refresh(store, RULES, T0)
    exact = FeedFilter(0.5, to_micros(T0 - day), False, to_micros(T0 + day))
    assert titles(store, ALL, exact) == ["N", "O"]
    assert [r.entry_id for r in store.entries.feed_rows(ALL, exact)] == [
        entry_id("https://a.example/new"),
        entry_id("https://a.example/old"),
    ]
    assert store.entries.earliest_held_back(exact) is None
    beyond = FeedFilter(0.5, to_micros(T0 - day) + 1, False, to_micros(T0 + day) - 1)
    assert titles(store, ALL, beyond) == []
    assert titles(store, ALL, FeedFilter(0.51, None, False, to_micros(T0 + day))) == []


def test_a_spelling_a_seed_repeats_counts_that_seed_once(store: StateStore) -> None:
    store.seeds.store_seeds([good("a.md", "https://a.example/1", topics=("AI", "AI"))])
    assert store.seeds.spelling_counts() == [("AI", 1)]


def test_a_slug_another_topic_holds_is_not_given_again(store: StateStore) -> None:
    store.feeds.keep_topic_slugs({"c++": "c"})
    store.feeds.keep_topic_slugs({"c": "c", "go": "go"})
    assert store.feeds.topic_slugs() == {"c++": "c", "go": "go"}


def test_thumbnails_never_tried_come_in_the_order_asked_and_a_retry_is_due_at_its_time(
    store: StateStore,
) -> None:
    thumbs = store.thumbnails
    asked = ["https://i.example/z", "https://i.example/a", "https://i.example/m"]
    assert thumbs.thumbnails_due(asked, T0, 10) == asked
    thumbs.thumbnail_failed("https://i.example/r", "HTTP 500", 1, T0 + timedelta(hours=1))
    assert thumbs.thumbnails_due(["https://i.example/r"], T0 + timedelta(hours=1), 10) == [
        "https://i.example/r"
    ]
    assert thumbs.thumbnails_due(["https://i.example/r"], T0 + timedelta(minutes=59), 10) == []


def test_a_feed_stamp_belongs_to_one_kind_of_feed(store: StateStore) -> None:
    store.feeds.keep_feed_stamp(ALL, FeedStamp(("a",), None, T0))
    assert ALL.key == topic_feed("").key
    assert store.feeds.feed_stamp(topic_feed("")) is None
    store.feeds.keep_feed_stamp(topic_feed(""), FeedStamp(("t",), None, None))
    assert store.feeds.feed_stamp(ALL) == FeedStamp(("a",), None, T0)


# -- a large load ------------------------------------------------------------------------


def test_links_of_many_articles_at_once_are_those_of_each_part(store: StateStore) -> None:
    # Over the SQLite store's threshold for reading every link in one pass.
    count = 1300
    url = [f"https://a.example/{n}" for n in range(count)]
    seeds = [
        good(
            f"s{n:05}.md",
            url[n],
            related=(
                *(url[m] for m in (n * 7 % count, n * 11 % count) if n % 9 == 0 and m != n),
                "https://elsewhere.example/",
            ),
        )
        for n in range(count)
    ]
    seeds.append(good("z-copy.md", url[18], related=(url[5],)))  # a second seed of one article
    store.seeds.store_seeds(seeds)
    store.seeds.store_seeds([bad("s00027.md")])  # keeps its last good record, and its links
    store.seeds.forget_seeds(["s00036.md"])  # its links go, and links to it count no more
    ids = sorted({loaded.record.entry_id for _, loaded in seeds if loaded.record is not None})
    asked = [i for n, i in enumerate(ids) if n % 7] + ["nobody"]  # links with one end asked
    whole = set(store.stories.links(asked))
    half = len(asked) // 2
    assert whole == set(store.stories.links(asked[:half]) + store.stories.links(asked[half:]))
    assert len(whole) > 200
    assert (entry_id(url[18]), entry_id(url[5])) in whole  # the second seed's
    assert (entry_id(url[27]), entry_id(url[27 * 7 % count])) in whole  # rejected, kept
    gone = entry_id(url[36])
    assert all(gone not in pair for pair in whole)


def test_a_large_load_is_found_by_article_id_and_date_afterwards(store: StateStore) -> None:
    count = 6000  # over the SQLite store's bulk-load threshold
    seeds = [
        good(
            f"s{n:05}.md",
            f"https://a.example/{n}",
            related=(f"https://a.example/{n - 1}",) if n in (10, 11) else (),
        )
        for n in range(count)
    ]
    with store.seeds.loading(count):
        for start in range(0, count, 1000):
            store.seeds.store_seeds(seeds[start : start + 1000])
    ids = [loaded.record.entry_id for _, loaded in seeds if loaded.record is not None]
    assert set(store.stories.links([ids[10]])) == {(ids[10], ids[9]), (ids[11], ids[10])}
    assert store.stories.published(ids[:3]) == dict.fromkeys(ids[:3], to_micros(T0))
    refresh(store, TopicRules.build({}, [], []), NOW)
    assert len(titles(store)) == 100  # a page of the feed, by date


def test_a_large_load_that_fails_keeps_what_it_stored_findable(store: StateStore) -> None:
    seeds = [good(f"s{n:05}.md", f"https://b.example/{n}") for n in range(6000)]
    with pytest.raises(Interrupted), store.seeds.loading(len(seeds)):
        store.seeds.store_seeds(seeds[:1000])
        raise Interrupted
    some = seeds[5][1].record
    assert some is not None and store.stories.published([some.entry_id])
    store.seeds.store_seeds(seeds[1000:])  # the next scan goes on
    assert len(store.seeds.seed_stats()) == 6000
