"""The format registry: every file we write is served with its registered type, every
registered feed format renders, and what only needs the registry stays light."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import feedparser
import httpx
import pytest

from aggregator.config import load_config
from aggregator.errors import ConfigError
from aggregator.formats import (
    DEFAULT_CONTENT_TYPE,
    FEED_FORMAT_NAMES,
    FEED_FORMATS,
    FILE_KINDS,
    FeedOptions,
    archive_page,
    archive_path,
    feed_path,
    file_kind,
    renderer,
)
from aggregator.metrics import Metrics
from aggregator.server import HttpServer, Routes, StaticFiles
from aggregator.thumbs import SUFFIX as THUMBNAIL_SUFFIX
from tests.conftest import Site
from tests.feedcheck import check_feed, check_rss, entry_ids
from tests.pagecheck import check_page
from tests.service import free_port
from tests.test_formats import VALIDATOR
from tests.test_render import SITE, article, plans_for

EVERY_FORMAT = {"feeds.formats": FEED_FORMAT_NAMES}
HUB = "https://hub.example/"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def _atom_ids(data: bytes) -> list[str]:
    return entry_ids(check_feed(data))


def _rss_ids(data: bytes) -> list[str]:
    check_rss(data)
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return [e.id for e in parsed.entries]


def _json_ids(data: bytes) -> list[str]:
    feed = json.loads(data)
    VALIDATOR.validate(feed)
    return [item["id"] for item in feed["items"]]


READERS = {"atom": _atom_ids, "json": _json_ids, "rss": _rss_ids}
"""Format → the entry ids of a document, checked against its spec. A new format needs its
reader here: the tests below fail (KeyError) until it has one."""


def read_ids(name: str, data: bytes) -> list[str]:
    return READERS[name](data)


def fill(site: Site) -> None:
    for n in range(5):
        site.add(
            f"s{n}.md",
            title=f"Story {n}",
            topics=["AI", "Space"] if n % 2 else ["AI"],
            originalUrl=f"https://f.example/{n}",
            publishedDateTime=f"2024-0{n + 1}-01T00:00:00Z",
            images=[{"url": f"https://i.example/{n}.jpg", "width": 100, "height": 50}],
        )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Site, str]]:
    """A site built in every registered format, with archive pages and gzip sidecars,
    served by the built-in server on a free port."""
    site = Site(tmp_path)
    fill(site)
    site.build(
        overrides={
            **EVERY_FORMAT,
            "feeds.archive": True,
            "feeds.max_entries": 2,
            "output.gzip_sidecars": True,
            "websub.hub": HUB,
        }
    )
    files = StaticFiles(site.out, lambda: 60, hub=lambda: (HUB, "http://127.0.0.1/"))
    app = Routes(files, lambda: (200, {"status": "ok"}), Metrics())
    port = free_port()
    server = HttpServer(app, "127.0.0.1", port)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield site, f"http://127.0.0.1:{port}/"
    server.stop()
    thread.join(5)


def test_every_file_a_build_writes_is_served_with_its_registered_type(
    served: tuple[Site, str],
) -> None:
    site, base = served
    files = sorted(
        p.relative_to(site.out).as_posix()
        for p in site.out.rglob("*")
        if p.is_file() and p.suffix != ".gz"
    )
    assert archive_path("all", 1) in files  # the archive pages are among them
    suffixes = {Path(f).suffix for f in files} | {THUMBNAIL_SUFFIX}
    unregistered = sorted(s for s in suffixes if s not in FILE_KINDS)
    assert not unregistered, f"suffixes with no media type in formats.FILE_KINDS: {unregistered}"
    with httpx.Client(base_url=base, timeout=10) as client:
        for relative in files:
            kind = file_kind(relative)
            assert kind is not None
            answer = client.get(relative, headers={"accept-encoding": "gzip"})
            assert answer.status_code == 200, relative
            assert answer.headers["content-type"] == kind.content_type != DEFAULT_CONTENT_TYPE
            assert answer.content == (site.out / relative).read_bytes()  # httpx un-gzips
            if kind.compressible and len(answer.content) > 200:
                assert answer.headers.get("content-encoding") == "gzip", relative
            # the sidecars nginx serves are written for exactly the compressible kinds
            assert (site.out / f"{relative}.gz").is_file() == kind.compressible, relative
            page = client.get(relative, headers={"accept": BROWSER})
            expected = kind.browser_content_type or kind.content_type
            assert page.headers["content-type"] == expected, relative
            assert page.content == answer.content
            # the current feeds (not the archive pages, not the pages) name the WebSub hub
            current = relative.startswith("feeds/") and archive_page(relative) is None
            assert ("link" in answer.headers) == current, relative


def test_every_registered_format_renders_and_is_served_with_its_type(
    served: tuple[Site, str],
) -> None:
    site, base = served
    index = check_page((site.out / "index.html").read_bytes())
    atom_ids = entry_ids(check_feed(site.feed("ai")))
    with httpx.Client(base_url=base, timeout=10) as client:
        for name, form in FEED_FORMATS.items():
            relative = feed_path("ai", name)
            answer = client.get(relative)
            assert answer.status_code == 200, relative
            assert answer.headers["content-type"] == f"{form.media_type}; charset=utf-8"
            assert read_ids(name, answer.content) == atom_ids, name
            # a reader naming the type beside text/html gets the feed as its own type
            reader = client.get(relative, headers={"accept": f"text/html, {form.media_type}"})
            assert reader.headers["content-type"] == answer.headers["content-type"], name
            assert (form.media_type, relative) in index.alternates()
            page = check_page((site.out / "topics" / "ai.html").read_bytes())
            assert (form.media_type, f"../{relative}") in page.alternates()


@pytest.mark.parametrize("name", FEED_FORMAT_NAMES)
def test_each_renderer_the_registry_names_renders_a_valid_feed(name: str) -> None:
    plan = plans_for(article(excerpt="An excerpt", topics=("AI",)))[0]
    data = renderer(name)(plan, SITE, FeedOptions(max_related=5, hub="https://hub.example/"))
    assert read_ids(name, data) == [plan.entries[0].id]


def test_archive_paths_and_their_parsing_agree() -> None:
    for slug, number in (("all", 1), ("ren-gong-zhi-neng", 12), ("ai", 999_999_999)):
        assert archive_page(archive_path(slug, number)) == (slug, number)
    for other in (
        feed_path("ai"),
        "feeds/ai/archive/0.atom",
        "feeds/ai/archive/01.atom",
        "feeds/ai/archive/1.rss",
        "feeds/a/b/archive/1.atom",
        "topics/ai/archive/1.atom",
        "feeds/ai/archive/1000000000.atom",
    ):
        assert archive_page(other) is None, other


def test_the_config_takes_every_registered_format_and_refuses_others() -> None:
    config = load_config(overrides=EVERY_FORMAT, environ={})
    assert config.feeds.formats == FEED_FORMAT_NAMES
    refused = r"feeds\.formats: Invalid enum value 'gopher' .*; expected one of 'atom', 'json'"
    with pytest.raises(ConfigError, match=refused):
        load_config(overrides={"feeds.formats": ("atom", "gopher")}, environ={})


def _imported(module: str) -> set[str]:
    """The modules importing `module` loads, in a fresh interpreter."""
    code = (
        "import sys; before = set(sys.modules); import " + module + "\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(result.stdout.split())


def test_the_server_learns_formats_and_paths_without_a_renderer() -> None:
    loaded = _imported("aggregator.server")
    assert "aggregator.formats" in loaded
    heavy = {m for m in loaded if m.split(".")[0] in ("feedgen", "lxml") or "render" in m}
    assert not heavy, heavy


def test_the_registry_needs_nothing_but_the_standard_library() -> None:
    loaded = _imported("aggregator.formats")
    outside = {m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names}
    assert outside == {"aggregator", "aggregator.formats"}, outside


def test_the_daemon_does_not_import_a_renderer_for_a_path_rule() -> None:
    source = (Path(__file__).parent.parent / "aggregator" / "daemon.py").read_text()
    assert "aggregator.render" not in source and "aggregator.jsonfeed" not in source
