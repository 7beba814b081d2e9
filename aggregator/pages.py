"""The site around the feeds: `index.html` for people, `feeds.opml` for readers.

Pure: a `Catalog` in, bytes out. Every piece of text is escaped; nothing on
the page needs JavaScript or another host.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from email.utils import format_datetime
from html import escape

from aggregator.config import SiteConfig
from aggregator.plan import FeedSummary
from aggregator.render import FORMATS, feed_path, feed_title
from aggregator.text import strip_invalid_xml

INDEX_PATH = "index.html"
OPML_PATH = "feeds.opml"

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:52rem;padding:1rem;color:#1b1b1b}
h1{font-size:1.6rem;margin:.5rem 0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
a{color:#0645ad}
@media (max-width:36rem){th.u,td.u{display:none}}
@media (prefers-color-scheme:dark){body{background:#161616;color:#e8e8e8}a{color:#8ab4f8}
th,td{border-color:#333}}
""".strip()


def _name(feed: FeedSummary) -> str:
    return feed.topic.name if feed.topic else "All topics"


def _date(moment: datetime | None) -> str:
    if moment is None:
        return "<td class=u>—</td>"
    iso = moment.isoformat()
    return f'<td class=u><time datetime="{iso}">{moment:%Y-%m-%d %H:%M} UTC</time></td>'


_LABELS = {"atom": "Atom feed", "json": "JSON Feed", "rss": "RSS"}


def render_index(
    feeds: Sequence[FeedSummary], site: SiteConfig, formats: Sequence[str] = ("atom",)
) -> bytes:
    """The home page: every feed with its entry count, last update and autodiscovery links."""
    title = escape(strip_invalid_xml(site.title))
    head_links = "\n".join(
        f'<link rel="alternate" type="{FORMATS[fmt][1]}" '
        f'title="{escape(feed_title(site, p.topic))}" href="{escape(feed_path(p.slug, fmt))}">'
        for p in feeds
        for fmt in formats
    )
    rows = "\n".join(
        f"<tr><td>{escape(_name(p))}</td><td class=n>{p.total}</td>{_date(p.updated)}<td>"
        + " · ".join(
            f'<a href="{escape(feed_path(p.slug, fmt))}" type="{FORMATS[fmt][1]}">'
            f"{_LABELS[fmt]}</a>"
            for fmt in formats
        )
        + "</td></tr>"
        for p in feeds
    )
    topics = sum(1 for feed in feeds if feed.topic is not None)
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta name="generator" content="aggregator">
{head_links}
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p>{topics} topic{"" if topics == 1 else "s"}, one feed each. Paste a feed's address into
your feed reader, or import <a href="{OPML_PATH}" type="text/x-opml">all feeds as OPML</a>.</p>
</header>
<main>
<table>
<thead><tr><th>Topic</th><th>Articles</th><th class=u>Last update</th><th>Feed</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</main>
</body>
</html>
"""
    return page.encode("utf-8")


def render_opml(feeds: Sequence[FeedSummary], site: SiteConfig) -> bytes:
    """OPML 2.0 listing every topic feed, so a reader can subscribe to all in one step."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = f"{strip_invalid_xml(site.title)}: topic feeds"
    newest = max((f.updated for f in feeds if f.updated), default=None)
    if newest is not None:
        ET.SubElement(head, "dateModified").text = format_datetime(newest, usegmt=True)
    ET.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = ET.SubElement(root, "body")
    for plan in feeds:
        ET.SubElement(
            body,
            "outline",
            type="rss",
            text=_name(plan),
            title=feed_title(site, plan.topic),
            xmlUrl=site.base_url + feed_path(plan.slug),
            htmlUrl=site.base_url,
        )
    ET.indent(root)
    xml: bytes = ET.tostring(root, "utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + xml + b"\n"
