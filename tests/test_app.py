"""The app's use cases, in this process, on real temp dirs and state files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.app import make_app
from aggregator.errors import SeedDirError
from aggregator.feeds import topic_feed
from aggregator.formats import archive_path, feed_path, page_path
from aggregator.pages import ALL_OPML_PATH, INDEX_PATH, OPML_PATH, SITE_FILES
from aggregator.publish import written_paths
from aggregator.status import (
    BuildStatus,
    Counts,
    LinkStatus,
    RejectedFile,
    ScanFailure,
    ScanStatus,
    Status,
)
from tests.conftest import NOW, Site, running
from tests.test_thumbs import Images, image_server

SITE_PATHS = [INDEX_PATH, OPML_PATH, ALL_OPML_PATH, *SITE_FILES]


def two_topics(site: Site) -> None:
    site.add("ai.md", topics=["AI"], originalUrl="https://n.example/ai")
    site.add("space.md", topics=["Space"], originalUrl="https://n.example/space")


def test_a_rescan_with_nothing_changed_renders_nothing(site: Site) -> None:
    two_topics(site)
    with make_app(site.config()) as app:
        built = app.build(NOW)
        assert "feeds/ai.atom" in built.render.written and built.topics == 2
        again = app.rescan(NOW)
        assert again.render is None and again.scan.parsed == 0
        assert not again.reconfigured and not again.output_missing


def test_a_changed_seed_renders_its_topic_and_not_the_others(site: Site) -> None:
    two_topics(site)
    with make_app(site.config()) as app:
        app.build(NOW)
        site.add("ai.md", topics=["AI"], originalUrl="https://n.example/ai", title="Changed")
        done = app.rescan(NOW + timedelta(minutes=1))
        assert done.render is not None and done.scan.feeds == {topic_feed("ai")}
        assert "feeds/ai.atom" in done.render.written
        assert "feeds/space.atom" not in done.render.written
        assert "topics/space.html" not in done.render.written


def test_files_gone_from_the_output_make_the_next_rescan_render_everything(site: Site) -> None:
    two_topics(site)
    with make_app(site.config()) as app:
        app.build(NOW)
        (site.out / "feeds" / "space.atom").unlink()
        done = app.rescan(NOW)
        assert done.output_missing and done.render is not None
        assert "feeds/space.atom" in done.render.written
        assert app.output_intact()


def test_after_a_failed_rescan_the_next_one_renders_everything(site: Site) -> None:
    two_topics(site)
    with make_app(site.config()) as app:
        app.build(NOW)
        moved = site.root / "moved"
        site.seeds.rename(moved)
        site.seeds.mkdir()
        with pytest.raises(SeedDirError):
            app.rescan(NOW)
        site.seeds.rmdir()
        moved.rename(site.seeds)
        done = app.rescan(NOW)
        assert done.scan.parsed == 0 and done.render is not None  # nothing changed, all redone
        assert done.render.unchanged >= 2 * 2 + len(SITE_PATHS)


def test_a_new_config_takes_effect_at_the_next_rescan_and_renders_everything(
    site: Site,
) -> None:
    two_topics(site)
    with make_app(site.config()) as app:
        app.build(NOW)
        app.reconfigure(site.config(**{"site.title": "Renamed"}))
        assert app.config.site.title != "Renamed"  # not before the rescan
        done = app.rescan(NOW)
        assert done.reconfigured and app.config.site.title == "Renamed"
        assert done.render is not None and INDEX_PATH in done.render.written
        assert b"Renamed" in (site.out / INDEX_PATH).read_bytes()


def test_a_due_article_renders_every_feed(site: Site) -> None:
    two_topics(site)
    site.add(
        "later.md",
        topics=["AI"],
        originalUrl="https://n.example/later",
        publishedDateTime=(NOW + timedelta(days=2)).isoformat(),  # held back a day ahead
    )
    with make_app(site.config()) as app:
        app.build(NOW)
        due = app.next_due(NOW)
        assert due is not None and due > NOW
        assert b"n.example/later" not in (site.out / "feeds" / "ai.atom").read_bytes()
        done = app.render_due(due)
        assert done.render is not None
        assert b"n.example/later" in (site.out / "feeds" / "ai.atom").read_bytes()


def test_the_tally_counts_seeds_articles_topics_and_rejected_files(site: Site) -> None:
    two_topics(site)
    site.add("broken.md", "not a seed at all")
    with make_app(site.config()) as app:
        report = app.build(NOW)
        tally = app.tally()
    assert (tally.seeds, tally.articles, tally.topics) == (3, 2, 2)
    assert (
        [source for source, _ in tally.rejected]
        == ["broken.md"]
        == [source for source, _ in report.rejected]
    )
    assert tally.counts() == Counts(seeds=3, articles=2, topics=2, rejected=1)


@pytest.fixture
def images() -> Iterator[ThreadingHTTPServer]:
    with image_server() as server:
        yield server


def test_a_fresh_app_plans_thumbnails_from_the_state_and_renders_the_pages(
    site: Site, images: ThreadingHTTPServer
) -> None:
    port = images.server_address[1]
    site.add("a.md", topics=["Pictures"], images=[{"url": f"http://127.0.0.1:{port}/photo.png"}])
    allow = {"links.allow_networks": ("127.0.0.0/8",), "links.allowed_ports": (port,)}
    site.build()
    page = site.out / "topics" / "pictures.html"
    assert b"thumbs/" not in page.read_bytes()
    with make_app(site.config(**allow)) as app:  # no rescan, no render first
        planned = app.thumbnails.plan(NOW, 10)
        assert [r.url for r in planned] == [f"http://127.0.0.1:{port}/photo.png"]
        report = app.fetch_thumbnails(NOW)
    assert report.made == 1 and report.tried == 1
    assert "topics/pictures.html" in report.written
    assert b"thumbs/" in page.read_bytes()
    with make_app(site.config(**allow)) as app:
        assert app.thumbnails.plan(NOW + timedelta(days=1), 10) == []  # it has one now


class RescanningImages(Images):
    """Serves the test images; the first request runs the server's `during` first (as a
    rescan of the service does while the images are fetched, outside the app's lock)."""

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        during = self.server.during  # type: ignore[attr-defined]
        self.server.during = None  # type: ignore[attr-defined]
        if during is not None:
            during()
        super().do_GET()


def test_a_thumbnail_reaches_the_page_its_entry_moved_to_while_it_was_fetched(
    site: Site,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RescanningImages)
    server.hits = []  # type: ignore[attr-defined]
    server.during = None  # type: ignore[attr-defined]
    with running(server):
        port = server.server_address[1]
        photo = [{"url": f"http://127.0.0.1:{port}/photo.png"}]
        site.add("a.md", topics=["Pictures"], images=photo, originalUrl="https://n.example/a")
        site.add("b.md", topics=["Other"], originalUrl="https://n.example/b")
        allow = {"links.allow_networks": ("127.0.0.0/8",), "links.allowed_ports": (port,)}
        with make_app(site.config(**allow)) as app:
            app.build(NOW)

            def move() -> None:
                site.add("a.md", topics=["Other"], images=photo, originalUrl="https://n.example/a")
                app.rescan(NOW)

            server.during = move  # type: ignore[attr-defined]
            report = app.fetch_thumbnails(NOW)
            assert report.made == 1
            assert "topics/other.html" in report.written
            assert b"thumbs/" in (site.out / "topics" / "other.html").read_bytes()
            assert app.render_due(NOW).render is not None
            assert app.render_due(NOW).render.written == []  # type: ignore[union-attr]


def test_a_fresh_app_with_nothing_due_checks_no_link(site: Site) -> None:
    site.add("a.md", originalUrl="https://n.example/a")
    site.build()
    with make_app(site.config(**{"links.enabled": True})) as app:
        run = app.check_links(NOW, should_stop=lambda: True)  # stopped before it began
    assert run.requested == 0 and run.result.attempts == [] and run.written == []


# -- status ---------------------------------------------------------------------------


def test_health_before_the_first_scan_is_starting_without_counts() -> None:
    code, body = Status(started="2026-11-01T00:00:00+00:00").report()
    assert code == 503
    assert body["status"] == "starting"
    assert list(body) == [
        "status",
        "version",
        "started",
        "last_scan",
        "last_build",
        "last_links",
        "last_error",
        "scans",
        "rejected_files",
    ]


@pytest.mark.parametrize(
    ("scan", "code", "state", "scan_json"),
    [
        (
            ScanStatus("t", True, 0.5, 3, 1, 0, ["x: unreadable"]),
            200,
            "ok",
            {
                "at": "t",
                "ok": True,
                "seconds": 0.5,
                "files": 3,
                "parsed": 1,
                "removed": 0,
                "problems": ["x: unreadable"],
            },
        ),
        (
            ScanFailure("t", False, 0.25, "seeds: gone"),
            503,
            "error",
            {"at": "t", "ok": False, "seconds": 0.25, "error": "seeds: gone"},
        ),
    ],
)
def test_health_reports_the_typed_records_as_json(
    scan: ScanStatus | ScanFailure, code: int, state: str, scan_json: dict[str, Any]
) -> None:
    status = Status(
        started="s",
        last_scan=scan,
        last_build=BuildStatus("b", 4, 5, 1),
        last_links=LinkStatus("l", 2, 1, {"alive": 2}, False, 0),
        last_error=None,
        counts=Counts(3, 2, 1, 1),
        rejected_files=[RejectedFile("bad.md", "no title")],
        scans=7,
    )
    got_code, body = status.report()
    assert got_code == code and body["status"] == state
    assert body["last_scan"] == scan_json
    assert list(body)[7:] == ["scans", "seeds", "articles", "topics", "rejected", "rejected_files"]
    assert body["last_build"] == {"at": "b", "written": 4, "unchanged": 5, "removed": 1}
    assert body["last_links"] == {
        "at": "l",
        "checked": 2,
        "deferred": 1,
        "verdicts": {"alive": 2},
        "network_down": False,
        "changed": 0,
    }
    assert (body["seeds"], body["articles"], body["topics"], body["rejected"]) == (3, 2, 1, 1)
    assert body["rejected_files"] == [{"file": "bad.md", "reason": "no title"}]


# -- the files a render writes --------------------------------------------------------


@pytest.mark.parametrize(
    ("slugs", "pages", "thumbs", "formats", "expected"),
    [
        ([], {}, [], ["atom"], SITE_PATHS),
        (
            ["all", "ai"],
            {},
            [],
            ["atom"],
            [feed_path("all"), feed_path("ai"), page_path("all"), page_path("ai"), *SITE_PATHS],
        ),
        (
            ["ai"],
            {"ai": 2, "gone": 3},
            ["thumbs/b.webp", "thumbs/a.webp"],
            ["atom", "json"],
            [
                feed_path("ai", "atom"),
                feed_path("ai", "json"),
                page_path("ai"),
                archive_path("ai", 1),
                archive_path("ai", 2),
                "thumbs/a.webp",
                "thumbs/b.webp",
                *SITE_PATHS,
            ],
        ),
    ],
)
def test_written_paths(
    slugs: list[str],
    pages: dict[str, int],
    thumbs: list[str],
    formats: list[str],
    expected: list[str],
) -> None:
    assert written_paths(slugs, pages, thumbs, formats) == expected


slug = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)


@given(
    slugs=st.sets(slug, max_size=6),
    pages=st.dictionaries(slug, st.integers(0, 4), max_size=6),
    thumbs=st.sets(st.from_regex(r"thumbs/[a-f0-9]{8}\.webp", fullmatch=True), max_size=4),
    formats=st.sets(st.sampled_from(["atom", "rss", "json"]), min_size=1),
)
def test_written_paths_names_each_file_once_and_only_of_live_feeds(
    slugs: set[str], pages: dict[str, int], thumbs: set[str], formats: set[str]
) -> None:
    paths = written_paths(slugs, pages, thumbs, formats)
    assert len(paths) == len(set(paths))
    archived = sum(n for s, n in pages.items() if s in slugs)
    assert len(paths) == len(slugs) * (len(formats) + 1) + archived + len(thumbs) + len(SITE_PATHS)
    assert paths[-len(SITE_PATHS) :] == SITE_PATHS
    assert all(archive_path(s, 1) not in paths for s in pages if s not in slugs)
