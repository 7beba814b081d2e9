"""JSON Feed 1.1 and RSS 2.0 beside Atom: the same entries, ids and order."""

from __future__ import annotations

import json
import random
from pathlib import Path

import feedparser
import jsonschema
import listparser
import pytest

from aggregator.config import load_config
from aggregator.errors import ConfigError
from tests.conftest import Site
from tests.feedcheck import ATOM, DC, check_feed, check_rss, entry_ids
from tests.pagecheck import check_page

ALL_FORMATS = {"feeds.formats": ("atom", "json", "rss")}
SCHEMA = json.loads(
    (Path(__file__).parent / "data" / "jsonfeed-1.1.schema.json").read_text(encoding="utf-8")
)
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def fill(site: Site) -> None:
    for n in range(4):
        site.add(
            f"s{n}.md",
            title=f"Story {n} <b>& more</b>",
            topics=["AI", "Space"] if n % 2 else ["AI"],
            originalUrl=f"https://f.example/{n}",
            publishedDateTime=f"2024-0{n + 1}-01T00:00:00Z",
            images=[{"url": f"https://i.example/{n}.jpg", "width": 100, "height": 50}],
        )


def test_every_format_carries_the_same_entries_in_the_same_order(site: Site) -> None:
    fill(site)
    site.build(overrides=ALL_FORMATS)
    for slug in ("all", "ai", "space"):
        atom_ids = entry_ids(check_feed(site.feed(slug)))
        feed = json.loads((site.out / "feeds" / f"{slug}.json").read_bytes())
        VALIDATOR.validate(feed)
        assert feed["version"] == "https://jsonfeed.org/version/1.1"
        assert feed["feed_url"] == f"http://127.0.0.1:8080/feeds/{slug}.json"
        assert [item["id"] for item in feed["items"]] == atom_ids
        for item in feed["items"]:
            assert item["content_text"] and item["url"].startswith("https://")
            assert item["date_published"] and item["date_modified"]
        check_rss((site.out / "feeds" / f"{slug}.rss").read_bytes())
        rss = feedparser.parse((site.out / "feeds" / f"{slug}.rss").read_bytes())
        assert rss.bozo == 0, rss.get("bozo_exception")
        assert [e.id for e in rss.entries] == atom_ids
        assert rss.feed.get("ttl") == "1"
        assert rss.feed.link == f"http://127.0.0.1:8080/topics/{slug}.html"
    index = check_page((site.out / "index.html").read_bytes())
    for suffix, media in (
        (".atom", "application/atom+xml"),
        (".json", "application/feed+json"),
        (".rss", "application/rss+xml"),
    ):
        assert (media, f"feeds/ai{suffix}") in index.alternates()


def test_an_rss_description_shows_markup_in_the_excerpt_as_text(site: Site) -> None:
    site.add("x.md", excerpt="<img src=x onerror=alert(1)> & ]]> <!-- c -->")
    site.build(overrides=ALL_FORMATS)
    rss = feedparser.parse((site.out / "feeds" / "all.rss").read_bytes())
    assert rss.bozo == 0
    summary = rss.entries[0].summary
    assert "<img" not in summary and "&lt;img src=x onerror=alert(1)&gt;" in summary


def test_rss_items_name_their_provider_and_the_feed_names_the_hub(site: Site) -> None:
    site.add("p.md", provider={"name": "Example & Co News", "domain": "news.example"})
    site.add("n.md", provider=None, originalUrl="https://n.example/1", webUrl=None)
    hub = "https://hub.example/websub"
    site.build(overrides={**ALL_FORMATS, "websub.hub": hub})
    for slug in ("all", "ai"):
        data = (site.out / "feeds" / f"{slug}.rss").read_bytes()
        root = check_rss(data)
        channel = root.find("channel")
        assert channel is not None
        links = {x.get("rel"): x.get("href") for x in channel.findall(f"{ATOM}link")}
        assert links["hub"] == hub
        creators = {
            item.findtext("link"): item.findtext(f"{DC}creator") for item in channel.iter("item")
        }
        assert creators == {
            "https://news.example/2024/a-headline": "Example & Co News",
            "https://n.example/1": None,
        }
        parsed = feedparser.parse(data)
        authors = {e.link: e.get("author") for e in parsed.entries}
        assert authors["https://news.example/2024/a-headline"] == "Example & Co News"
    site.build(overrides=ALL_FORMATS)  # no hub: none named
    channel = check_rss((site.out / "feeds" / "all.rss").read_bytes()).find("channel")
    assert channel is not None
    assert [x.get("rel") for x in channel.findall(f"{ATOM}link")] == ["self"]


def test_formats_turned_off_leave_no_stale_files(site: Site) -> None:
    fill(site)
    site.build(overrides=ALL_FORMATS)
    assert (site.out / "feeds" / "ai.json").exists()
    site.build()
    assert not list((site.out / "feeds").glob("*.json"))
    assert not list((site.out / "feeds").glob("*.rss"))
    check_feed(site.feed("ai"))


def test_atom_cannot_be_turned_off() -> None:
    with pytest.raises(ConfigError, match="atom is always written"):
        load_config(overrides={"feeds.formats": ("json",)}, environ={})


def test_the_json_schema_catches_a_broken_feed() -> None:
    broken = {"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": [{"id": "1"}]}
    assert not VALIDATOR.is_valid(broken)  # an item needs content_text or content_html


def test_listparser_finds_every_topic_feed_in_one_folder_and_everything_apart(
    site: Site,
) -> None:
    fill(site)
    site.build(overrides={"site.title": "Tech <News> & more"})
    result = listparser.parse((site.out / "feeds.opml").read_bytes())
    assert not result.bozo
    topics = {f"http://127.0.0.1:8080/feeds/{slug}.atom" for slug in site.feeds() if slug != "all"}
    assert topics and {feed.url for feed in result.feeds} == topics
    # one folder, named after the site, and the feed of everything not in this file: it
    # holds the same articles (with the same ids), which readers would show twice or hide
    assert all(feed.categories == [["Tech <News> & more"]] for feed in result.feeds)
    everything = listparser.parse((site.out / "all.opml").read_bytes())
    assert not everything.bozo
    assert [feed.url for feed in everything.feeds] == ["http://127.0.0.1:8080/feeds/all.atom"]
    index = check_page((site.out / "index.html").read_bytes())
    assert {"feeds.opml", "all.opml"} <= set(index.links())


MAKE_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "make_corpus.py"


def generated(site: Site, count: int) -> None:
    """A varied corpus of our own: unicode topics, markup, odd dates, images, related links."""
    rng = random.Random(5005)
    topics = ["AI", "Space", "人工智能", "Énergie", "C++ & Rust", "<b>Bold</b>", "Ünïcode"]
    for n in range(count):
        site.add(
            f"g/{n:04d}.md",
            title=f"Story {n} " + rng.choice(["<i>it</i>", "&amp;", "ok", "\u202eRTL"]),
            excerpt=rng.choice([None, f"Excerpt {n} with a < and a > and \u00e9"]),
            topics=rng.sample(topics, rng.randint(1, 3)),
            originalUrl=f"https://g{n % 17}.example/{n}?q={rng.random()}&x=1",
            publishedDateTime=f"20{rng.randint(10, 25)}-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z",
            images=[{"url": f"https://i.example/{n}.jpg", "width": 10, "height": 10}]
            if n % 3
            else None,
            related=[
                {"title": f"R{r}", "originalUrl": f"https://r.example/{r}"} for r in range(n % 4)
            ],
        )


def check_every_feed(site: Site) -> int:
    """Validate every Atom, JSON Feed and RSS document under feeds/; returns how many."""
    checked = 0
    feeds = site.out / "feeds"
    for path in sorted(feeds.rglob("*.atom")):
        check_feed(path.read_bytes())
        checked += 1
    for path in sorted(feeds.glob("*.json")):
        VALIDATOR.validate(json.loads(path.read_bytes()))
        checked += 1
    for path in sorted(feeds.glob("*.rss")):
        check_rss(path.read_bytes())
        checked += 1
    return checked


def test_every_feed_of_a_generated_corpus_validates(site: Site) -> None:
    generated(site, 400)
    site.build(overrides={**ALL_FORMATS, "feeds.archive": True, "feeds.max_entries": 20})
    assert check_every_feed(site) > 3 * 8 + 20  # every format of every topic, and archives


@pytest.mark.skipif(not MAKE_CORPUS.is_file(), reason="needs ../shared/bench/make_corpus.py")
def test_every_feed_of_the_shared_corpus_validates(site: Site) -> None:
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, str(MAKE_CORPUS), "--count", "600", "--out", str(site.seeds / "c")],
        check=True,
        capture_output=True,
    )
    site.build(overrides={**ALL_FORMATS, "feeds.archive": True})
    assert check_every_feed(site) > 100
