"""Pages for people: the index and a page per topic, as browsers and readers see them."""

from __future__ import annotations

from urllib.parse import urljoin

import listparser
import pytest

from tests.conftest import Site
from tests.feedcheck import check_feed, entry_ids
from tests.pagecheck import check_page, validate_pages, vnu

ALL_FORMATS = {"feeds.formats": ("atom", "json", "rss")}
BASE = "http://127.0.0.1:8080/"
TAIL = " <script>alert(1)</script> & more"


def fill(site: Site) -> None:
    for n in range(5):
        site.add(
            f"s{n}.md",
            title=f"Story {n}{TAIL}",
            excerpt=f"Excerpt {n} with <b>markup</b> \u0007and a bell",
            topics=["AI", "Space"] if n % 2 else ["AI"],
            originalUrl=f"https://f.example/{n}?a=1&b=2",
            publishedDateTime=f"2024-0{n + 1}-01T00:00:00Z",
            provider={"name": "Pro <vider>", "domain": "f.example"},
            images=[{"url": f"https://i.example/{n}.jpg", "width": 100, "height": 50}],
        )


def test_a_topic_page_lists_the_feed_entries_and_how_to_subscribe(site: Site) -> None:
    fill(site)
    site.build(overrides=ALL_FORMATS)
    for slug in ("ai", "space", "all"):
        page = check_page((site.out / "topics" / f"{slug}.html").read_bytes())
        feed = check_feed(site.feed(slug))
        page_url = urljoin(BASE, f"topics/{slug}.html")
        # Autodiscovery: every format, resolving to the URL each feed names as its own.
        found = {kind: urljoin(page_url, href) for kind, href in page.alternates()}
        assert found == {
            "application/atom+xml": f"{BASE}feeds/{slug}.atom",
            "application/feed+json": f"{BASE}feeds/{slug}.json",
            "application/rss+xml": f"{BASE}feeds/{slug}.rss",
        }
        subscribe = [urljoin(page_url, h) for h in page.links("subscribe")]
        assert subscribe == list(found.values())
        # The same articles as the feed, in the same order, linking to the articles.
        atom = "{http://www.w3.org/2005/Atom}"
        feed_links = [link.get("href") for link in feed.iterfind(f"{atom}entry/{atom}link")]
        articles = [h for h in page.links() if h.startswith("https://f.example/")]
        assert articles == feed_links and len(articles) == len(entry_ids(feed))
        titles = [e.findtext(f"{atom}title") for e in feed.iter(f"{atom}entry")]
        assert page.text("h2") == titles
        assert titles[0] == ("Story 3" if slug == "space" else "Story 4") + TAIL
        assert all("\u0007" not in t for t in page.text("p"))
        assert "Pro <vider>" in " ".join(page.text("p"))
        assert page.fetched() == []  # no image, font or script from another host


def test_the_index_links_every_topic_page_and_the_opml_names_them(site: Site) -> None:
    fill(site)
    site.build()
    index = check_page((site.out / "index.html").read_bytes())
    pages = {href for href in index.links() if href.startswith("topics/")}
    assert pages == {"topics/all.html", "topics/ai.html", "topics/space.html"}
    for href in pages:
        assert (site.out / href).is_file()
    opml = listparser.parse((site.out / "feeds.opml").read_bytes())
    assert not opml.bozo
    by_feed = {f.url: f for f in opml.feeds}
    for slug in ("ai", "space"):
        outline = by_feed[f"{BASE}feeds/{slug}.atom"]
        # listparser keeps no htmlUrl: read it from the file itself
        assert outline.url
    text = (site.out / "feeds.opml").read_text()
    for slug in ("ai", "space"):
        assert f'htmlUrl="{BASE}topics/{slug}.html"' in text
    text = (site.out / "all.opml").read_text()
    assert f'htmlUrl="{BASE}topics/all.html"' in text


def test_feeds_name_their_topic_page_as_the_alternate(site: Site) -> None:
    fill(site)
    site.build()
    atom = "{http://www.w3.org/2005/Atom}"
    feed = check_feed(site.feed("space"))
    html = [
        link.get("href")
        for link in feed.findall(f"{atom}link")
        if link.get("rel") == "alternate" and link.get("type") == "text/html"
    ]
    assert html == [f"{BASE}topics/space.html"]


@pytest.mark.skipif(vnu() is None, reason="the Nu HTML Checker needs Java")
def test_pages_pass_the_nu_html_checker(site: Site) -> None:
    fill(site)
    site.add(
        "long.md",
        title="x" * 400 + " \ufdd0 \U0001fffe \U0010ffff end",
        topics=["人工智能", "../..", "CON", "Ctrl\vTopic\ufdd0"],
        provider={"name": "\u202eProvider", "domain": "p.example"},
        excerpt=None,
    )
    site.build(overrides=ALL_FORMATS)
    pages = [site.out / "index.html", *sorted((site.out / "topics").glob("*.html"))]
    assert len(pages) == 8
    assert validate_pages(pages) == ""


def test_text_from_seeds_cannot_turn_the_text_around_it(site: Site) -> None:
    """A right-to-left override in a field stays inside that field (bidi isolation)."""
    site.add(
        "rtl.md", title="\u202eTitle", provider={"name": "\u202eProvider", "domain": "p.example"}
    )
    site.build(overrides={"site.title": "\u202eSite"})
    page = check_page((site.out / "topics" / "ai.html").read_bytes())
    isolated = {"".join(e.itertext()) for e in page.tree.iter("bdi")}
    assert {"\u202eProvider", "\u202eSite"} <= isolated
    assert all(h.get("dir") == "auto" for h in page.tree.iter("h2"))
    index = check_page((site.out / "index.html").read_bytes())
    assert [h.get("dir") for h in index.tree.iter("h1")] == ["auto"]
