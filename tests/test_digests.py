"""Daily digests: one entry per closed day per topic, its top stories, dated when the day closed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import feedparser
import html5lib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import structs
from reader import make_reader

from aggregator.app import make_app
from aggregator.config import SiteConfig, load_config
from aggregator.digests import (
    DigestPlan,
    closed_days,
    day_close,
    day_start,
    digest_id,
    last_close,
    next_close,
    plan_digests,
    today,
    top_stories,
    window,
)
from aggregator.errors import ConfigError
from aggregator.feeds import topic_feed
from aggregator.model import Article, Provider, Related
from aggregator.parse import parse_seed
from aggregator.plan import Entry
from aggregator.render import digest_html, render_digest
from tests.conftest import Site, seed_text
from tests.feedcheck import ATOM, check_feed
from tests.pagecheck import check_page, validate_pages, vnu
from tests.postgres import SCRATCH

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
SANTIAGO = ZoneInfo("America/Santiago")
SITE = "https://feeds.example/"
AI = topic_feed("ai")
NOW = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
"""A Sunday morning; Saturday 2026-10-31 is the latest closed day (in UTC and in Berlin)."""


def article(
    n: int,
    published: datetime,
    quality: float | None = 50,
    outlets: tuple[str, ...] = (),
    provider: str = "Example News",
) -> Article:
    return Article(
        source=f"s{n}.md",
        title=f"Story {n}",
        published=published,
        original_url=f"https://news.example/{n}",
        web_url=None,
        excerpt=f"What happened in story {n}.",
        provider=Provider(provider, "news.example"),
        related=tuple(
            Related(
                f"{outlet} on {n}", f"https://{outlet.lower()}.example/{n}/{i}", Provider(outlet)
            )
            for i, outlet in enumerate(outlets)
        ),
        quality=quality,
    )


def entry(a: Article) -> Entry:
    return Entry(a.id, a, (), a.published)


# -- days -------------------------------------------------------------------------------


def test_today_is_never_closed_and_the_window_counts_back_from_yesterday() -> None:
    assert today(NOW, UTC_ZONE) == date(2026, 11, 1)
    assert closed_days(NOW, UTC_ZONE, 3) == [
        date(2026, 10, 31),
        date(2026, 10, 30),
        date(2026, 10, 29),
    ]
    start, end = window(NOW, UTC_ZONE, 3)
    assert (start, end) == (datetime(2026, 10, 29, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    assert next_close(NOW, UTC_ZONE) == datetime(2026, 11, 2, tzinfo=UTC)
    midnight = datetime(2026, 11, 1, tzinfo=UTC)
    assert today(midnight, UTC_ZONE) == date(2026, 11, 1)  # a day closes at its midnight
    assert today(midnight - timedelta(microseconds=1), UTC_ZONE) == date(2026, 10, 31)


def test_days_follow_the_time_zone_through_daylight_saving_changes() -> None:
    # Berlin: 2026-03-29 loses an hour, 2026-10-25 gains one.
    assert day_close(date(2026, 3, 29), BERLIN) - day_start(date(2026, 3, 29), BERLIN) == timedelta(
        hours=23
    )
    assert day_close(date(2026, 10, 25), BERLIN) - day_start(
        date(2026, 10, 25), BERLIN
    ) == timedelta(hours=25)
    assert day_start(date(2026, 10, 25), BERLIN) == datetime(2026, 10, 24, 22, tzinfo=UTC)  # CEST
    assert day_close(date(2026, 10, 25), BERLIN) == datetime(2026, 10, 25, 23, tzinfo=UTC)  # CET
    # Santiago skips the midnight of 2026-09-06: that day begins when the clocks jump.
    assert day_start(date(2026, 9, 6), SANTIAGO) == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert day_close(date(2026, 9, 5), SANTIAGO) == day_start(date(2026, 9, 6), SANTIAGO)
    assert today(datetime(2026, 9, 6, 3, 59, tzinfo=UTC), SANTIAGO) == date(2026, 9, 5)
    assert today(datetime(2026, 9, 6, 4, tzinfo=UTC), SANTIAGO) == date(2026, 9, 6)


def test_a_story_late_on_the_long_day_of_a_change_belongs_to_that_day() -> None:
    # 23:30 CET on 2026-10-25 is 22:30 UTC: still the 25th in Berlin, the 25th in UTC too;
    # 00:30 CEST on the 25th is 22:30 UTC on the 24th: the 25th in Berlin.
    late = article(1, datetime(2026, 10, 25, 22, 30, tzinfo=UTC))
    early = article(2, datetime(2026, 10, 24, 22, 30, tzinfo=UTC))
    now = datetime(2026, 10, 26, 12, tzinfo=UTC)
    digests = plan_digests(SITE, AI, [entry(late), entry(early)], now, BERLIN, days=3)
    assert [d.day for d in digests] == [date(2026, 10, 25)]
    assert [s.entry.id for s in digests[0].stories] == [late.id, early.id]  # newest first
    assert digests[0].closed == datetime(2026, 10, 25, 23, tzinfo=UTC)
    in_utc = plan_digests(SITE, AI, [entry(late), entry(early)], now, UTC_ZONE, days=3)
    assert [d.day for d in in_utc] == [date(2026, 10, 25), date(2026, 10, 24)]


ZONES = ["UTC", "Europe/Berlin", "America/Santiago", "Asia/Kathmandu", "Pacific/Chatham"]


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(ZONES),
)
def test_now_always_falls_in_today_and_yesterday_closed_at_the_last_close(
    moment: datetime, zone: str
) -> None:
    tz = ZoneInfo(zone)
    day = today(moment, tz)
    assert day_start(day, tz) <= moment < day_close(day, tz)
    assert last_close(moment, tz) == day_close(closed_days(moment, tz, 1)[0], tz) <= moment
    assert next_close(moment, tz) > moment
    assert timedelta(hours=22) <= day_close(day, tz) - day_start(day, tz) <= timedelta(hours=26)


# -- stories ----------------------------------------------------------------------------


def test_stories_rank_by_quality_then_breadth_then_newest_then_id() -> None:
    noon = datetime(2026, 10, 31, 12, tzinfo=UTC)
    best = article(1, noon, quality=90)
    broad = article(2, noon, quality=60, outlets=("A", "B", "C"))
    narrow_newer = article(3, noon + timedelta(hours=1), quality=60, outlets=("A",))
    narrow = article(4, noon, quality=60, outlets=("B",))
    unrated = article(5, noon + timedelta(hours=5), quality=None, outlets=("A", "B", "C", "D"))
    entries = [entry(a) for a in (unrated, narrow, narrow_newer, broad, best)]
    ranked = [s.entry.article for s in top_stories(entries, 10)]
    assert ranked == [best, broad, narrow_newer, narrow, unrated]
    random.Random(4).shuffle(entries)
    assert [s.entry.article for s in top_stories(entries, 10)] == ranked  # never the input's order
    assert [s.entry.article for s in top_stories(entries, 2)] == [best, broad]


def test_breadth_counts_other_outlets_once_each() -> None:
    noon = datetime(2026, 10, 31, 12, tzinfo=UTC)
    story = structs.replace(
        article(1, noon),
        related=(
            Related("A on it", "https://www.sky.com/1", Provider("Sky", "sky.com")),
            Related("A again", "https://news.sky.com/2", Provider("Sky News", "sky.com")),
            Related("B on it", "https://b.example/3"),
            Related("Its own outlet", "https://news.example/other", Provider("Example News")),
            Related("Itself", "https://news.example/1"),
        ),
    )
    (ranked,) = top_stories([entry(story)])
    assert ranked.breadth == 2  # sky.com once; the article's own outlet not at all


def test_one_digest_per_closed_day_with_stories_capped_at_size() -> None:
    articles = [
        *(article(n, datetime(2026, 10, 31, n, tzinfo=UTC), quality=n) for n in range(1, 6)),
        article(10, datetime(2026, 10, 29, 8, tzinfo=UTC)),  # the 30th has none
        article(11, datetime(2026, 11, 1, 8, tzinfo=UTC)),  # today: not closed
        article(12, datetime(2026, 10, 20, 8, tzinfo=UTC)),  # before the window
    ]
    digests = plan_digests(SITE, AI, map(entry, articles), NOW, UTC_ZONE, size=3, days=5)
    assert [d.day for d in digests] == [date(2026, 10, 31), date(2026, 10, 29)]
    assert [s.entry.article.title for s in digests[0].stories] == ["Story 5", "Story 4", "Story 3"]
    assert [s.entry.article.title for s in digests[1].stories] == ["Story 10"]
    assert [d.closed for d in digests] == [
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 10, 30, tzinfo=UTC),
    ]
    assert plan_digests(SITE, AI, [], NOW, UTC_ZONE) == ()


def test_a_digest_id_depends_on_the_site_the_topic_and_the_date_only() -> None:
    day = date(2026, 10, 31)
    first = plan_digests(
        SITE, AI, [entry(article(1, datetime(2026, 10, 31, 9, tzinfo=UTC)))], NOW, UTC_ZONE
    )
    later = plan_digests(
        SITE,
        AI,
        [entry(article(n, datetime(2026, 10, 31, 9, tzinfo=UTC))) for n in (1, 2)],
        NOW + timedelta(hours=12),
        UTC_ZONE,
    )
    assert first[0].id == later[0].id == digest_id(SITE, AI, day)
    assert first[0].id.startswith("urn:uuid:")
    assert (
        len(
            {
                digest_id(SITE, AI, day),
                digest_id(SITE, topic_feed("space"), day),
                digest_id(SITE, AI, day - timedelta(days=1)),
                digest_id("https://other.example/", AI, day),
            }
        )
        == 4
    )


def test_the_content_is_escaped_html_naming_title_outlet_excerpt_and_breadth() -> None:
    noon = datetime(2026, 10, 31, 12, tzinfo=UTC)
    story = article(1, noon, outlets=("A", "B"), provider="Q&A <News>")
    story = structs.replace(story, title="<script>x</script>", excerpt="word " * 100)
    (digest,) = plan_digests(SITE, AI, [entry(story)], NOW, UTC_ZONE)
    content = digest_html(digest, "A & I")
    assert "<script>" not in content and "&lt;script&gt;x&lt;/script&gt;" in content
    assert "(Q&amp;A &lt;News&gt;)" in content and "A &amp; I" in content
    assert '<a href="https://news.example/1">' in content
    assert "Also covered by 2 outlets." in content
    assert "word " * 10 in content and len(content) < 800  # the excerpt is cut short
    assert "Saturday 2026-10-31" in content


@settings(max_examples=100, deadline=None)
@given(title=st.text(min_size=1), excerpt=st.text(), topic=st.text(min_size=1), outlet=st.text())
def test_any_text_in_a_seed_gives_a_valid_digest(
    title: str, excerpt: str, topic: str, outlet: str
) -> None:
    data = seed_text(
        title=title,
        excerpt=excerpt,
        provider={"name": outlet, "domain": "news.example"},
        publishedDateTime="2026-10-31T12:00:00Z",
    ).encode("utf-8", "surrogatepass")
    found = parse_seed(data, "h.md").article
    if found is None:
        return
    digests = plan_digests(SITE, AI, [entry(found)], NOW, UTC_ZONE)
    plan = DigestPlan("ai", AI, topic, digests, last_close(NOW, UTC_ZONE))
    site = SiteConfig(public_url=SITE)
    root = check_feed(render_digest(plan, site))
    assert len(root.findall(f"{ATOM}entry")) == 1
    content = root.findtext(f"{ATOM}entry/{ATOM}content") or ""
    fragment = html5lib.parseFragment(content, namespaceHTMLElements=False)
    assert {e.tag for e in fragment.iter()} <= {"DOCUMENT_FRAGMENT", "p", "ol", "li", "a", "br"}
    (link,) = fragment.iter("a")  # the seed's text is text: it makes no element
    assert link.text == found.title and link.get("href") == found.url


# -- builds -----------------------------------------------------------------------------

DAY = timedelta(days=1)
BUILT = datetime(2026, 11, 1, 10, tzinfo=UTC)
"""The build clock: Sunday 2026-11-01 10:00 UTC (11:00 in Berlin)."""
ON = {"digests.enabled": True, "digests.size": 2, "digests.days": 5}


def add_story(site: Site, name: str, published: datetime, **fields: Any) -> None:
    site.add(
        f"{name}.md",
        title=fields.pop("title", name),
        originalUrl=f"https://news.example/{name}",
        webUrl=None,
        publishedDateTime=published.isoformat(),
        topics=fields.pop("topics", ["AI"]),
        **fields,
    )


def stories(site: Site) -> None:
    """Saturday: three stories (the best two make the digest); Thursday: one; Friday: none;
    today: one; and one before the window."""
    add_story(site, "sat-best", BUILT - DAY, quality=90)
    add_story(
        site,
        "sat-broad",
        BUILT - DAY - timedelta(hours=2),
        quality=60,
        related=[
            {
                "title": "Elsewhere",
                "webUrl": f"https://o{n}.example/x",
                "provider": {"name": f"O{n}"},
            }
            for n in range(3)
        ],
    )
    add_story(site, "sat-plain", BUILT - DAY - timedelta(hours=1), quality=60)
    add_story(site, "thu", BUILT - 3 * DAY, quality=40)
    add_story(site, "today", BUILT - timedelta(hours=1), quality=99)
    add_story(site, "old", BUILT - 10 * DAY, quality=99)


def daily(site: Site, slug: str = "ai") -> bytes:
    return (site.out / "feeds" / slug / "daily.atom").read_bytes()


def parsed(data: bytes) -> list[tuple[str, str, list[str]]]:
    """(id, title, linked story URLs) of each entry, as a feed reader sees them."""
    feed = feedparser.parse(data)
    assert not feed.bozo
    out = []
    for e in feed.entries:
        html = e.content[0].value
        links = [part.split('"')[0] for part in html.split('<a href="')[1:]]
        out.append((e.id, e.title, links))
    return out


def test_a_build_writes_a_valid_digest_per_topic_of_its_closed_days(site: Site) -> None:
    stories(site)
    site.build(BUILT, ON)
    root = check_feed(daily(site))
    entries = parsed(daily(site))
    assert [(title, links) for _, title, links in entries] == [
        (
            "AI: Saturday 2026-10-31",
            ["https://news.example/sat-best", "https://news.example/sat-broad"],
        ),
        ("AI: Thursday 2026-10-29", ["https://news.example/thu"]),
    ]
    assert root.findtext(f"{ATOM}updated") == "2026-11-01T00:00:00+00:00"
    published = [e.findtext(f"{ATOM}published") for e in root.findall(f"{ATOM}entry")]
    assert published == ["2026-11-01T00:00:00+00:00", "2026-10-30T00:00:00+00:00"]
    self_link = [
        link.get("href") for link in root.findall(f"{ATOM}link") if link.get("rel") == "self"
    ]
    assert self_link == ["http://127.0.0.1:8080/feeds/ai/daily.atom"]
    assert root.findtext(f"{ATOM}id") != check_feed(site.feed("ai")).findtext(f"{ATOM}id")
    assert not (site.out / "feeds" / "all" / "daily.atom").exists()  # topics only
    assert not list((site.out / "feeds").glob("providers/*/daily.atom"))

    reader = make_reader(":memory:", feed_root=str(site.out))  # a real reader takes it
    reader.add_feed("feeds/ai/daily.atom")
    (result,) = reader.update_feeds_iter(feed="feeds/ai/daily.atom")
    assert not isinstance(result.value, Exception), result.value
    assert {(e.id, e.title) for e in reader.get_entries()} == {(i, t) for i, t, _ in entries}

    page = (site.out / "topics" / "ai.html").read_bytes()
    tree = check_page(page).tree
    hrefs = [a.get("href") for a in tree.iter("a") if a.text == "Daily digest"]
    assert hrefs == ["../feeds/ai/daily.atom"]
    if vnu() is not None:
        assert validate_pages([site.out / "topics" / "ai.html"]) == ""


def test_digest_ids_and_bytes_stay_across_builds_and_new_stories_of_today(site: Site) -> None:
    stories(site)
    site.build(BUILT, ON)
    first = daily(site)
    site.build(BUILT + timedelta(hours=1), ON)
    assert daily(site) == first  # a later build the same day writes the same bytes
    add_story(site, "today-2", BUILT, quality=100)
    site.build(BUILT + timedelta(hours=2), ON)
    assert daily(site) == first  # today's stories wait for the day to close


def test_a_digest_appears_after_its_day_closes(site: Site) -> None:
    stories(site)
    site.build(BUILT, ON)
    before = parsed(daily(site))
    site.build(BUILT + DAY, ON)  # Sunday has closed
    after = parsed(daily(site))
    assert after[0][1] == "AI: Sunday 2026-11-01"
    assert after[0][2] == ["https://news.example/today"]
    assert after[1:] == before  # the earlier digests keep their ids and stories
    root = check_feed(daily(site))
    assert root.findtext(f"{ATOM}updated") == "2026-11-02T00:00:00+00:00"


def test_days_close_at_midnight_in_the_configured_time_zone(site: Site) -> None:
    # 23:30 UTC on Saturday is 00:30 on Sunday in Berlin: today there, not yet closed.
    add_story(site, "late", datetime(2026, 10, 31, 23, 30, tzinfo=UTC))
    add_story(site, "early", datetime(2026, 10, 31, 20, tzinfo=UTC))
    site.build(BUILT, {**ON, "digests.timezone": "Europe/Berlin"})
    assert [(t, links) for _, t, links in parsed(daily(site))] == [
        ("AI: Saturday 2026-10-31", ["https://news.example/early"])
    ]
    assert check_feed(daily(site)).findtext(f"{ATOM}updated") == "2026-10-31T23:00:00+00:00"
    site.build(BUILT, ON)  # in UTC both were on Saturday
    assert [links for _, _, links in parsed(daily(site))] == [
        ["https://news.example/late", "https://news.example/early"]  # newest first
    ]


def test_a_story_told_by_several_seeds_is_one_story_of_the_digest(site: Site) -> None:
    add_story(
        site,
        "lead",
        BUILT - DAY - timedelta(hours=1),
        related=[{"title": "Sky on it", "webUrl": "https://news.sky.com/story/1"}],
    )
    site.add(
        "sky.md",
        title="Sky on it",
        originalUrl="https://news.sky.com/story/1",
        webUrl=None,
        publishedDateTime=(BUILT - DAY).isoformat(),
        provider={"name": "Sky", "domain": "sky.com"},
        topics=["AI"],
    )
    site.build(BUILT, ON)
    ((_, _, links),) = parsed(daily(site))
    assert links == ["https://news.example/lead"]
    content = feedparser.parse(daily(site)).entries[0].content[0].value
    assert "Also covered by 1 outlet." in content


def test_a_topic_with_no_closed_day_yet_has_a_valid_empty_digest(site: Site) -> None:
    add_story(site, "today", BUILT - timedelta(hours=1))
    site.build(BUILT, ON)
    root = check_feed(daily(site))
    assert root.findall(f"{ATOM}entry") == []
    assert root.findtext(f"{ATOM}updated") == "2026-11-01T00:00:00+00:00"  # the last day's close


def test_digests_follow_the_feed_filters(site: Site) -> None:
    stories(site)
    site.build(BUILT, {**ON, "feeds.min_quality": 70})
    assert [t for _, t, _ in parsed(daily(site))] == ["AI: Saturday 2026-10-31"]
    assert [links for _, _, links in parsed(daily(site))] == [["https://news.example/sat-best"]]


def test_disabled_digests_write_nothing_and_remove_what_was_written(site: Site) -> None:
    stories(site)
    add_story(site, "space", BUILT - DAY, topics=["Space"])
    site.build(BUILT)
    assert not list(site.out.rglob("daily.atom"))
    assert b"Daily digest" not in (site.out / "topics" / "ai.html").read_bytes()
    site.build(BUILT, ON)
    assert (site.out / "feeds" / "space" / "daily.atom").is_file()
    (site.seeds / "space.md").unlink()  # a topic that goes takes its digest along
    site.build(BUILT, ON)
    assert not (site.out / "feeds" / "space").exists()
    assert (site.out / "feeds" / "ai" / "daily.atom").is_file()
    site.build(BUILT)
    assert not list(site.out.rglob("daily.atom"))
    assert not (site.out / "feeds" / "ai").exists()
    assert b"Daily digest" not in (site.out / "topics" / "ai.html").read_bytes()


def test_a_topic_named_providers_keeps_its_digest_beside_the_provider_feeds(site: Site) -> None:
    add_story(
        site, "p", BUILT - DAY, topics=["Providers"], provider={"name": "Sky", "domain": "sky.com"}
    )
    site.build(BUILT, ON)
    site.build(BUILT, ON)  # the provider feeds' pruning leaves it alone
    assert (site.out / "feeds" / "providers" / "daily.atom").is_file()
    assert (site.out / "feeds" / "providers" / "sky.com.atom").is_file()
    check_feed(daily(site, "providers"))


def test_the_running_app_renders_the_digests_when_the_day_closes(site: Site) -> None:
    stories(site)
    with make_app(site.config(**ON)) as app:
        app.build(BUILT)
        close = app.next_due(BUILT)
        assert close == datetime(2026, 11, 2, tzinfo=UTC)
        assert app.rescan(close).render is None  # no seed changed: a plain rescan renders nothing
        assert parsed(daily(site))[0][1] == "AI: Saturday 2026-10-31"
        done = app.render_due(close)
        assert done.render is not None and "feeds/ai/daily.atom" in done.render.written
        assert parsed(daily(site))[0][1] == "AI: Sunday 2026-11-01"
        assert app.next_due(close) == datetime(2026, 11, 3, tzinfo=UTC)
        written = daily(site)
    (site.out / "feeds" / "ai" / "daily.atom").unlink()
    site.build(close, ON)  # a cold build at that moment writes the same bytes
    assert daily(site) == written


def test_a_deleted_digest_is_written_again_at_the_next_rescan(site: Site) -> None:
    stories(site)
    with make_app(site.config(**ON)) as app:
        app.build(BUILT)
        written = daily(site)
        (site.out / "feeds" / "ai" / "daily.atom").unlink()
        done = app.rescan(BUILT + timedelta(minutes=1))
        assert done.output_missing
        assert daily(site) == written


def test_the_app_needs_no_render_at_midnight_without_digests(site: Site) -> None:
    stories(site)
    with make_app(site.config()) as app:
        app.build(BUILT)
        assert app.next_due(BUILT) is None


def test_a_reload_turns_digests_on_and_off(site: Site) -> None:
    stories(site)
    with make_app(site.config()) as app:
        app.build(BUILT)
        assert not list(site.out.rglob("daily.atom"))
        app.reconfigure(site.config(**ON))
        done = app.rescan(BUILT)
        assert done.reconfigured and "feeds/ai/daily.atom" in done.render.written  # type: ignore[union-attr]
        assert app.next_due(BUILT) == datetime(2026, 11, 2, tzinfo=UTC)
        app.reconfigure(site.config(**{**ON, "digests.timezone": "Asia/Tokyo"}))
        app.rescan(BUILT)
        assert app.next_due(BUILT) == datetime(2026, 11, 1, 15, tzinfo=UTC)  # Tokyo's midnight
        app.reconfigure(site.config())
        done = app.rescan(BUILT)
        assert "feeds/ai/daily.atom" in done.render.removed  # type: ignore[union-attr]
        assert app.next_due(BUILT) is None


def test_a_digest_too_large_for_readers_sheds_its_oldest_days(site: Site) -> None:
    for day in range(1, 31):
        for n in range(25):
            add_story(
                site,
                f"d{day}-{n}",
                BUILT - day * DAY,
                title=f"Day {day} story {n} " + "long title " * 20,
                excerpt="An excerpt that goes on. " * 10,
            )
    site.build(BUILT, {"digests.enabled": True, "digests.size": 50, "digests.days": 30})
    data = daily(site)
    assert len(data) <= 400_000
    days = [title for _, title, _ in parsed(data)]
    assert 1 < len(days) < 30
    assert days[0] == "AI: Saturday 2026-10-31"  # the newest kept


def test_a_digest_names_the_websub_hub_of_the_feeds(site: Site) -> None:
    stories(site)
    site.build(BUILT, {**ON, "websub.hub": "https://hub.example/"})
    root = check_feed(daily(site))
    hubs = [link.get("href") for link in root.findall(f"{ATOM}link") if link.get("rel") == "hub"]
    assert hubs == ["https://hub.example/"]


@pytest.fixture
def _postgres_scratch() -> Iterator[None]:
    """Drop the scratch PostgreSQL database once the test is done."""
    yield
    SCRATCH.drop()


@pytest.mark.usefixtures("_postgres_scratch")
def test_on_a_shared_state_the_digests_are_published_and_withdrawn(site: Site) -> None:
    url = SCRATCH.schema_url()  # skipped without PostgreSQL
    stories(site)
    with make_app(site.config(**ON, **{"state.url": url})) as app:
        app.build(BUILT)
        assert app.shared is not None
        published = app.shared.documents.index()
        assert "feeds/ai/daily.atom" in published
        app.reconfigure(site.config(**{"state.url": url}))
        done = app.rescan(BUILT)
        assert done.render is not None and "feeds/ai/daily.atom" in done.render.removed
        assert "feeds/ai/daily.atom" not in app.shared.documents.index()


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("digests:\n  timezone: Mars/Olympus\n", "digests.timezone: "),
        ("digests:\n  timezone: ../../etc/passwd\n", "digests.timezone: "),
        (f"digests:\n  timezone: {'x' * 300}\n", "digests.timezone: "),  # longer than a file name
        ("digests:\n  size: 0\n", "digests.size: "),
        ("digests:\n  size: 51\n", "digests.size: "),
        ("digests:\n  days: 0\n", "digests.days: "),
        ("digests:\n  enabled: maybe\n", "digests.enabled: "),
    ],
)
def test_bad_digest_settings_are_one_line_naming_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: {expected}")


def test_digest_settings_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("digests:\n  enabled: true\n  timezone: America/New_York\n")
    config = load_config(path, environ={"AGGREGATOR_DIGESTS__SIZE": "5"})
    assert config.digests.enabled and config.digests.size == 5 and config.digests.days == 14
    assert config.digests.zone == ZoneInfo("America/New_York")
    assert load_config(environ={}).digests.enabled is False
