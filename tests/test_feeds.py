"""Feeds keyed by kind: which feeds an entry is in, and what each kind's feeds are called.

The renderers and pages read everything kind-specific from `feeds.KINDS`; the
last tests register a made-up kind and show that one catalog entry is all it takes
for its feeds to be titled, identified, listed and ordered.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from aggregator.config import SiteConfig
from aggregator.feeds import (
    ALL,
    ALL_FEED,
    ALL_OPML,
    ALL_SLUG,
    FEEDS_OPML,
    KINDS,
    TOPIC_KIND,
    EntryFacts,
    Feed,
    FeedKey,
    Kind,
    feed_id,
    memberships,
    topic_feed,
)
from aggregator.formats import FeedOptions
from aggregator.jsonfeed import render_json
from aggregator.model import Article
from aggregator.pages import render_all_opml, render_index, render_opml, render_topic_page
from aggregator.plan import Entry, FeedPlan, FeedSummary, topic_feed_of
from aggregator.render import render_atom, render_rss
from aggregator.topics import Topic
from tests.feedcheck import ATOM, check_feed

URL = "https://news.example/"
SITE = SiteConfig(title="News", public_url=URL)
WHEN = datetime(2024, 1, 1, tzinfo=UTC)
RUST = Topic("rust", "Rust", "rust")

keys = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)
names = st.text(st.characters(codec="utf-8"), max_size=30)


def old_feed_id(public_url: str, topic_key: str | None) -> str:
    """The feed id as it was computed before feeds had kinds: readers key feeds by it."""
    name = f"{public_url}#topic:{topic_key}" if topic_key is not None else f"{public_url}#all"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


# -- memberships ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topics", "expected"),
    [
        ((), set()),
        (("rust",), {FeedKey("topic", "rust")}),
        (("rust", "go"), {FeedKey("topic", "rust"), FeedKey("topic", "go")}),
    ],
)
def test_an_entry_is_in_the_feed_of_each_of_its_topics(
    topics: tuple[str, ...], expected: set[FeedKey]
) -> None:
    assert memberships(EntryFacts(frozenset(topics))) == expected


@given(st.frozensets(keys, max_size=6))
def test_memberships_are_the_topic_feeds_and_never_the_feed_of_everything(
    topics: frozenset[str],
) -> None:
    found = memberships(EntryFacts(topics))
    assert found == {topic_feed(key) for key in topics}
    assert ALL not in found  # `all` takes every entry: nothing is stored for it


# -- what the kinds call their feeds ---------------------------------------------------


@pytest.mark.parametrize(
    ("feed", "title", "about", "heading"),
    [
        (ALL_FEED, "all topics", "Articles on every topic", "All topics"),
        (topic_feed_of(RUST), "Rust", "Articles on Rust", "Rust"),
        (topic_feed_of(Topic("c++", "C++", "c-plus-plus")), "C++", "Articles on C++", "C++"),
    ],
)
def test_each_kind_names_its_feeds(feed: Feed, title: str, about: str, heading: str) -> None:
    assert (feed.title, feed.about, feed.heading) == (title, about, heading)


@given(names)
def test_a_topic_feed_is_called_by_the_topics_name_whatever_it_holds(name: str) -> None:
    # Braces in a name are text, not a template: "{key}" stays "{key}".
    feed = topic_feed_of(Topic("k", name, "slug"))
    assert feed.title == feed.heading == name
    assert feed.about == f"Articles on {name}"


def test_the_feed_of_everything_and_a_topic_feed() -> None:
    assert Feed(FeedKey("all"), ALL_SLUG, "") == ALL_FEED
    assert ALL_FEED.kind is KINDS["all"] and ALL_FEED.kind.written_empty
    rust = topic_feed_of(RUST)
    assert rust == Feed(FeedKey(TOPIC_KIND, "rust"), "rust", "Rust")
    assert not rust.kind.written_empty  # a topic with no entries has no feed
    assert (ALL_FEED.kind.opml, rust.kind.opml) == (ALL_OPML, FEEDS_OPML)


# -- feed ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (ALL, "urn:uuid:975d8f6f-df20-505e-8ba9-5bdf3a05b97d"),  # uuid5 of <URL>#all
        (topic_feed("rust"), "urn:uuid:c0a8a695-f937-5168-be13-3802028a2e92"),  # #topic:rust
    ],
)
def test_a_feed_id_is_a_name_based_uuid_of_the_site_and_the_feed_key(
    key: FeedKey, expected: str
) -> None:
    assert feed_id(URL, key) == expected


def test_the_feed_of_everything_keeps_its_published_id() -> None:
    assert feed_id("http://127.0.0.1:8080/", ALL) == old_feed_id("http://127.0.0.1:8080/", None)


@given(st.sampled_from([URL, "http://127.0.0.1:8080/"]), keys)
def test_topic_feed_ids_are_the_ids_they_had_before_kinds(url: str, key: str) -> None:
    assert feed_id(url, topic_feed(key)) == old_feed_id(url, key)


@given(st.lists(st.tuples(st.sampled_from(["all", "topic", "provider"]), keys), max_size=8))
def test_different_feeds_have_different_ids(pairs: list[tuple[str, str]]) -> None:
    feeds = {FeedKey(kind, "" if kind == "all" else key) for kind, key in pairs}
    assert len({feed_id(URL, key) for key in feeds}) == len(feeds)


# -- order in the index -----------------------------------------------------------------


@given(st.lists(st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,2}", fullmatch=True)))
def test_the_index_lists_the_feed_of_everything_first_then_topics_by_slug(
    slugs: list[str],
) -> None:
    feeds = [topic_feed_of(Topic(slug, slug.upper(), slug)) for slug in slugs] + [ALL_FEED]
    ordered = sorted(feeds, key=lambda feed: feed.order)
    assert ordered[0] == ALL_FEED
    assert [feed.slug for feed in ordered[1:]] == sorted(slugs)


# -- a plan, a summary ------------------------------------------------------------------


def entry(n: int, topics: Iterable[Topic] = (RUST,)) -> Entry:
    article = Article(
        source=f"{n}.md",
        title=f"Story {n}",
        published=WHEN,
        original_url=f"https://a.example/{n}",
        web_url=None,
        topics=tuple(t.name for t in topics),
    )
    return Entry(article.id, article, tuple(topics), WHEN)


def test_a_plan_and_its_summary_carry_the_feed_and_its_slug() -> None:
    plan = FeedPlan(topic_feed_of(RUST), (entry(1),), 3)
    assert plan.slug == "rust"
    assert plan.summary() == FeedSummary(topic_feed_of(RUST), 3, WHEN)
    assert plan.summary().slug == "rust"


# -- a kind of feed this project does not have: one catalog entry -----------------------


def _initials(facts: EntryFacts) -> Iterable[str]:
    return {key[0] for key in facts.topics if key}


INITIAL = Kind(
    "initial",
    every_entry=False,
    members=_initials,
    title="topics starting with {name}",
    about="Articles on topics starting with {name}",
    heading="Starting with {name}",
)


@pytest.fixture
def initial_kind(monkeypatch: pytest.MonkeyPatch) -> Feed:
    """The made-up kind `initial` (one feed per first letter of a topic key), registered."""
    monkeypatch.setitem(KINDS, INITIAL.name, INITIAL)
    return Feed(FeedKey("initial", "r"), "initial-r", "R")


def test_a_new_kind_needs_one_catalog_entry_for_memberships(initial_kind: Feed) -> None:
    found = memberships(EntryFacts(frozenset({"rust", "go"})))
    assert found == {
        topic_feed("rust"),
        topic_feed("go"),
        FeedKey("initial", "r"),
        FeedKey("initial", "g"),
    }


def test_a_new_kinds_feeds_are_titled_and_identified_in_every_format(initial_kind: Feed) -> None:
    plan = FeedPlan(initial_kind, (entry(1),), 1)
    options = FeedOptions(max_related=5)
    atom = check_feed(render_atom(plan, SITE, 5))
    assert atom.findtext(f"{ATOM}title") == "News: topics starting with R"
    assert atom.findtext(f"{ATOM}subtitle") == "Articles on topics starting with R, newest first"
    assert atom.findtext(f"{ATOM}id") == feed_id(URL, FeedKey("initial", "r"))
    assert atom.findtext(f"{ATOM}id") not in {feed_id(URL, ALL), feed_id(URL, topic_feed("r"))}
    self_link = atom.find(f"{ATOM}link[@rel='self']")
    assert self_link is not None and self_link.get("href") == URL + "feeds/initial-r.atom"
    rss = etree.fromstring(render_rss(plan, SITE, options))
    assert rss.findtext("channel/title") == "News: topics starting with R"
    assert rss.findtext("channel/description") == (
        "Articles on topics starting with R, newest first"
    )
    feed = json.loads(render_json(plan, SITE, options))
    assert (feed["title"], feed["feed_url"]) == (
        "News: topics starting with R",
        URL + "feeds/initial-r.json",
    )
    page = render_topic_page(plan, SITE).decode()
    assert '<h1 dir="auto">Starting with R</h1>' in page
    assert 'title="News: topics starting with R"' in page


def test_a_new_kinds_feeds_come_after_the_others_in_the_index_and_opml(
    initial_kind: Feed,
) -> None:
    summaries = [
        FeedPlan(feed, (entry(1),), 1).summary()
        for feed in (initial_kind, topic_feed_of(RUST), ALL_FEED)
    ]
    summaries.sort(key=lambda summary: summary.feed.order)
    assert [s.slug for s in summaries] == ["all", "rust", "initial-r"]
    index = render_index(summaries, SITE).decode()
    rows = [index.index(f'href="topics/{slug}.html"') for slug in ("all", "rust", "initial-r")]
    assert rows == sorted(rows)
    assert ">Starting with R</a>" in index
    # Listed in the OPML of feeds (its `opml`), beside the topics, not with everything.
    opml = etree.fromstring(render_opml(summaries, SITE))
    texts = [o.get("text") for o in opml.iterfind("body/outline/outline")]
    assert texts == ["Rust", "Starting with R"]
    alone = etree.fromstring(render_all_opml(summaries, SITE))
    assert [o.get("text") for o in alone.iterfind("body/outline")] == ["All topics"]


def test_a_kind_with_the_default_texts_calls_its_feeds_by_their_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(KINDS, "provider", Kind("provider", every_entry=False, members=_initials))
    feed = Feed(FeedKey("provider", "wire.example"), "wire-example", "The Wire")
    assert (feed.title, feed.heading) == ("The Wire", "The Wire")
    assert feed.about == "Articles on The Wire"
    assert feed.kind.opml == FEEDS_OPML and not feed.kind.written_empty
    assert feed.order == (2, "wire-example")
