"""A feed opened in a browser: the XSLT stylesheet feeds name, and the page it makes.

Browsers apply the stylesheet themselves (Chromium is driven in test_browser);
here lxml's XSLT (libxslt, as in Chromium) runs it, and the page it makes is
checked like every other page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import feedparser
import pytest
from lxml import etree

from aggregator.feedpage import STYLESHEET, STYLESHEET_PATH
from tests.conftest import Site, seed_text
from tests.feedcheck import check_feed, entry_titles
from tests.pagecheck import check_page, validate_pages, vnu
from tests.service import RunningService

BASE = "http://127.0.0.1:8080/"
ALL_FORMATS = {"feeds.formats": ("atom", "json", "rss")}
ATOM = "{http://www.w3.org/2005/Atom}"
BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)


def fill(site: Site, count: int = 5) -> None:
    for n in range(count):
        site.add(
            f"s{n}.md",
            title=f"Story {n} & <b>co</b>",
            excerpt=f"Excerpt {n}: AT&T <i>said</i>",
            topics=["AI"],
            originalUrl=f"https://f.example/{n}",
            publishedDateTime=f"2024-0{n + 1}-01T00:00:00Z",
        )


def stylesheet_href(document: bytes) -> str | None:
    """Where the `<?xml-stylesheet?>` of an XML document points (None: it names none)."""
    root = etree.fromstring(document)
    for node in root.itersiblings(preceding=True):
        if isinstance(node, etree._ProcessingInstruction) and node.target == "xml-stylesheet":
            assert node.get("type") == "text/xsl"
            return node.get("href")
    return None


def without_stylesheet(document: bytes) -> bytes:
    head, _, rest = document.partition(b"\n")
    instruction, _, body = rest.partition(b"\n")
    assert instruction.startswith(b"<?xml-stylesheet ")
    return head + b"\n" + body


def transform(document: bytes) -> bytes:
    page = etree.XSLT(etree.fromstring(STYLESHEET))(etree.fromstring(document))
    data = bytes(page)
    assert data.startswith(b"<!DOCTYPE html>")
    return data


def parsed(document: bytes) -> dict[str, Any]:
    result = feedparser.parse(document)
    assert result.bozo == 0, result.get("bozo_exception")
    return {"feed": dict(result.feed), "entries": [dict(e) for e in result.entries]}


def test_atom_and_rss_name_the_stylesheet_and_read_as_before(site: Site) -> None:
    fill(site, 5)
    site.build(overrides={**ALL_FORMATS, "feeds.archive": True, "feeds.max_entries": 2})
    assert (site.out / STYLESHEET_PATH).read_bytes() == STYLESHEET
    documents = {
        "feeds/ai.atom": site.feed("ai"),
        "feeds/ai.rss": (site.out / "feeds" / "ai.rss").read_bytes(),
        "feeds/ai/archive/1.atom": (site.out / "feeds/ai/archive/1.atom").read_bytes(),
    }
    for relative, document in documents.items():
        href = stylesheet_href(document)
        assert href is not None, relative
        assert urljoin(BASE + relative, href) == BASE + STYLESHEET_PATH  # same origin
        assert parsed(document) == parsed(without_stylesheet(document))  # readers: unchanged
    for relative in ("feeds/ai.atom", "feeds/ai/archive/1.atom"):
        check_feed(documents[relative])
    assert b"xml-stylesheet" not in (site.out / "feeds" / "ai.json").read_bytes()


def test_the_stylesheet_makes_a_page_that_says_how_to_subscribe(site: Site, tmp_path: Path) -> None:
    fill(site, 3)
    site.build(overrides=ALL_FORMATS)
    pages = []
    for suffix, kind in ((".atom", "Atom"), (".rss", "RSS")):
        document = (site.out / "feeds" / f"ai{suffix}").read_bytes()
        data = transform(document)
        page = check_page(data)
        text = " ".join(page.text("p"))
        assert f"This is a news feed ({kind})" in text
        assert "copy its address into your feed reader" in text
        assert page.text("code") == [f"{BASE}feeds/ai{suffix}"]
        assert page.text("h1") == ["aggregator: AI"]
        titles = [t.strip() for t in page.text("h2")]
        assert titles == entry_titles(check_feed(site.feed("ai")))
        assert titles[0] == "Story 2 & <b>co</b>"
        assert [h for h in page.links() if h.startswith("https://f.example/")] == [
            f"https://f.example/{n}" for n in (2, 1, 0)
        ]
        assert f"{BASE}topics/ai.html" in page.links("subscribe")
        assert any("Excerpt 2: AT&T <i>said</i>" in p for p in page.text("p")), text
        assert page.fetched() == [] and page.icon() == [f"{BASE}favicon.svg"]
        (tmp_path / f"ai{suffix}.html").write_bytes(data)
        pages.append(tmp_path / f"ai{suffix}.html")
    if vnu() is not None:
        assert validate_pages(pages) == ""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    svc = RunningService(tmp_path / "svc", feeds={"formats": ["atom", "json", "rss"]})
    (svc.seeds / "a.md").write_text(seed_text(topics=["AI"]))
    svc.start()
    with svc:
        yield svc


def test_readers_get_feed_types_and_browsers_xml_they_style(service: RunningService) -> None:
    for path, feed_type in (
        ("/feeds/ai.atom", "application/atom+xml"),
        ("/feeds/ai.rss", "application/rss+xml"),
    ):
        for accept in ("*/*", feedparser.http.ACCEPT_HEADER, f"text/html, {feed_type}"):
            reader = service.get(path, accept=accept)
            assert reader.headers["content-type"] == f"{feed_type}; charset=utf-8", accept
        browser = service.get(path, accept=BROWSER_ACCEPT)
        assert browser.headers["content-type"] == "application/xml; charset=utf-8"
        assert browser.content == reader.content
        assert browser.headers["etag"] != reader.headers["etag"]
        assert "Accept" in browser.headers["vary"] and "Accept" in reader.headers["vary"]
        again = service.get(
            path, accept=BROWSER_ACCEPT, **{"if-none-match": browser.headers["etag"]}
        )
        assert again.status_code == 304
        # The feed may load its stylesheet (a script, to browsers), from its own origin only.
        policy = browser.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
    sheet = service.get("/" + STYLESHEET_PATH)
    assert sheet.status_code == 200 and sheet.content == STYLESHEET
    assert sheet.headers["content-type"] == "text/xsl; charset=utf-8"
    for page in ("/", "/topics/ai.html"):  # pages still run no script at all
        assert "script-src" not in service.get(page).headers["content-security-policy"]
