"""Builds on a kept state: work follows change, and `updated` moves only on a real change."""

from __future__ import annotations

import shutil
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from aggregator.errors import StateError
from aggregator.store import open_store
from tests.conftest import NOW, Site
from tests.feedcheck import ATOM, check_feed, entry_titles

LATER = NOW + timedelta(hours=5)


def entries_by_title(data: bytes) -> dict[str, dict[str, str]]:
    root = check_feed(data)
    return {
        e.findtext(f"{ATOM}title") or "": {
            "id": e.findtext(f"{ATOM}id") or "",
            "updated": e.findtext(f"{ATOM}updated") or "",
            "summary": e.findtext(f"{ATOM}summary") or "",
        }
        for e in root.findall(f"{ATOM}entry")
    }


def mtimes(site: Site) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in site.out.rglob("*") if p.is_file()}


@pytest.fixture
def built(site: Site) -> Site:
    site.add("ai.md", title="AI story", topics=["AI"], originalUrl="https://i.example/ai")
    site.add("space.md", title="Space story", topics=["Space"], originalUrl="https://i.example/sp")
    site.add("both.md", title="Both", topics=["AI", "Space"], originalUrl="https://i.example/b")
    site.build()
    return site


def test_an_edited_excerpt_moves_that_entry_updated_and_nothing_else(built: Site) -> None:
    before = mtimes(built)
    old = entries_by_title(built.feed("all"))
    built.add(
        "ai.md",
        title="AI story",
        topics=["AI"],
        originalUrl="https://i.example/ai",
        excerpt="A corrected excerpt.",
    )
    report = built.build(now=LATER)
    assert report.scan.parsed == 1
    new = entries_by_title(built.feed("all"))
    assert new["AI story"]["summary"] == "A corrected excerpt."
    assert new["AI story"]["updated"] == LATER.isoformat()
    assert new["AI story"]["id"] == old["AI story"]["id"]
    assert {t: e for t, e in new.items() if t != "AI story"} == {
        t: e for t, e in old.items() if t != "AI story"
    }
    changed = {p.name for p, m in mtimes(built).items() if before.get(p) != m}
    assert changed == {
        "all.atom",
        "ai.atom",
        "all.html",
        "ai.html",
        "index.html",
        "feeds.opml",
        "all.opml",
    }


def test_a_restart_with_nothing_changed_parses_nothing_and_rewrites_nothing(built: Site) -> None:
    before = mtimes(built)
    report = built.build(now=LATER)
    assert report.scan.parsed == 0 and report.render.written == []
    assert mtimes(built) == before


def test_a_touched_but_unchanged_file_is_not_parsed_again(built: Site) -> None:
    path = built.seeds / "ai.md"
    path.write_bytes(path.read_bytes())
    report = built.build(now=LATER)
    assert report.scan.parsed == 0
    assert entries_by_title(built.feed("ai"))["AI story"]["updated"] != LATER.isoformat()


def test_a_seed_that_turns_invalid_keeps_its_last_good_entry_until_fixed(built: Site) -> None:
    built.add("ai.md", "---\ntitle: [half saved\n")
    report = built.build(now=LATER)
    assert [s for s, _ in report.scan.rejected] == ["ai.md"]
    assert [s for s, _ in report.rejected] == ["ai.md"]
    assert "AI story" in entry_titles(check_feed(built.feed("ai")))
    again = built.build(now=LATER)
    assert again.scan.rejected == [] and [s for s, _ in again.rejected] == ["ai.md"]
    built.add("ai.md", title="AI story", topics=["AI"], originalUrl="https://i.example/ai")
    fixed = built.build(now=LATER)
    assert fixed.rejected == []


def test_a_deleted_seed_leaves_every_feed_and_an_empty_topic_goes(built: Site) -> None:
    (built.seeds / "space.md").unlink()
    (built.seeds / "both.md").unlink()
    report = built.build(now=LATER)
    assert report.scan.removed == 2
    assert entry_titles(check_feed(built.feed("all"))) == ["AI story"]
    assert not (built.out / "feeds" / "space.atom").exists()


def test_removing_the_used_copy_of_a_duplicate_falls_back_to_the_other(site: Site) -> None:
    site.add("a.md", title="Copy A", originalUrl="https://d.example/x")
    site.add("b.md", title="Copy B", originalUrl="https://d.example/x")
    site.build()
    assert entry_titles(check_feed(site.feed("all"))) == ["Copy A"]
    (site.seeds / "a.md").unlink()
    site.build(now=LATER)
    assert entry_titles(check_feed(site.feed("all"))) == ["Copy B"]


def test_a_returning_article_keeps_its_dates(built: Site) -> None:
    original = (built.seeds / "ai.md").read_bytes()
    first = entries_by_title(built.feed("all"))["AI story"]
    (built.seeds / "ai.md").unlink()
    built.build(now=LATER)
    (built.seeds / "ai.md").write_bytes(original)
    built.build(now=LATER + timedelta(hours=1))
    assert entries_by_title(built.feed("all"))["AI story"] == first


def test_work_left_by_an_interrupted_scan_is_finished_by_the_next(site: Site) -> None:
    site.add("a.md", title="Stored, never refreshed", originalUrl="https://c.example/a")
    site.build()
    with sqlite3.connect(site.state) as db:  # as if killed between storing and refreshing
        db.execute("DELETE FROM entries")
        db.execute("INSERT INTO dirty SELECT entry_id FROM seeds")
    site.build(now=LATER)
    assert entry_titles(check_feed(site.feed("all"))) == ["Stored, never refreshed"]


def test_a_state_file_from_a_newer_version_or_not_sqlite_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 999")
    with pytest.raises(StateError, match="newer"):
        open_store(newer)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match=str(junk)):
        open_store(junk)


def test_a_look_alike_topic_never_takes_over_an_existing_feed(site: Site) -> None:
    site.add("cpp.md", title="About C++", topics=["C++"], originalUrl="https://t.example/1")
    site.build()
    assert entry_titles(check_feed(site.feed("c-plus-plus"))) == ["About C++"]
    site.add(
        "cpp2.md", title="Look-alike", topics=["C Plus Plus"], originalUrl="https://t.example/2"
    )
    site.build(now=LATER)
    assert entry_titles(check_feed(site.feed("c-plus-plus"))) == ["About C++"]
    others = [slug for slug in site.feeds() if slug.startswith("c-plus-plus-")]
    assert len(others) == 1
    assert entry_titles(check_feed(site.feed(others[0]))) == ["Look-alike"]


def test_raising_the_size_limit_reads_a_rejected_seed_again(site: Site) -> None:
    big = site.add(
        "big.md", title="Big one", originalUrl="https://t.example/big", excerpt="x" * 3000
    )
    size = big.stat().st_size
    report = site.build(overrides={"seeds.max_file_bytes": size - 1})
    assert [s for s, _ in report.rejected] == ["big.md"]
    report = site.build(now=LATER, overrides={"seeds.max_file_bytes": size + 1})
    assert report.rejected == [] and report.scan.parsed == 1
    assert entry_titles(check_feed(site.feed("all"))) == ["Big one"]


def test_far_future_dates_wait_instead_of_topping_every_feed(site: Site) -> None:
    site.add(
        "now.md",
        title="Today",
        originalUrl="https://t.example/now",
        publishedDateTime="2026-10-31T00:00:00Z",
    )
    site.add(
        "typo.md",
        title="Typo",
        originalUrl="https://t.example/typo",
        publishedDateTime="9999-12-31T00:00:00Z",
    )
    site.build()
    root = check_feed(site.feed("all"))
    assert entry_titles(root) == ["Today"]
    assert root.findtext(f"{ATOM}updated", "").startswith("2026-10-31")


def test_an_entry_redated_into_the_next_day_is_never_updated_before_published(
    built: Site,
) -> None:
    """An edit that moves an article's date a few hours ahead (within the day a future
    date is shown early): its `updated` is the change, and never before its `published`."""
    ahead = NOW + timedelta(hours=12)
    built.add(
        "ai.md",
        title="AI story",
        topics=["AI"],
        originalUrl="https://i.example/ai",
        publishedDateTime=ahead.isoformat(),
    )
    built.build(NOW + timedelta(minutes=1))
    entry = entries_by_title(built.feed("ai"))["AI story"]  # check_feed: updated >= published
    assert datetime.fromisoformat(entry["updated"]) == ahead


def test_changed_topic_aliases_apply_to_stored_entries_at_the_next_build(site: Site) -> None:
    site.add("ki.md", title="KI story", topics=["KI"], originalUrl="https://t.example/ki")
    site.build()
    assert "ki" in site.feeds()
    site.build(now=LATER, overrides={"topics.aliases": {"KI": "AI"}})
    assert "ki" not in site.feeds()
    assert entry_titles(check_feed(site.feed("ai"))) == ["KI story"]


def feed_updated(data: bytes) -> datetime:
    return datetime.fromisoformat(check_feed(data).findtext(f"{ATOM}updated") or "")


def rss_updated(data: bytes) -> datetime:
    root = ET.fromstring(data)
    return parsedate_to_datetime(root.findtext("channel/lastBuildDate") or "")


def test_a_feed_that_loses_its_newest_entry_is_not_dated_back(site: Site) -> None:
    site.add(
        "old.md",
        title="Old",
        originalUrl="https://u.example/old",
        publishedDateTime="2024-01-01T00:00:00Z",
    )
    site.add(
        "new.md",
        title="New",
        originalUrl="https://u.example/new",
        publishedDateTime="2024-06-01T00:00:00Z",
    )
    formats = {"feeds.formats": ["atom", "rss"]}
    site.build(overrides=formats)
    before = {slug: feed_updated(site.feed(slug)) for slug in ("all", "ai")}
    assert before["ai"] == datetime(2024, 6, 1, tzinfo=UTC)
    (site.seeds / "new.md").unlink()
    site.build(now=LATER, overrides=formats)
    for slug in ("all", "ai"):
        after = feed_updated(site.feed(slug))
        assert after >= before[slug]
        assert after == LATER  # the removal is the change readers see, when it was seen
        rss = (site.out / "feeds" / f"{slug}.rss").read_bytes()
        assert rss_updated(rss) == LATER
    index = (site.out / "index.html").read_text()
    assert LATER.strftime("%Y-%m-%d %H:%M") in index
    # A later build with nothing changed keeps that date; a cold build from the same
    # seeds and state file writes the same bytes.
    written = {p: p.read_bytes() for p in site.out.rglob("*") if p.is_file()}
    report = site.build(now=LATER + timedelta(days=3), overrides=formats)
    assert report.render.written == []
    shutil.rmtree(site.out)
    site.build(now=LATER + timedelta(days=4), overrides=formats)
    assert {p: p.read_bytes() for p in site.out.rglob("*") if p.is_file()} == written


def test_a_state_file_from_before_credentials_were_dropped_is_read_again(built: Site) -> None:
    """Records stored by an older release keep what its rules let through; new reading
    rules make every seed be read again, so no stored password outlives the upgrade."""
    with sqlite3.connect(built.state) as db:
        db.execute(
            "UPDATE seeds SET article = replace(article, 'https://i.example/',"
            " 'https://bob:s3cret@i.example/')"
        )
        db.execute("DELETE FROM meta WHERE key = 'reading_rules'")  # as an older release left it
    db.close()
    report = built.build(now=LATER)
    assert report.scan.parsed == 3
    for path in built.out.rglob("*"):
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path
    assert built.build(now=LATER).scan.parsed == 0  # once


def test_a_rescan_parses_outside_its_transactions(
    built: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a scan that is not a cold build waits for parsed seeds, the state's write lock
    is free (the service's other threads and tools are not kept waiting that long); only
    storing what was parsed takes it."""
    import aggregator.ingest as ingest

    monkeypatch.setattr(ingest, "BATCH", 10)
    for n in range(35):
        built.add(f"more/{n:02d}.md", title=f"More {n}", originalUrl=f"https://i.example/m{n}")
    state = built.config().state.location
    locked: list[bool] = []
    load_seeds = ingest.load_seeds

    def watched(*args: object, **kwargs: object) -> Iterator[object]:
        for result in load_seeds(*args, **kwargs):  # type: ignore[arg-type]
            other = sqlite3.connect(state, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                locked.append(False)
            except sqlite3.OperationalError:
                locked.append(True)
            finally:
                other.close()
            yield result

    monkeypatch.setattr(ingest, "load_seeds", watched)
    report = built.build(now=LATER)
    assert report.scan.parsed == 35
    assert len(locked) == 35
    assert not any(locked)
