"""Feeds per provider: who an article's provider is, and the feeds, pages and OPML file."""

from __future__ import annotations

import re
from pathlib import Path

import feedparser
import listparser
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from publicsuffixlist import PublicSuffixList

from aggregator.app import make_app
from aggregator.config import load_config
from aggregator.formats import archive_page, archive_path
from aggregator.providers import (
    _suffix_list,
    provider_key,
    provider_names,
    provider_slug,
    registrable_domain,
    suffix_list_for,
    suffix_rules,
)
from aggregator.store.memory import MemoryStore
from tests.conftest import NOW, Site
from tests.feedcheck import check_feed, check_rss, entry_ids
from tests.pagecheck import check_page, validate_pages, vnu

ROOT = Path(__file__).parent.parent
ALL_FORMATS = {"feeds.formats": ("atom", "json", "rss")}
PSL = PublicSuffixList()
HOSTILE = '<script>alert("x")</script> & \u202eSky'


def test_the_suffix_list_places_every_name_as_the_library_reading_it_alone_does() -> None:
    """The list is handed to `PublicSuffixList` with its Unicode rules in ASCII too, which
    the library would otherwise encode itself, rule by rule, and names without an `xn--`
    label are placed by its rules in ASCII alone: every rule, in Unicode and in ASCII, with
    a label or two before it, is placed the same as the library reading the list places it."""
    theirs = PublicSuffixList(accept_unknown=False)
    names = set()
    for line in suffix_rules():
        rule = line.lower().split(" ")[0].rstrip()
        if rule and not rule.startswith("//"):
            name = rule.lstrip("!").replace("*", "w")
            names |= {name, name.encode("idna").decode("ascii")}
    assert len(names) > 10_000
    for name in sorted(names):
        for host in (name, f"b.{name}", f"a.b.{name}", f"xn--a.{name}", f"a.xn--b.{name}"):
            ours = suffix_list_for(host) if host.isascii() else _suffix_list()
            assert ours.privatesuffix(host) == theirs.privatesuffix(host), host
            assert ours.publicsuffix(host) == theirs.publicsuffix(host), host
    assert suffix_list_for("a.b.example.com") is not _suffix_list()
    assert suffix_list_for("a.xn--p1ai") is _suffix_list()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("news.sky.com", "sky.com"),
        ("sky.com", "sky.com"),
        ("www.telegraph.co.uk", "telegraph.co.uk"),
        ("WWW.Telegraph.CO.UK.", "telegraph.co.uk"),
        ("a.b.c.bbc.co.uk", "bbc.co.uk"),
        ("someone.github.io", "someone.github.io"),  # the list's private part counts too
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("www.bücher.de", "xn--bcher-kva.de"),
        ("co.uk", None),  # a public suffix is nobody's domain
        ("com", None),
        ("github.io", None),
        ("127.0.0.1", None),
        ("10.1", None),
        ("::1", None),
        ("[::1]", None),
        ("localhost", None),
        ("foo.localhost", None),
        ("news.invalid", None),
        ("printer.local", None),
        ("a.test", None),
        ("", None),
        ("a..b.com", None),
        ("-bad-.com", None),
        ("white space.com", None),
    ],
)
def test_a_host_has_its_registrable_domain_or_none(host: str, expected: str | None) -> None:
    assert registrable_domain(host) == expected


@pytest.mark.parametrize(
    ("domain", "url", "expected"),
    [
        ("news.sky.com", "https://cdn.example.net/a", "sky.com"),
        ("https://news.sky.com/", "https://cdn.example.net/a", "sky.com"),
        ("www.telegraph.co.uk/news", None, "telegraph.co.uk"),
        (None, "https://www.telegraph.co.uk/news/1", "telegraph.co.uk"),
        ("localhost", "https://news.sky.com/story", "sky.com"),  # not a domain: the URL's host
        ("127.0.0.1", "http://127.0.0.1/story", None),
        (None, "http://localhost:8080/story", None),
        ("news.invalid", "https://news.invalid/story", None),
        (None, None, None),
    ],
)
def test_an_article_s_provider_comes_from_its_domain_else_its_url(
    domain: str | None, url: str | None, expected: str | None
) -> None:
    assert provider_key(domain, url) == expected


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True)
_SUFFIX = st.sampled_from(["com", "co.uk", "org", "de", "github.io", "com.au", "xn--p1ai"])


@settings(deadline=None)  # no timing is a pass or a fail
@given(st.lists(_LABEL, min_size=0, max_size=3), _LABEL, _SUFFIX)
def test_any_name_under_a_registrable_domain_has_that_domain(
    subdomains: list[str], label: str, suffix: str
) -> None:
    domain = f"{label}.{suffix}"
    assume(not PSL.is_public(domain))  # x0.com is a suffix of its own
    assert registrable_domain(domain) == domain
    assert registrable_domain(".".join([*subdomains, domain])) == domain
    assert registrable_domain(".".join([*subdomains, domain]).upper() + ".") == domain
    assert provider_key(None, f"https://{'.'.join([*subdomains, domain])}:8443/x?y") == domain


@settings(deadline=None)  # no timing is a pass or a fail
@given(st.lists(st.text(max_size=30), max_size=5))
def test_registrable_domains_are_ascii_lower_case_and_their_own(hosts: list[str]) -> None:
    for host in hosts:
        found = registrable_domain(host)
        if found is not None:
            assert re.fullmatch(r"[a-z0-9.-]+", found)
            assert registrable_domain(found) == found


@settings(deadline=None)  # no timing is a pass or a fail
@given(st.sets(st.tuples(_LABEL, _SUFFIX), min_size=1, max_size=20))
def test_provider_slugs_are_safe_stable_and_never_shared(pairs: set[tuple[str, str]]) -> None:
    keys = {f"{label}.{suffix}" for label, suffix in pairs}
    slugs = {key: provider_slug(key) for key in keys}
    assert len(set(slugs.values())) == len(keys)
    for key, slug in slugs.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", slug) and ".." not in slug
        assert len(slug) <= 60 + 7
        assert provider_slug(key) == slug


def test_long_or_reserved_domains_get_a_suffixed_slug() -> None:
    assert provider_slug("sky.com") == "sky.com"
    assert provider_slug("con.com").startswith("con.com-")
    long = "a" * 63 + ".com"
    assert len(provider_slug(long)) <= 67 and provider_slug(long) != provider_slug("b" + long)


@settings(deadline=None)  # no timing is a pass or a fail
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a.com", "b.org"]), st.sampled_from(["X", "Y", None]), st.just(1)
        ),
        max_size=12,
    ),
    st.randoms(),
)
def test_a_provider_is_named_by_its_commonest_name_whatever_the_order(
    rows: list[tuple[str, str | None, int]], rnd: object
) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    names = provider_names(rows)
    assert names == provider_names(shuffled)
    for key, provider in names.items():
        counts = {n: sum(1 for k, m, _ in rows if k == key and m == n) for n in ("X", "Y")}
        best = max(counts.values())
        expected = key if best == 0 else min(n for n, c in counts.items() if c == best)
        assert provider.name == expected


def test_the_bundled_seeds_give_one_valid_feed_per_provider(tmp_path: Path) -> None:
    config = load_config(
        ROOT / "config" / "aggregator.yaml",
        overrides={
            "seeds.dir": ROOT / "seeds",
            "output.dir": tmp_path / "out",
            "state.path": tmp_path / "state.sqlite3",
            **ALL_FORMATS,
        },
        environ={},
    )
    with make_app(config) as app:
        app.build(NOW)
    out = tmp_path / "out"
    feeds = sorted(p.name for p in (out / "feeds" / "providers").glob("*.atom"))
    assert feeds == [
        "debian.org.atom",
        "jurist.org.atom",
        "pydata.org.atom",
        "python.org.atom",
        "rust-lang.org.atom",
        "sky.com.atom",
        "wikipedia.org.atom",
    ]
    everything = feedparser.parse((out / "feeds" / "all.atom").read_bytes())
    ids = {e.link: e.id for e in everything.entries}
    for name in feeds:
        data = (out / "feeds" / "providers" / name).read_bytes()
        check_feed(data)
        check_rss((out / "feeds" / "providers" / name.replace(".atom", ".rss")).read_bytes())
        parsed = feedparser.parse(data)
        assert not parsed.bozo and parsed.entries
        for entry in parsed.entries:  # an entry has the same id in every feed
            assert ids[entry.link] == entry.id
        assert (out / "providers" / name.replace(".atom", ".html")).is_file()
    wikipedia = feedparser.parse((out / "feeds" / "providers" / "wikipedia.org.atom").read_bytes())
    assert wikipedia.feed.title == "aggregator: Wikipedia"
    assert len(wikipedia.entries) == 7  # the articles of en.wikipedia.org, not related links


def _sky_site(site: Site) -> None:
    site.add(
        "a.md",
        title="Story A",
        originalUrl="https://news.sky.com/story/a",
        provider={"name": "Sky News", "domain": "news.sky.com"},
        topics=["World"],
    )
    site.add(
        "b.md",
        title="Story B",
        originalUrl="https://news.sky.com/story/b",
        provider={"name": "Sky News", "domain": "news.sky.com"},
        topics=["Sport"],
        publishedDateTime="2024-05-02T10:00:00Z",
    )
    site.add(
        "c.md",
        title="Story C",
        originalUrl="https://sky.com/c",
        provider={"name": "Sky", "domain": "sky.com"},
        publishedDateTime="2024-05-03T10:00:00Z",
    )
    site.add(
        "d.md",
        title="Story D",
        originalUrl="https://www.telegraph.co.uk/news/d",
        webUrl=None,
        provider={"name": "The Daily Telegraph"},
    )


def test_news_sky_com_and_sky_com_are_one_provider_named_by_most_articles(site: Site) -> None:
    _sky_site(site)
    site.build()
    providers = site.out / "feeds" / "providers"
    assert sorted(p.name for p in providers.iterdir()) == ["sky.com.atom", "telegraph.co.uk.atom"]
    sky = feedparser.parse((providers / "sky.com.atom").read_bytes())
    assert sky.feed.title == "aggregator: Sky News"
    assert [e.title for e in sky.entries] == ["Story C", "Story B", "Story A"]
    telegraph = feedparser.parse((providers / "telegraph.co.uk.atom").read_bytes())
    assert telegraph.feed.title == "aggregator: The Daily Telegraph"
    assert [e.title for e in telegraph.entries] == ["Story D"]
    # the same ids as in the topic feeds and the feed of everything
    world = check_feed(site.feed("world"))
    everything = check_feed(site.feed("all"))
    sky_ids = entry_ids(check_feed((providers / "sky.com.atom").read_bytes()))
    assert set(entry_ids(world)) < set(sky_ids) < set(entry_ids(everything))
    # the index lists topics only, and links to the providers page
    index = check_page((site.out / "index.html").read_bytes())
    assert "providers.html" in index.links()
    assert not any("providers/" in href for _, href in index.alternates())
    page = check_page((site.out / "providers.html").read_bytes())
    assert "providers/sky.com.html" in page.links()
    assert ("application/atom+xml", "feeds/providers/sky.com.atom") in page.alternates()


def test_addresses_and_names_without_a_registrable_domain_get_no_provider_feed(
    site: Site,
) -> None:
    for n, (domain, url) in enumerate(
        [
            ("127.0.0.1", "http://127.0.0.1/a"),
            (None, "http://localhost:8080/b"),
            ("news.invalid", "https://news.invalid/c"),
            ("[::1]", "http://[::1]/d"),
            ("co.uk", "http://10.0.0.1/e"),
        ]
    ):
        provider = {"name": f"P{n}", "domain": domain} if domain else {"name": f"P{n}"}
        site.add(f"{n}.md", title=f"S{n}", originalUrl=url, webUrl=None, provider=provider)
    site.build()
    assert not (site.out / "feeds" / "providers").exists()
    assert len(entry_ids(check_feed(site.feed("ai")))) == 5  # still in their topic's feed
    page = check_page((site.out / "providers.html").read_bytes())
    assert page.alternates() == []
    assert listparser.parse((site.out / "providers.opml").read_bytes()).feeds == []


def test_the_providers_opml_imports_every_provider_feed(site: Site) -> None:
    _sky_site(site)
    site.build()
    parsed = listparser.parse((site.out / "providers.opml").read_bytes())
    assert not parsed.bozo
    assert sorted((f.title, f.url) for f in parsed.feeds) == [
        ("Sky News", "http://127.0.0.1:8080/feeds/providers/sky.com.atom"),
        ("The Daily Telegraph", "http://127.0.0.1:8080/feeds/providers/telegraph.co.uk.atom"),
    ]
    topics = listparser.parse((site.out / "feeds.opml").read_bytes())
    assert not any("providers" in f.url for f in topics.feeds)  # the main OPML is as it was


def _files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


def test_switching_provider_feeds_off_removes_them_and_on_brings_them_back(site: Site) -> None:
    _sky_site(site)
    for n in range(4):
        site.add(
            f"more{n}.md",
            originalUrl=f"https://news.sky.com/more/{n}",
            provider={"name": "Sky News", "domain": "news.sky.com"},
            publishedDateTime=f"2024-06-0{n + 1}T10:00:00Z",
        )
    on = {**ALL_FORMATS, "feeds.archive": True, "feeds.max_entries": 2}
    site.build(overrides=on)
    with_providers = _files(site.out)
    assert archive_path("providers/sky.com", 1) in with_providers
    assert archive_page(archive_path("providers/sky.com", 1)) == ("providers/sky.com", 1)
    assert {"providers.html", "providers.opml", "feeds/providers/sky.com.json"} <= with_providers
    report = site.build(overrides={**on, "feeds.providers": False})
    left = _files(site.out)
    assert not {f for f in left if "providers" in f}
    assert {f for f in with_providers - left} == {f for f in with_providers if "providers" in f}
    assert set(report.render.removed) >= {"providers.html", "providers.opml"}
    assert "providers.html" not in check_page((site.out / "index.html").read_bytes()).links()
    assert not (site.out / "feeds" / "providers").exists()
    site.build(overrides=on)
    assert _files(site.out) == with_providers


def test_a_provider_whose_articles_are_gone_loses_its_files(site: Site) -> None:
    _sky_site(site)
    site.build(overrides=ALL_FORMATS)
    (site.seeds / "d.md").unlink()
    site.build(overrides=ALL_FORMATS)
    files = _files(site.out)
    assert not {f for f in files if "telegraph" in f}
    assert "feeds/providers/sky.com.rss" in files


def test_a_topic_named_providers_keeps_its_feed_and_archive_beside_them(site: Site) -> None:
    for n in range(3):
        site.add(
            f"p{n}.md",
            originalUrl=f"https://news.sky.com/p/{n}",
            topics=["Providers"],
            publishedDateTime=f"2024-06-0{n + 1}T10:00:00Z",
        )
    overrides = {"feeds.archive": True, "feeds.max_entries": 2}
    site.build(overrides=overrides)
    site.build(overrides=overrides)
    files = _files(site.out)
    assert {"feeds/providers.atom", "feeds/providers/archive/1.atom"} <= files
    assert {"feeds/providers/sky.com.atom", "feeds/providers/sky.com/archive/1.atom"} <= files
    site.build(overrides={**overrides, "feeds.providers": False})
    files = _files(site.out)
    assert {"feeds/providers.atom", "feeds/providers/archive/1.atom"} <= files
    assert not {f for f in files if "sky.com" in f}


def test_a_hostile_provider_name_is_text_in_every_document(site: Site) -> None:
    for n in range(2):
        site.add(
            f"h{n}.md",
            title=f"H{n}",
            originalUrl=f"https://www.hostile.example.com/{n}",
            provider={"name": HOSTILE, "domain": "www.hostile.example.com"},
        )
    site.build(overrides=ALL_FORMATS)
    atom = (site.out / "feeds" / "providers" / "example.com.atom").read_bytes()
    check_feed(atom)
    assert feedparser.parse(atom).feed.title == f"aggregator: {HOSTILE}"
    check_rss((site.out / "feeds" / "providers" / "example.com.rss").read_bytes())
    for path in (site.out / "providers.html", site.out / "providers" / "example.com.html"):
        data = path.read_bytes()
        assert b"<script" not in data
        page = check_page(data)
        assert HOSTILE in page.text("a") + page.text("h1")
    opml = listparser.parse((site.out / "providers.opml").read_bytes())
    assert [f.title for f in opml.feeds] == [HOSTILE]


@pytest.mark.skipif(vnu() is None, reason="the Nu HTML Checker needs Java")
def test_the_providers_page_and_provider_pages_pass_the_nu_html_checker(site: Site) -> None:
    _sky_site(site)
    site.add(
        "h.md",
        originalUrl="https://hostile.example.com/h",
        provider={"name": HOSTILE + " \ufdd0", "domain": "hostile.example.com"},
    )
    site.build(overrides=ALL_FORMATS)
    pages = [
        site.out / "index.html",
        site.out / "providers.html",
        *sorted((site.out / "providers").glob("*.html")),
    ]
    assert len(pages) == 5
    assert validate_pages(pages) == ""


def test_provider_feeds_are_the_same_from_the_memory_store(tmp_path: Path) -> None:
    """The providers' names and memberships come from the store: the memory store and
    the state file give the same bytes."""
    outputs = []
    for engine in ("sqlite", "memory"):
        site = Site(tmp_path / engine)
        _sky_site(site)
        if engine == "memory":
            with make_app(site.config(), MemoryStore()) as app:
                app.build(NOW)
        else:
            site.build()
        outputs.append(
            {
                p.relative_to(site.out).as_posix(): p.read_bytes()
                for p in site.out.rglob("*")
                if p.is_file() and "provider" in p.relative_to(site.out).as_posix()
            }
        )
    assert outputs[0] == outputs[1] and len(outputs[0]) == 6
