"""Coverage in every entry: the other outlets' articles on a story, in every format and on
the topic pages, best first and capped; and the language of feeds, pages and entries."""

from __future__ import annotations

import json
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import html5lib
import jsonschema
import pytest
from lxml import etree
from msgspec import structs
from reader import make_reader

from aggregator.config import load_config
from aggregator.errors import ConfigError
from aggregator.feedpage import STYLESHEET
from aggregator.model import (
    Article,
    Provider,
    Related,
    article_from_json,
    article_to_json,
)
from aggregator.parse import MAX_EXCERPT_CHARS, MAX_TITLE_CHARS, parse_seed
from aggregator.plan import LEDGER_RULES, Entry, shown_hash
from aggregator.render import SHORT_EXCERPT_CHARS
from aggregator.stories import coverage
from tests.conftest import NOW, Site, seed_text
from tests.feedcheck import ATOM, check_feed, check_rss
from tests.pagecheck import check_page, validate_pages, vnu

ROOT = Path(__file__).parent.parent
REAL_SEED = ROOT / "seeds" / "000_792b0d4a2dfad34b.txt"
JURIST = "https://www.jurist.org/news/2021/08/civil-society-groups-urge-uk-to-ban-live-facial-recognition-technology/"
SKY = "https://news.sky.com/story/civil-liberties-groups-demand-government-bans-facial-recognition-cameras-12388513"
TELEGRAPH = "https://www.telegraph.co.uk/news/2021/08/22/facial-recognition-tech-rolled-police-without-parliaments-oversight/"
COMPUTER_WEEKLY = "https://www.computerweekly.com/news/252505711/Campaign-groups-claim-police-have-bypassed-Parliament-with-plans-for-live-facial-recognition-tech"
DAILY_MAIL = "https://www.dailymail.co.uk/news/article-9918055/Civil-liberties-groups-demand-ban-facial-recognition-technology.html"
BEST_THREE = [
    ("Sky", SKY),
    ("The Daily Telegraph", TELEGRAPH),
    ("Computer Weekly", COMPUTER_WEEKLY),
]
ALL_FORMATS = {"feeds.formats": ("atom", "json", "rss")}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((Path(__file__).parent / "data" / "jsonfeed-1.1.schema.json").read_text("utf-8")),
    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
)


def html_fragment(markup: str) -> ET.Element:
    """`markup` parsed as an HTML fragment, strictly: any parse error fails."""
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    fragment: ET.Element = parser.parseFragment(f"<div>{markup}</div>")
    return fragment[0]


def coverage_of(markup: str) -> list[tuple[str, str]]:
    """(outlet, linked URL) of each item of an entry content's coverage list."""
    root = html_fragment(markup)
    found = []
    for item in root.iter("li"):
        link = item.find("a")
        assert link is not None
        found.append(((item.text or "").rstrip(": "), link.get("href", "")))
    return found


def feed_page(document: bytes) -> ET.Element:
    """The page a browser shows for a feed document (its stylesheet applied), checked."""
    return check_page(
        bytes(etree.XSLT(etree.fromstring(STYLESHEET))(etree.fromstring(document)))
    ).tree


def read_outputs(site: Site, slug: str) -> tuple[etree._Element, etree._Element, dict[str, Any]]:
    atom = check_feed(site.feed(slug))
    rss = check_rss((site.out / "feeds" / f"{slug}.rss").read_bytes())
    data = json.loads((site.out / "feeds" / f"{slug}.json").read_bytes())
    VALIDATOR.validate(data)
    return atom, rss, data


# -- reading seeds -------------------------------------------------------------------------


def test_the_real_seed_keeps_each_related_articles_provider_excerpt_date_and_quality() -> None:
    result = parse_seed(REAL_SEED.read_bytes(), "real.txt")
    assert result.article is not None and result.warnings == ()
    sky = result.article.related[0]
    assert sky.provider == Provider("Sky", "sky.com")
    assert sky.published == datetime(2021, 8, 23, 9, 27, tzinfo=UTC)
    assert sky.quality == 58
    assert sky.excerpt is not None and sky.excerpt.startswith("Police and Home Office")
    assert [r.url for r in coverage(result.article, 3)] == [SKY, TELEGRAPH, COMPUTER_WEEKLY]
    # The stored record keeps every field; a record stored before keeps title and URL.
    assert article_from_json(article_to_json(result.article)) == result.article
    old = json.loads(article_to_json(result.article))
    old["related"] = [item[:2] for item in old["related"]]
    del old["language"]
    assert article_from_json(json.dumps(old)).related[0] == Related(sky.title, sky.url)


def test_hostile_related_fields_cost_themselves_only_with_a_warning_each() -> None:
    huge = "word " * 100_000
    related = [
        {
            "title": "<script>alert(1)</script> & co",
            "excerpt": '<img src=x onerror="alert(2)">',
            "webUrl": "https://r.example/1",
            "provider": {"name": "<b>Evil</b>", "domain": "https://bob:s3cret@evil.example/"},
            "publishedDateTime": "yesterday",
            "quality": "high",
        },
        {"title": "Scripted", "webUrl": "javascript:alert(3)"},
        {"title": huge, "excerpt": huge, "webUrl": "https://r.example/2", "quality": 500},
        {"title": "Odd types", "webUrl": "https://r.example/3", "provider": ["Sky"], "excerpt": 7},
        {"title": "", "webUrl": "https://r.example/4"},
        "not a mapping",
        {"title": "Dated", "webUrl": "https://r.example/5", "publishedDateTime": 12},
    ]
    result = parse_seed(seed_text(related=related).encode(), "hostile.md")
    assert result.article is not None
    kept = result.article.related
    assert [r.url for r in kept] == [
        "https://r.example/1",
        "https://r.example/2",
        "https://r.example/3",
        "https://r.example/5",
    ]
    first = kept[0]
    assert first.title == "<script>alert(1)</script> & co"  # text: escaped where it is shown
    assert first.provider == Provider("<b>Evil</b>", None)
    assert first.published is None and first.quality is None
    assert len(kept[1].title) <= MAX_TITLE_CHARS and kept[1].excerpt is not None
    assert len(kept[1].excerpt) <= MAX_EXCERPT_CHARS and kept[1].quality is None
    assert kept[2].provider is None and kept[2].excerpt is None
    warnings = result.warnings
    assert all("\n" not in w and len(w) < 200 and "s3cret" not in w for w in warnings)
    expected = [
        "related[0].provider.domain: ",
        "related[0].publishedDateTime: not a date-time: 'yesterday'",
        "related[0].quality: expected a number, got a string",
        "related[1].webUrl: ",
        "related[1]: no absolute http(s) URL in originalUrl or webUrl",
        "related[2].quality: 500 is outside 0–100",
        "related[3].provider: expected a mapping, got a list",
        "related[3].excerpt: expected a string, got an integer",
        "related[4].title: empty",
        "related[5]: expected a mapping, got a string",
        "related[6].publishedDateTime: expected a date-time, got an integer",
    ]
    for start in expected:
        assert any(w.startswith(start) for w in warnings), (start, warnings)
    assert len(warnings) == len(expected)


def test_coverage_is_best_first_then_newest_then_by_url_one_per_outlet_and_capped() -> None:
    day = datetime(2024, 1, 1, tzinfo=UTC)

    def rel(name: str, quality: float | None, published: datetime | None) -> Related:
        return Related(name, f"https://{name}.example/", None, None, published, quality)

    items = (
        rel("e", None, day),
        rel("d", 10, None),
        rel("c", 10, day),
        rel("b", 10, day + timedelta(days=1)),
        rel("a", 90, None),
        rel("f", None, None),
        rel("g", 10, day),  # same quality and date as c: by URL
        Related("self", "https://own.example/1"),  # the article itself
        Related("own", "https://own.example/2"),  # the article's own outlet: shown
        rel("a", 1, day),  # the same URL again
        Related("a2", "https://a.example/other", None, None, day, 95),  # outlet a again
    )
    article = Article("a.md", "T", day, "https://own.example/1", None, related=items)
    assert [r.title for r in coverage(article, 20)] == ["a2", "b", "c", "g", "d", "e", "f", "own"]
    assert [r.title for r in coverage(article, 2)] == ["a2", "b"]
    assert coverage(article, 0) == ()
    # The order does not depend on the seed's.
    reordered = Article("a.md", "T", day, "https://own.example/1", None, related=items[::-1])
    assert coverage(reordered, 20) == coverage(article, 20)


def test_an_entry_gives_its_coverage_per_limit_worked_out_once() -> None:
    """Every format of a feed and its page ask an entry for its coverage: the same as
    `coverage` of its article, for each limit, and worked out once per limit."""
    day = datetime(2024, 1, 1, tzinfo=UTC)
    items = tuple(
        Related(f"r{n}", f"https://o{n % 4}.example/{n}", None, None, day, float(n))
        for n in range(9)
    )
    article = Article("a.md", "T", day, "https://own.example/1", None, related=items)
    entry = Entry("urn:x", article, (), day)
    for limit in (0, 1, 3, 20):
        assert entry.coverage(limit) == coverage(article, limit)
        assert entry.coverage(limit) is entry.coverage(limit)
    assert entry.coverage(20) != entry.coverage(1)
    # A new entry (another article) works it out anew; entries compare without it.
    other = replace(entry, article=structs.replace(article, related=items[:2]))
    assert other.coverage(20) == coverage(other.article, 20) != entry.coverage(20)
    assert replace(entry) == entry


# -- what readers see -----------------------------------------------------------------------


def test_the_real_seed_shows_its_coverage_in_every_format_and_on_its_page(site: Site) -> None:
    shutil.copy(REAL_SEED, site.seeds / REAL_SEED.name)
    report = site.build(overrides={**ALL_FORMATS, "feeds.max_related": 3})
    assert report.rejected == [] and report.scan.warnings == []
    atom, rss, data = read_outputs(site, "ai")

    entry = atom.find(f"{ATOM}entry")
    assert entry is not None
    content = entry.find(f"{ATOM}content")
    assert content is not None and content.get("type") == "html"
    assert coverage_of(content.text or "") == BEST_THREE
    summary = entry.findtext(f"{ATOM}summary") or ""
    assert summary.startswith("Thirty-one UK") and "Sky" not in summary  # summary: the excerpt
    root = html_fragment(content.text or "")
    assert (root.findtext("p") or "").startswith("Thirty-one UK")  # the excerpt comes first
    first = next(root.iter("li"))
    assert "(2021-08-23)" in "".join(first.itertext())
    assert "Police and Home Office" in "".join(first.itertext())  # a short excerpt is shown
    related = [link.get("href") for link in entry.findall(f"{ATOM}link[@rel='related']")]
    assert related == [SKY, TELEGRAPH, COMPUTER_WEEKLY]
    assert DAILY_MAIL not in site.feed("ai").decode()

    assert coverage_of(rss.findtext("channel/item/description") or "") == BEST_THREE
    item = data["items"][0]
    assert coverage_of(item["content_html"]) == BEST_THREE
    assert item["summary"] == summary and item["content_text"] == summary
    assert [r["url"] for r in item["_aggregator"]["related"]] == [SKY, TELEGRAPH, COMPUTER_WEEKLY]

    page_path = site.out / "topics" / "ai.html"
    page = check_page(page_path.read_bytes())
    line = next(p for p in page.tree.iter("p") if "".join(p.itertext()).startswith("Also covered"))
    assert "".join(line.itertext()) == "Also covered by Sky · The Daily Telegraph · Computer Weekly"
    assert [a.get("href") for a in line.iter("a")] == [SKY, TELEGRAPH, COMPUTER_WEEKLY]
    if vnu() is not None:
        assert validate_pages([page_path]) == ""

    rss_page = feed_page((site.out / "feeds" / "ai.rss").read_bytes())  # in a browser
    shown = next(li for li in rss_page.iter("li") if li.find("div") is not None)
    assert [a.get("href") for a in shown.iter("a")][1:] == [SKY, TELEGRAPH, COMPUTER_WEEKLY]

    parsed = feedparser.parse(site.feed("ai"))
    assert parsed.bozo == 0
    values = [c.value for c in parsed.entries[0].content]
    assert any(f'<a href="{SKY}">' in v and "The Daily Telegraph" in v for v in values)


def test_a_feed_reader_sees_the_coverage_in_the_entry_content(site: Site) -> None:
    shutil.copy(REAL_SEED, site.seeds / REAL_SEED.name)
    site.build(overrides=ALL_FORMATS)
    reader = make_reader(":memory:", feed_root=str(site.out))
    try:
        for name in ("ai.atom", "ai.rss", "ai.json"):
            reader.add_feed(f"feeds/{name}")
        for result in reader.update_feeds_iter(scheduled=False):
            assert not isinstance(result.value, Exception), result.value
        entries = list(reader.get_entries())
        assert len(entries) == 3
        for entry in entries:
            html = " ".join([c.value for c in entry.content] + [entry.summary or ""])
            for url in (SKY, TELEGRAPH, COMPUTER_WEEKLY, DAILY_MAIL):
                assert f'href="{url}"' in html, (entry.feed_url, html)
            assert "Also covered by" in html
    finally:
        reader.close()


def test_hostile_coverage_is_escaped_in_every_format_and_on_the_page(site: Site) -> None:
    site.add(
        "hostile.md",
        related=[
            {
                "title": "</a><script>alert(1)</script>",
                "excerpt": "<img src=x onerror=alert(2)> & </ul>",
                "webUrl": "https://r.example/1?a=1&b='x'",
                "provider": {"name": "<i>Evil</i>"},
                "quality": 90,
            },
            {"title": "Plain", "webUrl": "javascript:alert(3)"},
        ],
    )
    site.build(overrides=ALL_FORMATS)
    atom, rss, data = read_outputs(site, "ai")
    contents = [
        atom.findtext(f"{ATOM}entry/{ATOM}content") or "",
        rss.findtext("channel/item/description") or "",
        data["items"][0]["content_html"],
    ]
    for markup in contents:
        root = html_fragment(markup)
        assert [e.tag for e in root.iter()] == ["div", "p", "p", "ul", "li", "a", "br"]
        item = next(root.iter("li"))
        text = "".join(item.itertext())
        assert "<i>Evil</i>: </a><script>alert(1)</script>" in text
        assert "<img src=x onerror=alert(2)> & </ul>" in text
        assert next(root.iter("a")).get("href") == "https://r.example/1?a=1&b='x'"
        assert "javascript" not in markup
    page = check_page((site.out / "topics" / "ai.html").read_bytes())
    assert not list(page.tree.iter("script")) and not list(page.tree.iter("i"))
    outlets = [a for a in page.tree.iter("a") if a.get("title") == "</a><script>alert(1)</script>"]
    assert ["".join(a.itertext()) for a in outlets] == ["<i>Evil</i>"]


def test_no_coverage_means_no_content_and_no_line(site: Site) -> None:
    site.add("lone.md")
    shutil.copy(REAL_SEED, site.seeds / REAL_SEED.name)
    site.build(overrides={**ALL_FORMATS, "feeds.max_related": 0})
    atom, rss, data = read_outputs(site, "ai")
    assert atom.find(f".//{ATOM}content") is None
    assert not atom.findall(f".//{ATOM}link[@rel='related']")
    assert all("<" not in (d.text or "") for d in rss.iter("description"))
    assert all("content_html" not in item and "_aggregator" not in item for item in data["items"])
    assert b"Also covered" not in (site.out / "topics" / "ai.html").read_bytes()


def test_a_short_excerpt_is_shown_and_a_long_one_left_out_whole(site: Site) -> None:
    words = (SHORT_EXCERPT_CHARS - 10) // 5
    short = "word " * words + "short-end"
    long = "word " * (words + 1) + "long-end"
    assert len(short) <= SHORT_EXCERPT_CHARS < len(long)
    site.add(
        "a.md",
        related=[
            {"title": "Short", "webUrl": "https://r1.example/1", "excerpt": short},
            {"title": "Long", "webUrl": "https://r2.example/2", "excerpt": long},
        ],
    )
    site.build()
    content = check_feed(site.feed("ai")).findtext(f"{ATOM}entry/{ATOM}content") or ""
    assert "short-end" in content and "word word" in content.split("Long")[0]
    assert "long-end" not in content and "word" not in content.split("Long")[1]
    # no provider: the outlet is the URL's host
    assert coverage_of(content) == [
        ("r1.example", "https://r1.example/1"),
        ("r2.example", "https://r2.example/2"),
    ]


# -- when entries are updated ---------------------------------------------------------------


def test_an_upgrade_shows_the_coverage_without_moving_any_entry(site: Site) -> None:
    """A state file stored by a release that kept related titles and URLs only: the seeds
    are read again, the coverage appears, and no entry or feed is dated anew."""
    shutil.copy(REAL_SEED, site.seeds / REAL_SEED.name)
    site.add("other.md", related=[{"title": "R", "webUrl": "https://r.example/1", "quality": 5}])
    site.build(overrides=ALL_FORMATS)
    before = check_feed(site.feed("ai"))
    with sqlite3.connect(site.state) as db:
        for source, text in db.execute("SELECT source, article FROM seeds").fetchall():
            old = json.loads(text)
            old["related"] = [item[:2] for item in old["related"]]
            del old["language"]
            db.execute("UPDATE seeds SET article = ? WHERE source = ?", (json.dumps(old), source))
    db.close()
    shutil.rmtree(site.out)
    site.build(now=NOW + timedelta(days=1), overrides=ALL_FORMATS)  # renders the stored records
    stale = check_feed(site.feed("ai"))
    assert "Sky" not in (stale.findtext(f".//{ATOM}content") or "")
    with sqlite3.connect(site.state) as db:  # as the older release left it
        db.execute("UPDATE meta SET value = '2' WHERE key = 'reading_rules'")
    db.close()

    report = site.build(now=NOW + timedelta(days=2), overrides=ALL_FORMATS)
    assert report.scan.parsed == 2
    after = check_feed(site.feed("ai"))
    assert coverage_of(after.findtext(f"{ATOM}entry[2]/{ATOM}content") or "")[0] == ("Sky", SKY)

    def dates(root: etree._Element) -> list[str | None]:
        return [root.findtext(f"{ATOM}updated")] + [
            e.findtext(f"{ATOM}updated") for e in root.findall(f"{ATOM}entry")
        ]

    assert dates(after) == dates(before) == dates(stale)


def test_an_entry_is_updated_when_a_new_outlet_appears_not_when_one_is_reworded(
    site: Site,
) -> None:
    """`plan.shown_hash` takes the outlets of the related articles: an article from a new
    outlet moves `updated`; another from an outlet shown already, or a related article's
    new title, excerpt, date, quality or provider name, does not."""
    one = {"title": "R", "webUrl": "https://r.example/1", "excerpt": "First.", "quality": 5}
    site.add("a.md", related=[one])
    site.build()

    def updated() -> str | None:
        return check_feed(site.feed("ai")).findtext(f"{ATOM}entry/{ATOM}updated")

    first = updated()
    reworded = {
        **one,
        "title": "R again",
        "excerpt": "Second.",
        "quality": 9,
        "provider": {"name": "Renamed"},
    }
    site.add("a.md", related=[reworded])
    site.build(now=NOW + timedelta(days=1))
    assert "Second." in (check_feed(site.feed("ai")).findtext(f".//{ATOM}content") or "")
    assert updated() == first
    same_outlet = {"title": "R2", "webUrl": "https://r.example/2", "quality": 99}
    site.add("a.md", related=[reworded, same_outlet])
    site.build(now=NOW + timedelta(days=1, hours=1))
    assert "R2" in (check_feed(site.feed("ai")).findtext(f".//{ATOM}content") or "")
    assert updated() == first
    site.add(
        "a.md", related=[reworded, same_outlet, {"title": "S", "webUrl": "https://s.example/1"}]
    )
    site.build(now=NOW + timedelta(days=2))
    assert updated() == (NOW + timedelta(days=2)).isoformat()

    article = parse_seed(seed_text(related=[one]).encode(), "a.md").article
    bare = parse_seed(
        seed_text(related=[{"title": "R", "webUrl": "https://r.example/1"}]).encode(), "a.md"
    ).article
    assert article is not None and bare is not None and article != bare
    assert shown_hash(article) == shown_hash(bare)


def test_hashes_made_another_way_are_written_anew_without_dating_any_entry_anew(
    site: Site,
) -> None:
    """A state whose ledger hashes were made by older rules (`plan.LEDGER_RULES`): the next
    scan writes every hash anew and records the rules, and no entry or feed is dated anew;
    a change after that dates its entry as usual."""
    shutil.copy(REAL_SEED, site.seeds / REAL_SEED.name)
    site.add("other.md", related=[{"title": "R", "webUrl": "https://r.example/1"}])
    site.build()
    before = site.feed("ai")
    with sqlite3.connect(site.state) as db:  # as an older release left it
        db.execute("UPDATE ledger SET content_hash = 'made-the-old-way'")
        db.execute("DELETE FROM meta WHERE key = 'ledger_rules'")
    db.close()
    site.build(now=NOW + timedelta(days=1))
    assert site.feed("ai") == before
    with sqlite3.connect(site.state) as db:
        hashes = {row[0] for row in db.execute("SELECT content_hash FROM ledger")}
        (rules,) = db.execute("SELECT value FROM meta WHERE key = 'ledger_rules'").fetchone()
    db.close()
    assert "made-the-old-way" not in hashes and rules == LEDGER_RULES
    site.add("other.md", title="Edited", related=[{"title": "R", "webUrl": "https://r.example/1"}])
    later = NOW + timedelta(days=2)
    site.build(now=later)
    assert later.isoformat() in site.feed("ai").decode()


# -- language -------------------------------------------------------------------------------


def test_the_site_language_is_declared_everywhere_and_a_seed_language_on_its_entry(
    site: Site,
) -> None:
    site.add("en.md", originalUrl="https://a.example/en", publishedDateTime="2024-05-02T00:00:00Z")
    site.add("pt.md", originalUrl="https://a.example/pt", language="pt_br")
    report = site.build(overrides={**ALL_FORMATS, "site.language": "en-gb"})
    assert report.scan.warnings == []
    atom, rss, data = read_outputs(site, "ai")
    assert atom.get(XML_LANG) == "en-GB"
    assert [e.get(XML_LANG) for e in atom.findall(f"{ATOM}entry")] == [None, "pt-BR"]
    assert rss.findtext("channel/language") == "en-GB"
    assert data["language"] == "en-GB"
    assert [item.get("language") for item in data["items"]] == [None, "pt-BR"]
    parsed = feedparser.parse(site.feed("ai"))
    assert parsed.feed.language == "en-GB"
    for path in (site.out / "index.html", site.out / "topics" / "ai.html"):
        page = check_page(path.read_bytes())
        assert page.tree.get("lang") == "en-GB"
    page = check_page((site.out / "topics" / "ai.html").read_bytes())
    assert [a.get("lang") for a in page.tree.iter("article")] == [None, "pt-BR"]
    atom_page = feed_page(site.feed("ai"))
    assert atom_page.get("lang") == "en-GB"
    assert [li.get("lang") for li in atom_page.iter("li")] == [None, "pt-BR"]
    assert feed_page((site.out / "feeds" / "ai.rss").read_bytes()).get("lang") == "en-GB"


def test_the_default_language_is_english_and_a_malformed_one_is_refused_or_warned() -> None:
    assert load_config(None, environ={}).site.language == "en"
    with pytest.raises(ConfigError, match=r"site\.language: .*not a language tag"):
        load_config(None, overrides={"site.language": "English (UK)"}, environ={})
    for value, warning in (
        (
            "english please",
            "language: not a language tag such as 'en' or 'pt-BR': 'english please'",
        ),
        (["en"], "language: expected a string, got a list"),
    ):
        result = parse_seed(seed_text(language=value).encode(), "l.md")
        assert result.article is not None and result.article.language is None
        assert result.warnings == (warning,)
