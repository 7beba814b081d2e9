"""A real browser (headless Chromium, driven by Playwright) on the running service's pages.

Needs Debian's `chromium` (`.ci/run` installs it). Without it the test is
skipped, unless AGGREGATOR_REQUIRE_BROWSER is set, as CI does: then it fails.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import pytest

from tests.conftest import Site, seed_text
from tests.service import RunningService
from tests.test_pages import with_thumbnails

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("AGGREGATOR_REQUIRE_BROWSER"):
    pytest.fail("AGGREGATOR_REQUIRE_BROWSER is set but chromium is not installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs chromium (apt-get install chromium)"
)

LONG = "Kraftfahrzeughaftpflichtversicherungsbedingungen" * 2  # 96 characters, one word
PHONE = (390, 844)
TABLET = (700, 1000)
DESKTOP = (1280, 900)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    svc = RunningService(tmp_path / "svc", feeds={"formats": ["atom", "json", "rss"]})
    for n in range(6):
        (svc.seeds / f"s{n}.md").write_text(
            seed_text(
                title=f"Story {n}: a rather long headline that has to wrap on a phone <b>x</b>",
                topics=["AI", "Weltraum & Raumfahrt"] if n % 2 else ["AI", LONG],
                originalUrl=f"https://news.example/2024/story-{n}",
                publishedDateTime=f"2024-0{n + 1}-02T08:00:00Z",
                images=[{"url": f"https://images.example/{n}.jpg", "width": 800, "height": 400}],
            )
        )
    svc.start()
    with svc:
        yield svc


def test_a_person_finds_the_subscribe_links_on_phone_and_desktop(
    service: RunningService, tmp_path: Path
) -> None:
    from playwright.sync_api import Route, sync_playwright

    origin = urlsplit(service.base).netloc
    icons: set[str] = set()
    elsewhere: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for name, (width, height) in (("phone", PHONE), ("desktop", DESKTOP)):
                context = browser.new_context(
                    viewport={"width": width, "height": height}, java_script_enabled=False
                )

                def route(r: Route) -> None:
                    if urlsplit(r.request.url).netloc != origin:
                        elsewhere.append(r.request.url)
                        r.abort()
                    else:
                        r.continue_()

                context.route("**/*", route)
                page = context.new_page()
                page.on("console", lambda m: _note(problems, m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: _note(problems, str(e)))
                page.on("requestfailed", lambda r: _note(problems, f"failed: {r.url}"))

                response = page.goto(service.base + "/")
                assert response is not None and response.status == 200
                feeds = page.locator('head link[rel="alternate"]')
                types = {feeds.nth(i).get_attribute("type") for i in range(feeds.count())}
                assert types == {
                    "application/atom+xml",
                    "application/feed+json",
                    "application/rss+xml",
                }
                page.screenshot(path=tmp_path / f"index-{name}.png", full_page=True)
                _fits(page, width)
                _readable(page, "td.t a")
                (icon,) = [i.get_attribute("href") for i in page.locator('link[rel="icon"]').all()]
                assert icon is not None
                icons.add(urljoin(page.url, icon))

                page.get_by_role("link", name="Weltraum & Raumfahrt").click()
                page.wait_for_load_state()
                assert page.url.endswith("/topics/weltraum-and-raumfahrt.html")
                subscribe = page.locator("a.subscribe").first
                assert subscribe.is_visible()
                href = subscribe.get_attribute("href")
                assert href is not None
                feed = service.get("/" + href.removeprefix("../"))
                assert feed.status_code == 200
                assert feed.headers["content-type"].startswith("application/atom+xml")
                alternates = page.locator('head link[rel="alternate"]')
                assert alternates.count() == 3
                headlines = page.locator("main h2 a")
                assert headlines.count() == 3
                assert "<b>x</b>" in headlines.first.inner_text()  # text, not markup
                page.screenshot(path=tmp_path / f"topic-{name}.png", full_page=True)
                _fits(page, width)
                _readable(page, "h1")
                (icon,) = [i.get_attribute("href") for i in page.locator('link[rel="icon"]').all()]
                assert icon is not None
                icons.add(urljoin(page.url, icon))
                page.go_back()
                page.get_by_role("link", name=LONG).click()
                page.wait_for_load_state()
                _fits(page, width)  # long words wrap rather than widen the page
                _readable(page, "h1")
                context.close()
        finally:
            browser.close()
    assert problems == []
    assert elsewhere == []  # nothing on the pages reaches for another host
    for shot in ("index-phone", "index-desktop", "topic-phone", "topic-desktop"):
        assert (tmp_path / f"{shot}.png").stat().st_size > 5000
    # One icon for every page, from the site itself, allowed by the pages' own policy.
    (icon,) = icons
    assert urlsplit(icon).netloc == origin
    served = service.get(urlsplit(icon).path)
    assert served.status_code == 200 and served.headers["content-type"] == "image/svg+xml"
    page_policy = service.get("/").headers["content-security-policy"]
    assert "img-src 'self'" in page_policy


def test_a_feed_opened_in_the_browser_is_a_page_about_it(service: RunningService) -> None:
    """Chromium applies the XSLT stylesheet a feed names, under the feed's own CSP."""
    from playwright.sync_api import sync_playwright

    origin = urlsplit(service.base).netloc
    problems: list[str] = []
    fetched: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(
                viewport={"width": PHONE[0], "height": PHONE[1]}, java_script_enabled=False
            )
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: _note(problems, m.text) if m.type == "error" else None)
            page.on(  # (a load given up as the page moves on is no problem)
                "requestfailed",
                lambda r: None if r.failure == "net::ERR_ABORTED" else _note(problems, r.url),
            )
            page.on("request", lambda r: fetched.append(r.url))
            for suffix, kind in ((".atom", "Atom"), (".rss", "RSS")):
                response = page.goto(f"{service.base}/feeds/ai{suffix}")
                assert response is not None and response.status == 200
                if page.evaluate("typeof XSLTProcessor") == "undefined":
                    pytest.skip("this Chromium has no XSLT (test_feedpage runs the stylesheet)")
                assert page.locator("h1").inner_text() == "aggregator: AI"
                about = page.locator(".about").inner_text()
                assert f"This is a news feed ({kind})" in about
                assert f"{service.base}/feeds/ai{suffix}" in about
                headlines = page.locator("main h2 a")
                assert headlines.count() == 6
                assert "<b>x</b>" in headlines.first.inner_text()  # text, not markup
                _fits(page, PHONE[0])
                _readable(page, "h1")
                page.locator("a.subscribe").click()  # on to the topic's page
                page.wait_for_load_state()
                assert page.url == f"{service.base}/topics/ai.html"
        finally:
            browser.close()
    assert problems == []  # nothing blocked by the CSP, nothing missing
    assert [url for url in fetched if urlsplit(url).netloc != origin] == []
    assert f"{service.base}/feed.xsl" in fetched


BUNDLED_SEEDS = Path(__file__).parent.parent / "seeds"
LONG_WORDS = [
    "Entertainment",
    "Environment",
    "Programming",
    "Telecommunications",
    "Nachhaltigkeitsberichterstattung",  # about 270 px: fits a phone's line on its own
    "Кибербезопасность и криптография",
    "Περιβαλλοντική πολιτική",
    "Informationssicherheitsmanagement",
]
"""Long topic words beside the bundled seeds' own topics: each fits a 390 px line alone."""


def test_topic_names_keep_their_words_on_a_phone(site: Site) -> None:
    """The index and topic pages of the bundled seeds, and of long topic words, on a phone
    (and a small tablet):
    with the default config and with every format, no word that fits the screen's line
    on its own breaks (a 110 px topic column once showed "Cybersecurit / y")."""
    from playwright.sync_api import sync_playwright

    shutil.copytree(BUNDLED_SEEDS, site.seeds, dirs_exist_ok=True)
    for n, topic in enumerate(LONG_WORDS):
        site.add(f"long-{n}.md", topics=[topic], originalUrl=f"https://n.example/{n}")
    files = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietFiles, directory=str(site.out)))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{files.server_address[1]}/"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for formats, (width, height) in (
                (("atom",), PHONE),
                (("atom", "json", "rss"), PHONE),
                (("atom", "json", "rss"), TABLET),
            ):
                site.build(overrides={"feeds.formats": formats})
                context = browser.new_context(
                    viewport={"width": width, "height": height}, java_script_enabled=False
                )
                page = context.new_page()
                page.goto(base + "index.html")
                names = page.locator("td.t a").all_inner_texts()
                assert {"Cybersecurity", "Künstliche Intelligenz", *LONG_WORDS} <= set(names)
                _readable(page, "td.t a")
                _fits(page, width)
                pages = page.locator("td.t a").evaluate_all("links => links.map(a => a.href)")
                for url in pages:
                    page.goto(url)
                    _readable(page, "h1")
                    _fits(page, width)
                context.close()
        finally:
            browser.close()
            files.shutdown()
            files.server_close()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass


def test_thumbnails_keep_their_place_while_they_load(site: Site) -> None:
    """Every box on a topic page is where it will be once the thumbnails have loaded."""
    from playwright.sync_api import sync_playwright

    with_thumbnails(site)
    files = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietFiles, directory=str(site.out)))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{files.server_address[1]}/topics/ai.html"
    boxes = """() => [...document.querySelectorAll("main img, main h2, main p")].map(e => {
        const r = e.getBoundingClientRect();
        return [e.tagName, Math.round(r.x), Math.round(r.y), Math.round(r.width),
                Math.round(r.height)];
    })"""
    layouts = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for width, _ in (PHONE, DESKTOP):
                for images in (False, True):
                    context = browser.new_context(
                        viewport={"width": width, "height": 900}, java_script_enabled=False
                    )

                    if not images:  # as if the pictures had not arrived yet
                        context.route("**/thumbs/*", lambda r: r.abort())
                    page = context.new_page()
                    page.goto(url)
                    page.wait_for_load_state("load")
                    loaded = page.evaluate(
                        "() => [...document.images].map(i => i.complete && i.naturalWidth > 0)"
                    )
                    assert loaded == [images, images]
                    layouts.append(page.evaluate(boxes))
                    context.close()
        finally:
            browser.close()
            files.shutdown()
            files.server_close()
    phone_waiting, phone_loaded, desktop_waiting, desktop_loaded = layouts
    assert [b[0] for b in phone_loaded].count("IMG") == 2
    assert phone_waiting == phone_loaded
    assert desktop_waiting == desktop_loaded


def _note(problems: list[str], text: str) -> None:
    problems.append(text)


_BROKEN_WORDS = """([selector, phone]) => {
    const broken = [];
    const main = document.querySelector("main") || document.body;
    for (const element of document.querySelectorAll(selector)) {
        // On a phone or small tablet, a word that fits a line of the page must never break,
        // whatever column it is in; on a wider screen, one that fits its own box.
        let box = element;
        while (getComputedStyle(box).display === "inline") box = box.parentElement;
        const line = phone ? main.clientWidth : box.clientWidth;
        for (const node of element.childNodes) {
            if (node.nodeType !== Node.TEXT_NODE) continue;
            for (const word of node.data.matchAll(/\\S+/g)) {
                const range = document.createRange();
                range.setStart(node, word.index);
                range.setEnd(node, word.index + word[0].length);
                const boxes = [...range.getClientRects()].filter(r => r.width > 0);
                const lines = new Set(boxes.map(r => Math.round(r.top))).size;
                const width = boxes.reduce((sum, r) => sum + r.width, 0);
                if (lines > 1 && width <= line) broken.push(`${word[0]} (${width}px of ${line}px)`);
            }
        }
    }
    return broken;
}"""

_SMALL_TARGETS = """() => {
    const small = [];
    for (const link of document.querySelectorAll("a")) {
        for (const box of link.getClientRects()) {
            if (box.height < 24) small.push(`${link.textContent.trim()}: ${box.height}px high`);
        }
    }
    return small;
}"""


def _readable(page: Page, names: str) -> None:
    """Words in `names` break only when they cannot fit a line (on a phone: a line of the
    page, not merely their table column), and every link is a tap target at least 24 px
    high."""
    assert page.locator(names).count() > 0
    viewport = page.viewport_size
    phone = viewport is not None and viewport["width"] <= TABLET[0]
    broken = page.evaluate(_BROKEN_WORDS, [names, phone])
    assert broken == [], f"words broken across lines at {page.url}: {broken}"
    small = page.evaluate(_SMALL_TARGETS)
    assert small == [], f"tap targets under 24 px at {page.url}: {small}"


def _fits(page: Page, width: int) -> None:
    """No sideways scrolling: the page is as wide as the screen."""
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll}px wide on a {width}px screen"
