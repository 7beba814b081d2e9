"""Rendering: any text a seed can hold gives a valid feed; related links stay related."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.config import SiteConfig
from aggregator.feeds import ALL_FEED
from aggregator.formats import feed_path
from aggregator.model import Article, Image, Provider, Related
from aggregator.output import OutputDir
from aggregator.parse import parse_seed
from aggregator.plan import Entry, FeedPlan, FeedStamp, feed_stamp, topic_catalog, topic_feed_of
from aggregator.render import render_atom
from aggregator.topics import TopicRules
from tests.conftest import seed_text
from tests.feedcheck import ATOM, check_feed

SITE = SiteConfig()


def article(**fields: object) -> Article:
    base: dict[str, object] = {
        "source": "a.md",
        "title": "T",
        "published": datetime(2024, 1, 1, tzinfo=UTC),
        "original_url": "https://a.example/1",
        "web_url": None,
        "topics": ("AI",),
    }
    base.update(fields)
    return Article(**base)  # type: ignore[arg-type]


def plans_for(art: Article) -> list[FeedPlan]:
    """The `all` feed and one feed per topic, each holding just `art`."""
    catalog = topic_catalog([(name, 1) for name in art.topics], TopicRules.build())
    topics = tuple(sorted(catalog.values(), key=lambda t: t.name))
    entry = Entry(art.id, art, topics, art.published)
    return [FeedPlan(ALL_FEED, (entry,), 1)] + [
        FeedPlan(topic_feed_of(t), (entry,), 1) for t in topics
    ]


def test_related_links_are_rel_related_and_the_entry_has_one_alternate() -> None:
    art = article(
        related=tuple(Related(f"R{n}", f"https://r{n}.example/") for n in range(8)),
        images=(Image("https://i.example/1.jpg", 640, 480), Image("https://i.example/2.jpg")),
        provider=Provider("Wire", "wire.example"),
        excerpt="Excerpt",
    )
    root = check_feed(render_atom(plans_for(art)[0], SITE, max_related=5))
    entry = root.find(f"{ATOM}entry")
    assert entry is not None
    rels = [link.get("rel") for link in entry.findall(f"{ATOM}link")]
    assert rels.count("related") == 5 and rels.count(None) + rels.count("alternate") == 1
    media = "{http://search.yahoo.com/mrss/}"
    assert len(entry.findall(f"{media}content")) == 2
    assert entry.find(f"{media}thumbnail") is not None
    assert entry.findtext(f"{ATOM}author/{ATOM}uri") == "https://wire.example/"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(title=st.text(min_size=1), excerpt=st.text(), topics=st.lists(st.text(), max_size=4))
def test_any_unicode_in_a_seed_gives_valid_feeds_inside_the_output_dir(
    tmp_path: Path, title: str, excerpt: str, topics: list[str]
) -> None:
    data = seed_text(title=title, excerpt=excerpt, topics=topics).encode("utf-8", "surrogatepass")
    result = parse_seed(data, "h.md")
    if result.article is None:
        assert result.error is not None
        return
    out = OutputDir(tmp_path / "out")
    for plan in plans_for(result.article):
        check_feed(render_atom(plan, SITE, 5))
        assert out.path(feed_path(plan.slug)).parent == out.root / "feeds"


def test_a_feed_with_no_entries_is_dated_when_first_seen_empty_and_keeps_that_date() -> None:
    now = datetime(2026, 11, 1, 12, 0, 0, 500, tzinfo=UTC)
    first = feed_stamp(None, [], None, now)
    assert first.floor == first.updated == now.replace(microsecond=0)
    assert feed_stamp(first, [], None, now + timedelta(days=1)) == first
    older_release = FeedStamp((), None, None)  # a state written before empty feeds had a date
    assert feed_stamp(older_release, [], None, now).updated == now.replace(microsecond=0)
    published = datetime(2024, 5, 1, tzinfo=UTC)
    assert feed_stamp(None, ["urn:a"], published, now) == FeedStamp(("urn:a",), None, published)
