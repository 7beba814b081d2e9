"""`build` end to end: real seed files in, real feed files out, whatever the seeds hold."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NOW, Site, seed_text
from tests.feedcheck import ATOM, check_feed, check_rss, entry_ids, entry_titles
from tests.pagecheck import check_page

GOOD: dict[str, dict[str, Any]] = {
    "good-1.md": {"title": "Robots learn to fold laundry", "topics": ["Robotics", "AI"]},
    "good-2.md": {"title": "Quantum chip breaks a record", "topics": ["Quantum Computing"]},
    "deep/good-3.md": {"title": "New battery chemistry", "topics": ["Energy"]},
}


def add_good(site: Site) -> None:
    for n, (name, fields) in enumerate(GOOD.items()):
        site.add(
            name,
            **fields,
            originalUrl=f"https://news.example/{n}",
            webUrl=None,
            publishedDateTime=f"2024-0{n + 1}-01T00:00:00Z",
        )


def check_all_feeds(site: Site) -> dict[str, list[str]]:
    """Every feed is valid; returns the entry titles of each feed by slug."""
    titles = {}
    for slug, data in site.feeds().items():
        titles[slug] = entry_titles(check_feed(data))
    return titles


def alias_bomb() -> str:
    lines = ["---", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join([*lines, "title: *a9", "---", ""])


BAD_SEEDS: dict[str, str | bytes] = {
    "empty": "",
    "no-closing": "---\ntitle: half written\noriginalUrl: https://x.example/\n",
    "yaml-error": "---\ntitle: 'unterminated\n  : : :\n---\n",
    "list": "---\n- a\n- b\n---\n",
    "scalar": "---\nhello\n---\n",
    "no-title": seed_text(title=None, originalUrl="https://bad.example/1"),
    "no-url": seed_text(originalUrl=None, webUrl=None),
    "no-date": seed_text(publishedDateTime=None, originalUrl="https://bad.example/2"),
    "bad-date": seed_text(
        publishedDateTime="the 5th of Nevember", originalUrl="https://b.example/3"
    ),
    "required-wrong-types": "---\ntitle: {a: 1}\noriginalUrl: 5\npublishedDateTime: [1]\n---\n",
    "not-utf8": "---\ntitle: caf\xe9\n---\n".encode("latin-1"),
    "alias-bomb": alias_bomb(),
    "python-tag": "---\ntitle: !!python/object/apply:os.system ['echo pwned']\n---\n",
}


@pytest.mark.parametrize("case", sorted(BAD_SEEDS))
def test_a_bad_seed_is_named_and_everything_else_still_builds(site: Site, case: str) -> None:
    add_good(site)
    site.add(f"bad/{case}.md", BAD_SEEDS[case])
    report = site.build()
    assert [s for s, _ in report.rejected] == [f"bad/{case}.md"]
    assert report.articles == len(GOOD)
    titles = check_all_feeds(site)
    assert sorted(titles["all"]) == sorted(str(f["title"]) for f in GOOD.values())
    assert titles["robotics"] == ["Robots learn to fold laundry"]


def test_wrong_types_in_every_optional_field_cost_only_those_fields(site: Site) -> None:
    add_good(site)
    site.add(
        "odd.md",
        title="Still an article",
        originalUrl="https://odd.example/1",
        excerpt=["not", "text"],
        provider="just a string",
        topics=["Odd", 7, {"x": 1}],
        images=[
            {"url": "data:image/png;base64,AAAA"},
            "nope",
            {"url": "https://i.example/a.png", "width": -3},
        ],
        related=[{"title": "r", "webUrl": "javascript:void(0)"}, 5],
        quality="excellent",
        heat=[1],
        published="maybe",
        category={"a": "b"},
        type=3.5,
    )
    report = site.build()
    assert report.rejected == []
    odd_warnings = [w for s, w in report.scan.warnings if s == "odd.md"]
    for field in (
        "excerpt",
        "provider",
        "topics[1]",
        "topics[2]",
        "images[0].url",
        "images[1]",
        "images[2].width",
        "related[0]",
        "related[1]",
        "quality",
        "heat",
        "published",
        "category",
        "type",
    ):
        assert any(w.startswith(field) for w in odd_warnings), (field, odd_warnings)
    titles = check_all_feeds(site)
    assert titles["odd"] == ["Still an article"]
    assert len(titles["all"]) == len(GOOD) + 1


def test_bom_and_crlf_seed_is_read(site: Site) -> None:
    site.add(
        "win.md", b"\xef\xbb\xbf" + seed_text(title="From Windows").replace("\n", "\r\n").encode()
    )
    report = site.build()
    assert report.rejected == []
    assert entry_titles(check_feed(site.feed("all"))) == ["From Windows"]


def test_a_30_mb_file_is_reported_and_not_parsed(site: Site) -> None:
    add_good(site)
    big = site.add("huge.md", seed_text(title="Huge", originalUrl="https://huge.example/"))
    with big.open("ab") as handle:
        handle.truncate(30 * 1024 * 1024)
    report = site.build()
    assert report.rejected == [
        ("huge.md", f"file is {30 * 1024 * 1024} bytes, over the 1048576-byte limit")
    ]
    assert len(entry_titles(check_feed(site.feed("all")))) == len(GOOD)


def test_control_characters_and_markup_in_titles_come_out_as_escaped_text(site: Site) -> None:
    site.add(
        "x.md",
        title="Alert\x00\x08\x1b <script>alert('x')</script> & \ufffe done",
        excerpt="<b>bold</b>\x0c claim & more",
        topics=["<img src=x onerror=alert(1)>"],
    )
    site.build()
    data = site.feed("all")
    root = check_feed(data)
    assert entry_titles(root) == ["Alert <script>alert('x')</script> & done"]
    assert b"<script>" not in data and b"&lt;script&gt;" in data
    assert b"<b>" not in data
    index = (site.out / "index.html").read_bytes()
    assert b"<img src=x" not in index and b"&lt;img src=x onerror=alert(1)&gt;" in index


def test_hostile_topic_names_stay_inside_the_output_directory(site: Site) -> None:
    hostile = ["../../escape", "/", "..", "CON", "all", "All", "x" * 300, "a/b\\c", "", " "]
    site.add("h.md", topics=hostile)
    report = site.build()
    assert report.rejected == []
    outside = {p for p in site.out.parent.rglob("*") if not p.is_relative_to(site.out)}
    state = site.state.parent
    assert outside == {site.seeds, *site.seeds.rglob("*"), state, *state.rglob("*")}
    feeds = sorted(p.name for p in (site.out / "feeds").iterdir())
    assert "all.atom" in feeds
    for name in feeds:
        check_feed((site.out / "feeds" / name).read_bytes())
    all_ids = entry_ids(check_feed(site.feed("all")))
    assert len(all_ids) == 1
    # "all" and "All" are one topic; it cannot take all.atom, which stays the feed of everything.
    assert len(feeds) == 1 + 7


def test_the_same_article_in_two_files_is_one_entry_with_the_same_id_everywhere(site: Site) -> None:
    site.add("a.md", title="First copy", topics=["AI"], originalUrl="https://same.example/story")
    site.add(
        "b.md", title="Second copy", topics=["Robotics"], originalUrl="https://SAME.example/story#x"
    )
    report = site.build()
    assert report.duplicates == [("b.md", "a.md")]
    ids = {slug: entry_ids(check_feed(site.feed(slug))) for slug in ("all", "ai", "robotics")}
    assert ids["all"] == ids["ai"] == ids["robotics"] and len(ids["all"]) == 1
    assert entry_titles(check_feed(site.feed("robotics"))) == ["First copy"]


def test_two_builds_in_a_row_rewrite_nothing(site: Site) -> None:
    add_good(site)
    first = site.build()
    assert first.render.written
    stamps = {p: p.stat().st_mtime_ns for p in site.out.rglob("*") if p.is_file()}
    second = site.build()
    assert second.scan.parsed == 0
    assert second.render.written == [] and second.render.removed == []
    assert second.render.unchanged == len(first.render.written)
    assert {p: p.stat().st_mtime_ns for p in site.out.rglob("*") if p.is_file()} == stamps


def test_same_input_gives_byte_identical_output_in_any_order_and_any_worker_count(
    tmp_path: Path,
) -> None:
    outputs = []
    for run, workers in enumerate((1, 2)):
        site = Site(tmp_path / str(run))
        order = range(240) if run == 0 else reversed(range(240))
        for n in order:
            site.add(
                f"s{n:03d}.md",
                title=f"Story {n}",
                originalUrl=f"https://n.example/{n % 230}",
                topics=[f"Topic {n % 7}", "shared"],
                publishedDateTime=f"2024-01-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
            )
        report = site.build(overrides={"build.workers": workers})
        assert (report.scan.files, report.articles) == (240, 230)
        outputs.append(
            {p.relative_to(site.out): p.read_bytes() for p in site.out.rglob("*") if p.is_file()}
        )
    assert outputs[0] == outputs[1]


def test_feeds_of_topics_that_disappeared_are_removed(site: Site) -> None:
    add_good(site)
    site.build()
    assert (site.out / "feeds" / "energy.atom").exists()
    (site.seeds / "deep" / "good-3.md").unlink()
    report = site.build()
    assert report.render.removed == ["feeds/energy.atom", "topics/energy.html"]
    assert not (site.out / "feeds" / "energy.atom").exists()
    assert not (site.out / "topics" / "energy.html").exists()


def test_feeds_are_newest_first_capped_and_dated_by_their_newest_entry(site: Site) -> None:
    for day in range(1, 11):
        site.add(
            f"d{day}.md",
            title=f"Day {day}",
            originalUrl=f"https://d.example/{day}",
            publishedDateTime=f"2024-03-{day:02d}T08:00:00Z",
        )
    site.build(overrides={"feeds.max_entries": 4})
    root = check_feed(site.feed("ai"))
    assert entry_titles(root) == ["Day 10", "Day 9", "Day 8", "Day 7"]
    assert root.findtext(f"{ATOM}updated") == "2024-03-10T08:00:00+00:00"


def test_filters_leave_out_low_quality_old_and_unpublished_articles(site: Site) -> None:
    site.add(
        "keep.md",
        title="Keep",
        originalUrl="https://f.example/1",
        quality=80,
        publishedDateTime="2026-10-20T00:00:00Z",
        published=True,
    )
    site.add(
        "low.md",
        title="Low",
        originalUrl="https://f.example/2",
        quality=10,
        publishedDateTime="2026-10-20T00:00:00Z",
    )
    site.add(
        "old.md",
        title="Old",
        originalUrl="https://f.example/3",
        quality=90,
        publishedDateTime="2020-01-01T00:00:00Z",
    )
    site.add(
        "draft.md",
        title="Draft",
        originalUrl="https://f.example/4",
        quality=90,
        publishedDateTime="2026-10-20T00:00:00Z",
        published=False,
    )
    site.build(
        overrides={
            "feeds.min_quality": 50,
            "feeds.max_age_days": 30,
            "feeds.require_published": True,
        }
    )
    assert entry_titles(check_feed(site.feed("all"))) == ["Keep"]
    site.build()
    assert len(entry_titles(check_feed(site.feed("all")))) == 4


def test_scan_skips_hidden_backup_foreign_and_special_files(site: Site, tmp_path: Path) -> None:
    site.add("real.md", title="Real", originalUrl="https://s.example/real")
    for name in (".hidden.md", "backup.md~", ".real.md.swp", "#autosave.md#", "notes.json"):
        site.add(name, title=f"Skipped {name}", originalUrl="https://s.example/skip")
    site.add(".git/objects.md", title="In a hidden folder", originalUrl="https://s.example/git")
    outside = tmp_path / "outside.md"
    outside.write_text(seed_text(title="Outside", originalUrl="https://s.example/out"))
    (site.seeds / "link-out.md").symlink_to(outside)
    (site.seeds / "link-in.md").symlink_to(site.seeds / "real.md")
    (site.seeds / "loop").symlink_to(site.seeds)
    os.mkfifo(site.seeds / "pipe.md")
    report = site.build()
    assert report.scan.files == 2  # real.md and link-in.md
    assert report.rejected == []
    assert entry_titles(check_feed(site.feed("all"))) == ["Real"]


def test_index_and_opml_list_every_topic_feed(site: Site) -> None:
    add_good(site)
    site.build()
    slugs = set(site.feeds())
    index = (site.out / "index.html").read_text()
    for slug in slugs:
        assert '<link rel="alternate" type="application/atom+xml"' in index
        assert f'href="feeds/{slug}.atom"' in index
    assert index.count('rel="alternate"') == len(slugs)
    opml = ET.fromstring((site.out / "feeds.opml").read_bytes())
    assert opml.get("version") == "2.0"
    urls = {o.get("xmlUrl") for o in opml.iter("outline")} - {None}  # None: the folder
    topics = slugs - {"all"}
    assert urls == {f"http://127.0.0.1:8080/feeds/{slug}.atom" for slug in topics}
    everything = ET.fromstring((site.out / "all.opml").read_bytes())
    urls = {o.get("xmlUrl") for o in everything.iter("outline")}
    assert urls == {"http://127.0.0.1:8080/feeds/all.atom"}


def test_self_links_follow_the_configured_public_url(site: Site) -> None:
    add_good(site)
    site.build(overrides={"site.public_url": "https://feeds.example.org/news"})
    root = check_feed(site.feed("energy"))
    self_link = next(x for x in root.findall(f"{ATOM}link") if x.get("rel") == "self")
    assert self_link.get("href") == "https://feeds.example.org/news/feeds/energy.atom"


def test_gzip_sidecars_follow_their_files(site: Site) -> None:
    add_good(site)
    site.build(overrides={"output.gzip_sidecars": True})
    for name in ("feeds/all.atom", "feeds/energy.atom", "index.html", "feeds.opml"):
        plain = (site.out / name).read_bytes()
        assert gzip.decompress((site.out / f"{name}.gz").read_bytes()) == plain
    (site.seeds / "deep" / "good-3.md").unlink()
    site.build(overrides={"output.gzip_sidecars": True})
    assert not (site.out / "feeds" / "energy.atom.gz").exists()
    assert gzip.decompress((site.out / "feeds" / "all.atom.gz").read_bytes()) == site.feed("all")


def test_a_file_name_that_is_not_utf8_is_rejected_by_name_and_the_rest_builds(
    site: Site,
) -> None:
    add_good(site)
    raw = os.fsencode(site.seeds) + b"/bad\xff\xfename.md"
    with open(raw, "wb") as handle:
        handle.write(seed_text(title="Badly named").encode())
    report = site.build()
    assert [(s.encode("utf-8", "surrogateescape"), r) for s, r in report.rejected] == [
        (b"bad\xff\xfename.md", "the name is not valid UTF-8: rename the file")
    ]
    assert len(entry_titles(check_feed(site.feed("all")))) == len(GOOD)


def test_a_feed_of_oversized_entries_keeps_fewer_entries_not_megabytes(site: Site) -> None:
    huge = "https://big.example/" + "p" * 3900
    for n in range(40):
        site.add(
            f"big{n}.md",
            title=f"Big {n} " + "t" * 280,
            excerpt="e" * 2000,
            originalUrl=f"{huge}{n}",
            images=[{"url": f"{huge}/img{n}-{i}.jpg"} for i in range(10)],
            related=[{"title": "r" * 290, "webUrl": f"{huge}/rel{n}-{i}"} for i in range(5)],
        )
    site.build()
    data = site.feed("all")
    assert 0 < len(data) <= 400_000
    assert len(entry_titles(check_feed(data))) >= 1


def test_turning_gzip_sidecars_off_removes_them(site: Site) -> None:
    add_good(site)
    site.build(overrides={"output.gzip_sidecars": True})
    assert (site.out / "feeds" / "all.atom.gz").exists()
    site.add("more.md", title="More", originalUrl="https://more.example/")
    site.build()
    assert not list(site.out.rglob("*.gz"))


def test_a_seed_directory_that_empties_at_once_keeps_the_last_feeds(site: Site) -> None:
    from aggregator.errors import SeedDirError

    add_good(site)
    site.build()
    before = site.feeds()
    for path in list(site.seeds.rglob("*.md")):
        path.unlink()
    with pytest.raises(SeedDirError, match="no seed files any more"):
        site.build()
    assert site.feeds() == before


YEARS = re.compile(rb"\b(?:(\d{4})-\d{2}-\d{2}|\d{1,2} [A-Z][a-z]{2} (\d{4}) )")
"""The year of every ISO 8601 (`2026-11-01`) and RFC 822 (`01 Nov 2026 `) date in a file."""


def test_a_build_with_no_seeds_dates_nothing_at_the_epoch_and_rebuilds_the_same(
    site: Site,
) -> None:
    formats = {"feeds.formats": ["atom", "json", "rss"]}
    site.build(overrides=formats)
    files = {p.relative_to(site.out): p.read_bytes() for p in site.out.rglob("*") if p.is_file()}
    assert {p.suffix for p in files} >= {".atom", ".json", ".rss", ".html", ".opml"}
    for path, data in files.items():
        if path.suffix == ".atom":
            assert check_feed(data).findtext(f"{ATOM}updated") == NOW.isoformat()
        elif path.suffix == ".rss":
            check_rss(data)
        elif path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".html":
            check_page(data)
        elif path.suffix == ".opml":
            ET.fromstring(data)
        years = [int(a or b) for a, b in YEARS.findall(data)]
        assert all(year >= 2000 for year in years), (path, years)
    assert any(YEARS.search(data) for data in files.values())
    # The date is kept in the state: later cold builds of it give the same bytes.
    shutil.rmtree(site.out)
    site.build(now=NOW + timedelta(days=3), overrides=formats)
    again = {p.relative_to(site.out): p.read_bytes() for p in site.out.rglob("*") if p.is_file()}
    assert again == files
