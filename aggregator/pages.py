"""The site around the feeds: `index.html` and a page per topic for people,
`feeds.opml` for readers.

Pure: summaries and plans in, bytes out. Every piece of text is escaped;
nothing on a page needs JavaScript or another host (a thumbnail is shown only
when a local copy of it is at hand).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from html import escape

from aggregator.config import DEFAULT_MAX_RELATED, SiteConfig
from aggregator.digests import digest_path
from aggregator.feedpage import STYLESHEET, STYLESHEET_PATH
from aggregator.feeds import (
    ALL_OPML,
    FEEDS_OPML,
    INDEX_PAGE,
    PROVIDERS_OPML,
    PROVIDERS_PAGE,
    Feed,
)
from aggregator.formats import ATOM, FEED_FORMATS, feed_path, page_path
from aggregator.plan import Entry, FeedPlan, FeedSummary
from aggregator.render import feed_title
from aggregator.text import strip_invalid_xml

INDEX_PATH = INDEX_PAGE
PROVIDERS_PATH = PROVIDERS_PAGE
"""The page of the provider feeds (see `render_providers_page`)."""
PROVIDERS_OPML_PATH = PROVIDERS_OPML
"""The provider feeds, in one folder (see `render_providers_opml`)."""
OPML_PATH = FEEDS_OPML
"""The topic feeds, in one folder (the kinds whose `opml` it is: see `feeds.KINDS`)."""
ALL_OPML_PATH = ALL_OPML
"""The feed of everything, on its own (see `render_all_opml`)."""

FAVICON_PATH = "favicon.svg"

FAVICON = b"""<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">
<rect width="16" height="16" rx="3" fill="#0645ad"/>
<circle cx="4.5" cy="11.5" r="1.6" fill="#fff"/>
<path d="M3 7a6 6 0 0 1 6 6M3 3a10 10 0 0 1 10 10" fill="none" stroke="#fff" stroke-width="2"/>
</svg>
"""
"""The site's icon: same origin (the CSP allows `img-src 'self'`), linked from every page."""


SITE_FILES = {FAVICON_PATH: FAVICON, STYLESHEET_PATH: STYLESHEET}
"""Files the pages use, written beside them: path (relative to the output directory) → bytes."""


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """A local copy of an article's image: where it is (relative to the output directory)
    and its size in pixels, which the page states so nothing moves as it loads."""

    path: str
    width: int
    height: int


_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:52rem;padding:1rem;color:#1b1b1b;
overflow-wrap:break-word}
code{word-break:break-all}
th{white-space:nowrap}
td.f a{white-space:nowrap}
h1{font-size:1.6rem;margin:.5rem 0}
table{border-collapse:collapse;width:100%;table-layout:fixed}
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
th.n{width:5.5rem}th.u{width:12.5rem}th.f{width:14rem}
td.n{text-align:right;font-variant-numeric:tabular-nums}
a{color:#0645ad;display:inline-block;min-height:24px;max-width:100%}
td.t a,ol.entries h2 a{display:block}
nav{font-size:.9rem}
.subscribe{display:inline-block;margin:.25rem .5rem .25rem 0;padding:.35rem .8rem;
border-radius:.4rem;background:#0645ad;color:#fff;text-decoration:none;font-weight:600}
ol.entries{list-style:none;padding:0;margin:1rem 0}
ol.entries li{display:flow-root;padding:.9rem 0;border-bottom:1px solid #ddd}
ol.entries h2{font-size:1.1rem;margin:0 0 .2rem;line-height:1.35;overflow-wrap:anywhere}
ol.entries p{margin:.25rem 0;overflow-wrap:anywhere}
.meta{color:#555;font-size:.9rem}
ol.entries img{float:right;width:8rem;height:auto;max-height:8rem;object-fit:cover;
margin:0 0 .5rem 1rem;border-radius:.3rem}
@media (max-width:36rem){th.u,td.u{display:none}ol.entries img{width:5.5rem}}
@media (max-width:48rem){table,tbody,thead{display:block}tr{display:flex;flex-wrap:wrap}
tr>*{min-width:0}tr>:first-child{flex:1 0 100%;border-bottom:0;padding-bottom:0}
th.n,td.n,th.u,td.u{flex:0 0 5.5rem;box-sizing:border-box}th.u,td.u{flex-basis:12.5rem}
th.f,td.f{flex:1 1 0}}
@media (prefers-color-scheme:dark){body{background:#161616;color:#e8e8e8}a{color:#8ab4f8}
th,td,ol.entries li{border-color:#333}.meta{color:#aaa}.subscribe{background:#8ab4f8;color:#161616}}
""".strip()


def _listed_in(opml: str, feeds: Sequence[FeedSummary]) -> list[FeedSummary]:
    """The feeds whose kind is listed in the OPML file `opml`, in the order given."""
    return [summary for summary in feeds if summary.feed.kind.opml == opml]


def _date(moment: datetime | None) -> str:
    if moment is None:
        return "<td class=u>—</td>"
    iso = _datetime_attribute(moment)
    return f'<td class=u><time datetime="{iso}">{moment:%Y-%m-%d %H:%M} UTC</time></td>'


def _datetime_attribute(moment: datetime) -> str:
    """A `<time datetime>` value: HTML allows at most three digits of a second, and an edit
    is stamped with the clock's microseconds, so whole seconds it is."""
    return moment.isoformat(timespec="seconds")


def _head(title: str, links: str, up: str, language: str) -> str:
    """The head of a page; `up` leads from the page to the root (for the icon)."""
    return f"""<!doctype html>
<html lang="{escape(language)}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta name="generator" content="aggregator">
<meta name="referrer" content="no-referrer">
<link rel="icon" type="image/svg+xml" href="{up}{FAVICON_PATH}">
{links}
<style>{_STYLE}</style>
</head>
"""


def _alternates(feed: Feed, site: SiteConfig, formats: Sequence[str], up: str) -> str:
    """Autodiscovery tags of a feed, one per format; `up` leads from the page to the root."""
    tags = []
    for fmt in formats:
        label = FEED_FORMATS[fmt].label
        title = feed_title(site, feed) + ("" if fmt == ATOM else f" ({label})")
        tags.append(
            f'<link rel="alternate" type="{FEED_FORMATS[fmt].media_type}" title="{escape(title)}" '
            f'href="{up}{escape(feed_path(feed.slug, fmt))}">'
        )
    return "\n".join(tags)


def _rows(feeds: Sequence[FeedSummary], formats: Sequence[str]) -> str:
    """A table's rows: each feed with its entry count, last update and links."""
    return "\n".join(
        f'<tr><td class=t><a href="{escape(page_path(p.slug))}" dir="auto">'
        f"{escape(p.feed.heading)}</a></td>"
        f"<td class=n>{p.total}</td>{_date(p.updated)}<td class=f>"
        + " · ".join(
            f'<a href="{escape(feed_path(p.slug, fmt))}" type="{FEED_FORMATS[fmt].media_type}">'
            f"{FEED_FORMATS[fmt].label}</a>"
            for fmt in formats
        )
        + "</td></tr>"
        for p in feeds
    )


def render_index(
    feeds: Sequence[FeedSummary],
    site: SiteConfig,
    formats: Sequence[str] = (ATOM,),
    providers: bool = False,
) -> bytes:
    """The home page: every feed of the kinds it lists with its entry count, last update
    and autodiscovery links; with `providers`, a link to the providers page."""
    feeds = [p for p in feeds if p.feed.kind.page == INDEX_PATH]
    title = escape(strip_invalid_xml(site.title))
    head_links = "\n".join(_alternates(p.feed, site, formats, "") for p in feeds)
    rows = _rows(feeds, formats)
    topics = len(_listed_in(OPML_PATH, feeds))
    by_provider = (
        f"""
<p>The same articles by who published them:
<a href="{PROVIDERS_PATH}">a feed per provider</a>.</p>"""
        if providers
        else ""
    )
    page = (
        _head(title, head_links, "", site.language)
        + f"""<body>
<header>
<h1 dir="auto">{title}</h1>
<p>{topics} topic{"" if topics == 1 else "s"}, one feed each. Paste a feed's address into
your feed reader, or import <a href="{OPML_PATH}" type="text/x-opml">the topic feeds as OPML</a>.
The feed of everything has <a href="{ALL_OPML_PATH}" type="text/x-opml">an OPML file of its own</a>:
it holds the same articles as the topic feeds, so take one or the other, not both.</p>{by_provider}
</header>
"""
        + _listing("Topic", rows)
    )
    return page.encode("utf-8")


def _listing(what: str, rows: str) -> str:
    """The rest of a page that lists feeds: their table (`what` heads the first column)."""
    return f"""<main>
<table>
<thead><tr><th>{what}</th><th class=n>Articles</th><th class=u>Last update</th>
<th class=f>Feed</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</main>
</body>
</html>
"""


def render_providers_page(
    feeds: Sequence[FeedSummary], site: SiteConfig, formats: Sequence[str] = (ATOM,)
) -> bytes:
    """The page of the provider feeds: each provider (by registrable domain) with its entry
    count, last update, feed links and autodiscovery links, and their OPML file."""
    feeds = [p for p in feeds if p.feed.kind.page == PROVIDERS_PATH]
    site_name = escape(strip_invalid_xml(site.title))
    head_links = "\n".join(_alternates(p.feed, site, formats, "") for p in feeds)
    count = len(feeds)
    page = (
        _head(f"Providers · {site_name}", head_links, "", site.language)
        + f"""<body>
<header>
<nav><a href="{INDEX_PATH}">← <bdi>{site_name}</bdi>: all topics</a></nav>
<h1>Providers</h1>
<p>{count} provider{"" if count == 1 else "s"}, one feed each: the articles each one
published, whatever their topic. Paste a feed's address into your feed reader, or import
<a href="{PROVIDERS_OPML_PATH}" type="text/x-opml">the provider feeds as OPML</a>.</p>
</header>
"""
        + _listing("Provider", _rows(feeds, formats))
    )
    return page.encode("utf-8")


def render_topic_page(
    plan: FeedPlan,
    site: SiteConfig,
    formats: Sequence[str] = (ATOM,),
    thumbnails: Mapping[str, Thumbnail] | None = None,
    max_related: int = DEFAULT_MAX_RELATED,
    digest: bool = False,
) -> bytes:
    """A feed's page for people: its newest entries and how to subscribe.

    `thumbnails` maps an image URL to its local copy; images without one are
    not shown, so the page makes no request to another host. Each entry names the
    other outlets that covered its story (at most `max_related`, as in the feeds).
    `digest`: the feed has a daily digest (`digests.digest_path`), which the page links.
    """
    name = escape(plan.feed.heading)
    site_name = escape(strip_invalid_xml(site.title))
    title = f"{name} · {site_name}"
    subscribe = " ".join(
        f'<a class=subscribe href="../{escape(feed_path(plan.slug, fmt))}" '
        f'type="{FEED_FORMATS[fmt].media_type}">Subscribe: {FEED_FORMATS[fmt].label}</a>'
        for fmt in formats
    )
    alternates = _alternates(plan.feed, site, formats, "../")
    if digest:
        daily = escape(digest_path(plan.slug))
        atom = FEED_FORMATS[ATOM].media_type
        subscribe += f' <a class=subscribe href="../{daily}" type="{atom}">Daily digest</a>'
        title_of = escape(f"{feed_title(site, plan.feed)}, daily digest")
        alternates += f'\n<link rel="alternate" type="{atom}" title="{title_of}" href="../{daily}">'
    feed_url = escape(site.base_url + feed_path(plan.slug))
    shown = len(plan.entries)
    more = f" (the newest {shown} of {plan.total})" if plan.total > shown else ""
    items = "\n".join(_entry_item(entry, thumbnails or {}, max_related) for entry in plan.entries)
    listing = plan.feed.kind.page  # the page that lists the feeds of its kind
    listed = "all providers" if listing == PROVIDERS_PATH else "all topics"
    page = (
        _head(title, alternates, "../", site.language)
        + f"""<body>
<header>
<nav><a href="../{listing}">← <bdi>{site_name}</bdi>: {listed}</a></nav>
<h1 dir="auto">{name}</h1>
<p>{subscribe}</p>
<p class=meta>Feed address for your reader: <code>{feed_url}</code></p>
</header>
<main>
<p class=meta>{shown} article{"" if shown == 1 else "s"}{more}, newest first.</p>
<ol class=entries>
{items}
</ol>
</main>
</body>
</html>
"""
    )
    return page.encode("utf-8")


def _entry_item(entry: Entry, thumbnails: Mapping[str, Thumbnail], max_related: int) -> str:
    article = entry.article
    lang = f' lang="{escape(article.language)}"' if article.language else ""
    parts = [f"<li><article{lang}>"]
    local = next((thumbnails[i.url] for i in article.images[:1] if i.url in thumbnails), None)
    if local is not None:  # its size up front, so the page does not shift as it loads
        parts.append(
            f'<img src="../{escape(local.path)}" width="{local.width}" height="{local.height}" '
            'alt="" loading="lazy" decoding="async">'
        )
    parts.append(f'<h2 dir="auto"><a href="{escape(entry.url)}">{escape(article.title)}</a></h2>')
    meta = []
    if article.provider:
        meta.append(f"<bdi>{escape(article.provider.name)}</bdi>")
    when = article.published
    meta.append(f'<time datetime="{_datetime_attribute(when)}">{when:%Y-%m-%d}</time>')
    parts.append(f"<p class=meta>{' · '.join(meta)}</p>")
    if article.excerpt:
        parts.append(f'<p dir="auto">{escape(article.excerpt)}</p>')
    related = entry.coverage(max_related)
    if related:
        outlets = " · ".join(
            f'<a href="{escape(r.url)}" title="{escape(r.title)}"><bdi>{escape(r.outlet)}</bdi></a>'
            for r in related
        )
        parts.append(f"<p class=meta>Also covered by {outlets}</p>")
    parts.append("</article></li>")
    return "".join(parts)


def render_opml(feeds: Sequence[FeedSummary], site: SiteConfig) -> bytes:
    """OPML 2.0 with every topic feed in one folder named after the site, so a reader
    subscribes to all in one step. The feed of everything is left out: see `render_all_opml`.
    """
    topics = _listed_in(OPML_PATH, feeds)
    site_name = strip_invalid_xml(site.title) or "Topics"
    root, body = _opml(f"{site_name}: topic feeds", topics)
    folder = ET.SubElement(body, "outline", text=site_name, title=site_name)
    for feed in topics:
        _outline(folder, feed, site)
    return _opml_bytes(root)


def render_providers_opml(feeds: Sequence[FeedSummary], site: SiteConfig) -> bytes:
    """OPML 2.0 with every provider feed in one folder (`<site>: providers`), so a reader
    subscribes to all in one step. A file of its own, for the reason `render_all_opml`
    gives: an article is in its topics' feeds and in its provider's."""
    providers = _listed_in(PROVIDERS_OPML_PATH, feeds)
    site_name = strip_invalid_xml(site.title)
    root, body = _opml(f"{site_name}: provider feeds", providers)
    folder_name = f"{site_name}: providers" if site_name else "Providers"
    folder = ET.SubElement(body, "outline", text=folder_name, title=folder_name)
    for feed in providers:
        _outline(folder, feed, site)
    return _opml_bytes(root)


def render_all_opml(feeds: Sequence[FeedSummary], site: SiteConfig) -> bytes:
    """OPML 2.0 with the feed of everything alone.

    Not beside the topic feeds: an article has one id in every feed (RFC 4287),
    and readers that import a whole file (newsboat keys articles by id across
    feeds, rss2email mails each feed's copy) would show it once in a random feed,
    or once per feed. A separate file keeps each import whole and free of repeats.
    """
    everything = _listed_in(ALL_OPML_PATH, feeds)
    root, body = _opml(f"{strip_invalid_xml(site.title)}: all topics", everything)
    for feed in everything:
        _outline(body, feed, site)
    return _opml_bytes(root)


def _opml(title: str, feeds: Sequence[FeedSummary]) -> tuple[ET.Element, ET.Element]:
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    newest = max((f.updated for f in feeds if f.updated), default=None)
    if newest is not None:
        ET.SubElement(head, "dateModified").text = format_datetime(newest, usegmt=True)
    ET.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    return root, ET.SubElement(root, "body")


def _outline(parent: ET.Element, feed: FeedSummary, site: SiteConfig) -> None:
    ET.SubElement(
        parent,
        "outline",
        type="rss",
        text=feed.feed.heading,
        title=feed_title(site, feed.feed),
        xmlUrl=site.base_url + feed_path(feed.slug),
        htmlUrl=site.base_url + page_path(feed.slug),
    )


def _opml_bytes(root: ET.Element) -> bytes:
    ET.indent(root)
    xml: bytes = ET.tostring(root, "utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + xml + b"\n"
