"""Pages for people: the index and a page per topic, as browsers and readers see them."""

from __future__ import annotations

import io
import json
import re
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import feedparser
import jsonschema
import listparser
import pytest
from PIL import Image

from aggregator.thumbs import HEADER_BYTES, webp_size
from tests.apps import fetch_thumbnails
from tests.conftest import NOW, Site
from tests.feedcheck import check_feed, entry_ids
from tests.pagecheck import check_page, validate_pages, vnu

ALL_FORMATS = {"feeds.formats": ("atom", "json", "rss")}
BASE = "http://127.0.0.1:8080/"
TAIL = " <script>alert(1)</script> & more"
JSON_FEED = jsonschema.Draft202012Validator(
    json.loads((Path(__file__).parent / "data" / "jsonfeed-1.1.schema.json").read_bytes()),
    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
)


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
        (icon,) = page.icon()  # the site's own icon
        assert urljoin(page_url, icon) == f"{BASE}favicon.svg"
        assert (site.out / "favicon.svg").read_bytes().startswith(b"<svg ")


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


RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
RFC822 = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d ([+-]\d{4}|GMT)"
)
HTML_DATE_TIME = re.compile(
    r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d{1,3})?)?(Z|[+-]\d\d:?\d\d))?"
)
"""The `datetime` values HTML allows here: a date, or a global date and time (at most
three digits of a second)."""


def test_pages_and_feeds_stay_valid_after_an_edit(site: Site) -> None:
    """An edit is stamped with the clock's time, microseconds and all."""
    fill(site)
    site.build(overrides=ALL_FORMATS)
    site.add(
        "s4.md",
        title="Story 4, corrected",
        topics=["AI"],
        originalUrl="https://f.example/4?a=1&b=2",
        publishedDateTime="2024-05-01T00:00:00Z",
    )
    edited_at = NOW + timedelta(hours=1, microseconds=123_456)
    site.build(now=edited_at, overrides=ALL_FORMATS)

    atom = check_feed(site.feed("ai"))
    ns = "{http://www.w3.org/2005/Atom}"
    assert atom.findtext(f"{ns}entry/{ns}title") == "Story 4, corrected"
    stamps = [e.text or "" for e in atom.iter(f"{ns}updated", f"{ns}published")]
    assert datetime.fromisoformat(atom.findtext(f"{ns}updated") or "") == edited_at
    assert all(RFC3339.fullmatch(s) for s in stamps), stamps
    document = json.loads((site.out / "feeds" / "ai.json").read_bytes())
    JSON_FEED.validate(document)
    json_dates = [i[k] for i in document["items"] for k in ("date_published", "date_modified")]
    assert all(RFC3339.fullmatch(s) for s in json_dates), json_dates
    rss = feedparser.parse((site.out / "feeds" / "ai.rss").read_bytes())
    assert rss.bozo == 0, rss.get("bozo_exception")
    channel = rss.feed.get("updated", "")
    for stamp in [channel, *(e.published for e in rss.entries)]:
        assert RFC822.fullmatch(stamp), stamp

    pages = [site.out / "index.html", *sorted((site.out / "topics").glob("*.html"))]
    for path in pages:
        times = check_page(path.read_bytes()).tree.iter("time")
        values = [t.get("datetime", "") for t in times]
        assert values and all(HTML_DATE_TIME.fullmatch(v) for v in values), (path.name, values)
    index = check_page((site.out / "index.html").read_bytes())
    assert f"{edited_at.replace(microsecond=0).isoformat()}" in [
        t.get("datetime") for t in index.tree.iter("time")
    ]
    if vnu() is not None:
        assert validate_pages(pages) == ""


def _image(size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG", **options: Any) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "red").save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("options", [{}, {"lossless": True}], ids=["lossy", "lossless"])
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_the_size_of_a_webp_is_read_from_its_header(mode: str, options: dict[str, Any]) -> None:
    for size in [(1, 1), (320, 213), (160, 320), (16383, 3)]:
        data = _image(size, mode, "WEBP", **options)
        assert webp_size(data[:HEADER_BYTES]) == size
    assert webp_size(_image((10, 10))[:HEADER_BYTES]) is None
    assert webp_size(b"RIFF") is None


def with_thumbnails(site: Site) -> None:
    """Seeds with a wide and a tall picture, served on 127.0.0.1; a build, then thumbnails."""
    pictures = {"/wide.png": _image((1200, 800)), "/tall.jpg": _image((300, 900), fmt="JPEG")}

    class Pictures(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pictures.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pictures)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        for n, name in enumerate(pictures):
            site.add(
                f"p{n}.md",
                title=f"Picture {n}: a headline long enough to wrap beside its thumbnail",
                originalUrl=f"https://p.example/{n}",
                publishedDateTime=f"2024-0{n + 1}-01T00:00:00Z",
                images=[{"url": f"http://127.0.0.1:{port}{name}", "width": 10, "height": 10}],
            )
        site.build()
        allow = {"links.allow_networks": ("127.0.0.0/8",), "links.allowed_ports": (port,)}
        assert fetch_thumbnails(site.config(**allow, **{"links.host_interval": 0}), NOW).made == 2
    finally:
        server.shutdown()
        server.server_close()


def test_thumbnails_on_a_page_state_their_size(site: Site) -> None:
    """`width` and `height` are the local file's own, so nothing moves as it loads."""
    with_thumbnails(site)
    page = check_page((site.out / "topics" / "ai.html").read_bytes())
    shown = list(page.tree.iter("img"))
    assert len(shown) == 2
    for img in shown:
        with Image.open(site.out / "topics" / img.get("src", "")) as thumb:
            assert (img.get("width"), img.get("height")) == (str(thumb.width), str(thumb.height))
    assert {(img.get("width"), img.get("height")) for img in shown} == {
        ("320", "213"),
        ("213", "640"),
    }
