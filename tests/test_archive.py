"""Feed history (RFC 5005): walking `prev-archive` from a feed reaches every entry once,
and a full archive page changes only when an article in it does."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from aggregator.archive import Row, lay_out, reopen
from tests.conftest import NOW, Site
from tests.feedcheck import ATOM, check_feed

BASE = "http://127.0.0.1:8080/"
HISTORY = "{http://purl.org/syndication/history/1.0}"
ARCHIVED = {"feeds.archive": True, "feeds.max_entries": 3}


def add(site: Site, n: int, day: int, **fields: Any) -> None:
    doc: dict[str, Any] = {
        "title": f"Story {n}",
        "topics": ["AI"],
        "originalUrl": f"https://a.example/{n}",
        "webUrl": None,
        "publishedDateTime": f"2024-01-{day:02d}T12:00:00Z",
    }
    site.add(f"s{n}.md", **{**doc, **fields})


def link(root: etree._Element, rel: str) -> str | None:
    for element in root.findall(f"{ATOM}link"):
        if element.get("rel") == rel:
            return element.get("href")
    return None


def walk(site: Site, slug: str = "ai") -> tuple[list[str], list[str]]:
    """Entry ids from the current feed back through every archive page, and the pages seen."""
    current = check_feed(site.feed(slug))
    assert link(current, "self") == f"{BASE}feeds/{slug}.atom"
    assert current.find(f"{HISTORY}archive") is None
    ids = [e.findtext(f"{ATOM}id") or "" for e in current.iter(f"{ATOM}entry")]
    pages: list[str] = []
    url = link(current, "prev-archive")
    newer: str | None = None
    while url is not None:
        assert url.startswith(BASE) and url not in pages
        pages.append(url)
        page = check_feed((site.out / url.removeprefix(BASE)).read_bytes())
        assert page.find(f"{HISTORY}archive") is not None
        assert link(page, "self") == url  # each document names the URL it is served at
        assert link(page, "current") == f"{BASE}feeds/{slug}.atom"
        assert link(page, "next-archive") == newer
        ids += [e.findtext(f"{ATOM}id") or "" for e in page.iter(f"{ATOM}entry")]
        newer, url = url, link(page, "prev-archive")
    return ids, pages


def mtimes(site: Site) -> dict[str, int]:
    folder = site.out / "feeds" / "ai" / "archive"
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*.atom"))}


def every_id(site: Site) -> list[str]:
    """Ids of every article, from the `all` feed of a build without a cap."""
    root = check_feed(site.feed("all"))
    return [e.findtext(f"{ATOM}id") or "" for e in root.iter(f"{ATOM}entry")]


def test_walking_back_from_the_feed_reaches_every_entry_exactly_once(site: Site) -> None:
    for n in range(10):
        add(site, n, n + 1)
    site.build(overrides=ARCHIVED)
    ids, pages = walk(site)
    assert len(ids) == len(set(ids)) == 10
    assert pages == [f"{BASE}feeds/ai/archive/{n}.atom" for n in (3, 2, 1)]
    assert len(check_feed(site.feed("ai")).findall(f"{ATOM}entry")) == 3
    site.build(overrides={"feeds.archive": False, "feeds.max_entries": 100})
    assert sorted(every_id(site)) == sorted(ids)
    assert not (site.out / "feeds" / "ai").exists()  # archive off: its pages go


def test_a_full_page_changes_only_when_an_article_in_it_does(site: Site) -> None:
    for n in range(10):
        add(site, n, n + 1)
    site.build(overrides=ARCHIVED)
    first = mtimes(site)
    assert set(first) == {"1.atom", "2.atom", "3.atom"}

    add(site, 10, 20)  # a new article: one more entry leaves the feed for the open page
    site.build(now=NOW + timedelta(hours=1), overrides=ARCHIVED)
    after_new = mtimes(site)
    assert [name for name in first if first[name] != after_new[name]] == ["3.atom"]

    add(site, 2, 3, excerpt="An edited excerpt.")  # story 2 is on page 1
    site.build(now=NOW + timedelta(hours=2), overrides=ARCHIVED)
    after_edit = mtimes(site)
    assert [n for n in after_edit if after_edit[n] != after_new[n]] == ["1.atom"]

    (site.seeds / "s4.md").unlink()  # story 4 is on page 2
    site.build(now=NOW + timedelta(hours=3), overrides=ARCHIVED)
    after_removal = mtimes(site)
    assert [n for n in after_removal if after_removal[n] != after_edit[n]] == ["2.atom"]

    add(site, 11, 2)  # a new article dated among those on page 1
    site.build(now=NOW + timedelta(hours=4), overrides=ARCHIVED)
    after_backdate = mtimes(site)
    assert [n for n in after_backdate if after_backdate[n] != after_removal[n]] == ["1.atom"]

    report = site.build(now=NOW + timedelta(hours=5), overrides=ARCHIVED)
    assert report.render.written == [] and mtimes(site) == after_backdate
    ids, _ = walk(site)
    assert len(ids) == len(set(ids)) == 11


def test_archive_pages_of_a_topic_that_is_gone_are_removed(site: Site) -> None:
    for n in range(5):
        add(site, n, n + 1)
    site.build(overrides=ARCHIVED)
    assert (site.out / "feeds" / "ai" / "archive" / "1.atom").is_file()
    for n in range(5):
        add(site, n, n + 1, topics=["Space"])
    site.build(overrides=ARCHIVED)
    assert not (site.out / "feeds" / "ai").exists()
    ids, pages = walk(site, "space")
    assert len(set(ids)) == 5 and pages


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_pages_partition_the_entries_through_any_history(data: st.DataObject) -> None:
    """Whatever arrives, leaves or is re-dated, the feed and the pages hold each entry once,
    and a closed page keeps its entries unless one of them changed."""
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    size = data.draw(st.integers(1, 4))
    in_feed = data.draw(st.integers(1, 4))
    live: dict[str, int] = {}
    bounds: tuple[tuple[int, str], ...] = ()
    previous: tuple[tuple[Row, ...], ...] = ()
    for step in range(data.draw(st.integers(1, 25))):
        touched: set[str] = set()
        for _ in range(rng.randint(0, 4)):
            action = rng.random()
            if action < 0.6 or not live:
                name = f"e{step}-{rng.random()}"
                live[name] = rng.randint(0, 40)
                touched.add(name)
            elif action < 0.8:
                gone = rng.choice(sorted(live))
                del live[gone]
                touched.add(gone)
            else:
                moved = rng.choice(sorted(live))
                live[moved] = rng.randint(0, 40)
                touched.add(moved)
        rows = sorted(
            (Row(published, name, 0) for name, published in live.items()),
            key=lambda r: (-r.published_us, r.entry_id),
        )
        kept = reopen(rows, bounds, in_feed)
        assert kept == list(bounds[: len(kept)])
        newer = [r for r in rows if not kept or _before(r, kept[-1])]
        layout = lay_out(rows, kept, min(in_feed, len(newer)), size)
        shown = [r.entry_id for r in newer[:in_feed]]
        assert len(shown) == min(in_feed, len(live))  # the feed never runs short
        archived = [r.entry_id for page in layout.pages for r in page]
        assert sorted(shown + archived) == sorted(live)
        assert list(layout.bounds[: len(kept)]) == kept
        for old, new in zip(previous[: len(kept)], layout.pages[: len(kept)], strict=True):
            names = {r.entry_id for r in old} | {r.entry_id for r in new}
            if not names & touched:
                assert old == new
        previous, bounds = layout.pages, layout.bounds


def _before(row: Row, bound: tuple[int, str]) -> bool:
    return row.published_us > bound[0] or (row.published_us == bound[0] and row.entry_id < bound[1])


def test_the_served_archive_is_cached_long_and_the_open_page_is_not(site: Site) -> None:
    from aggregator.server import ARCHIVE_MAX_AGE, StaticFiles

    for n in range(10):
        add(site, n, n + 1)
    site.build(overrides=ARCHIVED)
    files = StaticFiles(Path(site.out), lambda: 60)
    ages = {}
    for number in (1, 2, 3):
        served = files.get(f"feeds/ai/archive/{number}.atom")
        assert served is not None
        ages[number] = dict(served.plain.headers)[b"cache-control"]
    assert ages == {
        1: f"public, max-age={ARCHIVE_MAX_AGE}".encode(),
        2: f"public, max-age={ARCHIVE_MAX_AGE}".encode(),
        3: b"public, max-age=60",
    }


def test_the_feed_never_runs_short_when_new_articles_go_or_max_entries_grows(
    site: Site,
) -> None:
    for n in range(12):
        add(site, n, n + 1)
    site.build(overrides=ARCHIVED)
    for n in range(8, 12):  # the four newest go: the feed takes older ones back
        (site.seeds / f"s{n}.md").unlink()
    site.build(now=NOW + timedelta(hours=1), overrides=ARCHIVED)
    feed = check_feed(site.feed("ai"))
    assert [e.findtext(f"{ATOM}title") for e in feed.iter(f"{ATOM}entry")] == [
        "Story 7",
        "Story 6",
        "Story 5",
    ]
    ids, _ = walk(site)
    assert len(ids) == len(set(ids)) == 8
    more = {**ARCHIVED, "feeds.max_entries": 6}
    site.build(now=NOW + timedelta(hours=2), overrides=more)
    assert len(check_feed(site.feed("ai")).findall(f"{ATOM}entry")) == 6
    ids, _ = walk(site)
    assert len(ids) == len(set(ids)) == 8


def test_a_new_state_file_keeps_the_closed_pages_as_they_were(site: Site) -> None:
    for n in range(10):
        add(site, n, n * 2 + 1)
    site.build(overrides=ARCHIVED)
    add(site, 20, 2)  # backdated into page 1, which now holds four
    site.build(now=NOW + timedelta(hours=1), overrides=ARCHIVED)
    folder = site.out / "feeds" / "ai" / "archive"
    before = {p.name: p.read_bytes() for p in folder.glob("*.atom")}
    site.state.unlink()
    site.build(now=NOW + timedelta(hours=2), overrides=ARCHIVED)
    after = {p.name: p.read_bytes() for p in folder.glob("*.atom")}
    assert after.keys() == before.keys()
    closed = sorted(before, key=lambda name: int(name.split(".")[0]))[:-1]
    assert closed and all(after[name] == before[name] for name in closed)


def test_archive_pages_stay_as_small_as_the_feed(site: Site) -> None:
    from aggregator.feedrender import MAX_FEED_BYTES

    related = [
        {
            "title": f"Related {r} " + "x" * 200,
            "originalUrl": f"https://r{r}.example/" + "p" * 1500,  # an outlet each
        }
        for r in range(20)
    ]
    for n in range(60):
        add(site, n, n % 28 + 1, excerpt="words " * 300, related=related)
    overrides = {"feeds.archive": True, "feeds.max_entries": 40, "feeds.max_related": 20}
    site.build(overrides=overrides)
    shown = len(check_feed(site.feed("ai")).findall(f"{ATOM}entry"))
    assert shown < 40  # shed for size
    pages = sorted((site.out / "feeds" / "ai" / "archive").glob("*.atom"))
    assert len(pages) >= 2
    assert all(p.stat().st_size <= MAX_FEED_BYTES for p in pages)
    ids, _ = walk(site)
    assert len(ids) == len(set(ids)) == 60


def test_a_deleted_archive_page_is_noticed(site: Site) -> None:
    from aggregator.app import make_app

    for n in range(10):
        add(site, n, n + 1)
    config = site.config(**ARCHIVED)
    with make_app(config) as app:
        app.rescan(NOW)
        assert app.output_intact()
        (site.out / "feeds" / "ai" / "archive" / "2.atom").unlink()
        assert not app.output_intact()
        assert app.rescan(NOW).output_missing
        assert app.output_intact()
    ids, _ = walk(site)
    assert len(ids) == 10


def test_articles_that_age_out_of_the_feed_stay_in_its_history(site: Site) -> None:
    for n in range(10):
        add(site, n, n + 1)
    aged = {**ARCHIVED, "feeds.max_age_days": 1}
    site.build(now=datetime(2024, 1, 9, 13, tzinfo=UTC), overrides=aged)
    feed = check_feed(site.feed("ai"))
    assert [e.findtext(f"{ATOM}title") for e in feed.iter(f"{ATOM}entry")] == [
        "Story 9",
        "Story 8",
    ]
    ids, _ = walk(site)
    assert len(ids) == len(set(ids)) == 10


def test_a_new_state_file_keeps_page_numbers_past_an_empty_page(site: Site) -> None:
    for n in range(12):
        add(site, n, n + 1)
    site.build(overrides=ARCHIVED)
    for n in (3, 4, 5):  # all of page 2
        (site.seeds / f"s{n}.md").unlink()
    site.build(now=NOW + timedelta(hours=1), overrides=ARCHIVED)
    folder = site.out / "feeds" / "ai" / "archive"
    before = {p.name: p.read_bytes() for p in folder.glob("*.atom")}
    assert b"<entry>" not in before["2.atom"]
    assert b"1970-01-01" not in before["2.atom"]  # dated where it ends, not at the epoch
    site.state.unlink()
    site.build(now=NOW + timedelta(hours=2), overrides=ARCHIVED)
    after = {p.name: p.read_bytes() for p in folder.glob("*.atom")}
    assert after == before


def test_a_short_feed_of_fresh_articles_still_fills_whole_pages(site: Site) -> None:
    for n in range(10):
        add(site, n, n + 1)
    aged = {**ARCHIVED, "feeds.max_age_days": 1}  # one fresh article, nine aged out
    site.build(now=datetime(2024, 1, 10, 13, tzinfo=UTC), overrides=aged)
    assert len(check_feed(site.feed("ai")).findall(f"{ATOM}entry")) == 1
    _, pages = walk(site)
    assert len(pages) == 3  # 9 aged entries in 3 full pages (not 9 of one), no empty page


def test_archived_entries_filling_whole_pages_leave_no_empty_page(site: Site) -> None:
    for n in range(9):  # 3 in the feed, 6 archived: exactly two pages of 3
        add(site, n, n + 1)
    site.build(overrides=ARCHIVED)
    folder = site.out / "feeds" / "ai" / "archive"
    assert sorted(p.name for p in folder.glob("*.atom")) == ["1.atom", "2.atom"]
    ids, pages = walk(site)
    assert len(ids) == len(set(ids)) == 9
    assert pages == [f"{BASE}feeds/ai/archive/{n}.atom" for n in (2, 1)]
    for path in site.out.rglob("*"):
        if path.is_file():
            assert b"1970-01-01" not in path.read_bytes(), path
    add(site, 9, 10)  # one more leaves the feed: it opens page 3
    site.build(now=NOW + timedelta(hours=1), overrides=ARCHIVED)
    ids, pages = walk(site)
    assert len(ids) == len(set(ids)) == 10
    assert len(pages) == 3
    assert len(check_feed((folder / "3.atom").read_bytes()).findall(f"{ATOM}entry")) == 1


def test_an_edit_of_an_article_dated_ahead_reaches_its_archive_page(site: Site) -> None:
    """Articles dated a few hours ahead are shown early; an edit of one before its date
    must reach the archive page it is on, as it reaches a cold build."""

    def ahead(hours: int) -> str:
        return (NOW + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")

    one_a_page = ARCHIVED | {"feeds.max_entries": 1}
    for n in range(1, 5):
        add(site, n, 1, publishedDateTime=ahead(n))
    site.build(NOW, overrides=one_a_page)
    add(site, 1, 1, title="Story 1, corrected", publishedDateTime=ahead(1))
    site.build(NOW + timedelta(minutes=1), overrides=one_a_page)
    first = (site.out / "feeds" / "ai" / "archive" / "1.atom").read_bytes()
    assert b"Story 1, corrected" in first
