"""Rendering an Atom feed: a `FeedPlan` in, bytes out (the feedgen adapter).

Pure: the same plan and site settings always give the same bytes, since
nothing here reads a clock. feedgen stays inside this module.

feedgen 1.0 drops `rel` from entry links, which would turn a related link
into a second alternate one; related links are written by `_RelatedLinks`,
an entry extension, instead (which also writes an entry's `xml:lang`, which
feedgen has no setter for).

An entry with coverage (other outlets' articles on the same story, see
`model.coverage`) carries it in its content, as HTML built by `entry_html`:
Atom `content type="html"`, RSS `description`, JSON Feed `content_html`. The
summary stays the excerpt.
"""

from __future__ import annotations

import html
import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem

from aggregator.config import SiteConfig
from aggregator.digests import Digest, DigestPlan, digest_feed_id, digest_path, outlet_name
from aggregator.feedpage import with_stylesheet
from aggregator.feeds import Feed, feed_id
from aggregator.formats import (
    FEED_FORMATS,
    FeedOptions,
    archive_path,
    feed_path,
    page_path,
)
from aggregator.model import Article, Related
from aggregator.plan import Entry, FeedPlan, to_micros
from aggregator.text import strip_invalid_xml, truncate

RENDERING = "2"
"""The version of how entries are rendered: archive pages written by an older one are
written again (2: coverage in the content, languages)."""

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

SHORT_EXCERPT_CHARS = 280
"""A related article's excerpt is shown in an entry's coverage when it is at most this long;
a longer one is left out whole, never cut."""

ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM_TYPE = FEED_FORMATS["atom"].media_type
RSS_TYPE = FEED_FORMATS["rss"].media_type
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""`updated` of a plan with none: a last resort, stable where the build time would not be
(the state dates every feed, an empty one too: see `plan.feed_stamp`)."""


OLDEST = (-(2**62), "")
"""A key older than any entry's: the bound of an archive page 1 that holds nothing."""


def archive_bound(data: bytes) -> tuple[int, str] | None:
    """(published_us, id) of the newest (first) entry of an archive page we wrote; None
    when it cannot be read. A page whose entries were all removed is dated where it
    ends (see `empty_page_date`): then (its `updated`, "")."""
    updated: str | None = None
    try:
        for _, element in ET.iterparse(io.BytesIO(data)):  # noqa: S314 - a file we wrote
            if element.tag == f"{{{ATOM_NS}}}updated" and updated is None:
                updated = element.text  # the feed's own comes before any entry's
            if element.tag == f"{{{ATOM_NS}}}entry":
                entry_id = element.findtext(f"{{{ATOM_NS}}}id")
                published = element.findtext(f"{{{ATOM_NS}}}published")
                if entry_id and published:
                    return (to_micros(datetime.fromisoformat(published)), entry_id)
                return None
        if updated and datetime.fromisoformat(updated) > EPOCH:
            return (to_micros(datetime.fromisoformat(updated)), "")
    except (ET.ParseError, ValueError):
        return None
    return None


def empty_page_date(bound: tuple[int, str]) -> datetime | None:
    """The `updated` of a closed archive page whose entries were all removed: the date of
    the newest entry it held (where it ends), so it keeps its number and has a real date."""
    if bound[0] <= 0:
        return None
    return EPOCH + timedelta(microseconds=bound[0])


@dataclass(frozen=True, slots=True)
class History:
    """A feed document's place in its feed's history (RFC 5005 archived feeds)."""

    number: int | None = None
    """None: the current feed; else this archive page's number."""
    prev: int | None = None
    """The next older archive page, if there is one."""
    next: int | None = None
    """The next newer archive page, if there is one (an archive page only)."""


HISTORY_NS = "http://purl.org/syndication/history/1.0"


def feed_title(site: SiteConfig, feed: Feed) -> str:
    """The title of `feed`: the site's title, then what the feed's kind calls it."""
    return f"{strip_invalid_xml(site.title)}: {feed.title}"


class _ArchiveMark(BaseExtension):  # type: ignore[misc]
    """`<fh:archive/>`: this document is an archive page, not the feed to subscribe to."""

    def extend_ns(self) -> dict[str, str]:
        return {"fh": HISTORY_NS}

    def extend_atom(self, feed: Any) -> Any:
        xml_elem(f"{{{HISTORY_NS}}}archive", feed)
        return feed


class _RssHub(BaseExtension):  # type: ignore[misc]
    """`<atom:link rel="hub">` in an RSS channel: feedgen writes only the `self` link there."""

    def __init__(self) -> None:
        self.href: str | None = None

    def extend_rss(self, feed: Any) -> Any:
        if self.href:
            channel = feed[0]
            xml_elem(f"{{{ATOM_NS}}}link", channel, href=self.href, rel="hub")
        return feed


class _RelatedLinksFeed(BaseExtension):  # type: ignore[misc]
    """Feed half of the related-links extension: it adds no namespace."""


class _RelatedLinks(BaseEntryExtension):  # type: ignore[misc]
    """Writes `<link rel="related">` elements, which feedgen's own `link()` cannot, and the
    entry's `xml:lang` when it has a language of its own."""

    def __init__(self) -> None:
        self.links: list[tuple[str, str]] = []
        self.language: str | None = None

    def extend_atom(self, entry: Any) -> Any:
        if self.language:
            entry.set(XML_LANG, self.language)
        for href, title in self.links:
            xml_elem("link", entry, rel="related", href=href, title=title)
        return entry

    def extend_rss(self, item: Any) -> Any:
        return item


def render_atom(
    plan: FeedPlan,
    site: SiteConfig,
    max_related: int,
    hub: str | None = None,
    history: History = History(),
) -> bytes:
    """The Atom document of one feed, as UTF-8 bytes (naming the WebSub `hub`, if any).

    With `history`, the document links its archive pages; an archive page
    (`history.number`) carries `<fh:archive/>` and links back to the current feed.
    """
    fg = FeedGenerator()
    fg.load_extension("media", atom=True, rss=True)
    fg.register_extension("related", _RelatedLinksFeed, _RelatedLinks, atom=True, rss=False)
    fg.id(feed_id(site.base_url, plan.feed.key))
    fg.title(feed_title(site, plan.feed))
    fg.language(site.language)  # the feed's xml:lang
    about = plan.feed.about
    current = site.base_url + feed_path(plan.slug)
    if history.number is None:
        fg.subtitle(f"{about}, newest first")
        fg.link(href=current, rel="self", type=ATOM_TYPE)
    else:
        fg.register_extension("history", _ArchiveMark, atom=True, rss=False)
        fg.subtitle(f"{about}, archive page {history.number} (1 is the oldest)")
        self_url = site.base_url + archive_path(plan.slug, history.number)
        fg.link(href=self_url, rel="self", type=ATOM_TYPE)
        fg.link(href=current, rel="current", type=ATOM_TYPE)
    fg.author({"name": strip_invalid_xml(site.author)})
    fg.link(href=site.base_url + page_path(plan.slug), rel="alternate", type="text/html")
    if history.prev is not None:
        prev = site.base_url + archive_path(plan.slug, history.prev)
        fg.link(href=prev, rel="prev-archive", type=ATOM_TYPE)
    if history.next is not None:
        later = site.base_url + archive_path(plan.slug, history.next)
        fg.link(href=later, rel="next-archive", type=ATOM_TYPE)
    if hub and history.number is None:
        fg.link(href=hub, rel="hub")
    fg.generator("aggregator")
    fg.updated(plan.updated or EPOCH)
    for entry in plan.entries:
        _add_entry(fg, entry, max_related)
    data: bytes = fg.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    where = (
        feed_path(plan.slug) if history.number is None else archive_path(plan.slug, history.number)
    )
    return with_stylesheet(data, where)  # a page, when opened in a browser


def atom_feed(plan: FeedPlan, site: SiteConfig, options: FeedOptions) -> bytes:
    """The current Atom document of one feed, without archive links: the Atom renderer as
    the format registry calls it (the pipeline calls `render_atom`, for the history)."""
    return render_atom(plan, site, options.max_related, options.hub)


def entry_html(article: Article, related: tuple[Related, ...]) -> str:
    """An entry's content as HTML: the excerpt, then the coverage (`related`, in that order):
    for each article its outlet, its linked title, its date and, when short, its excerpt.
    Every piece of text is escaped here; nothing else is HTML."""
    parts = []
    if article.excerpt:
        parts.append(f"<p>{_text(article.excerpt)}</p>")
    if related:
        parts.append("<p>Also covered by:</p>\n<ul>")
        for item in related:
            line = (
                f'{_text(item.outlet)}: <a href="{html.escape(item.url)}">{_text(item.title)}</a>'
            )
            if item.published is not None:
                line += f" ({item.published:%Y-%m-%d})"
            if item.excerpt and len(item.excerpt) <= SHORT_EXCERPT_CHARS:
                line += f"<br>{_text(item.excerpt)}"
            parts.append(f"<li>{line}</li>")
        parts.append("</ul>")
    return "\n".join(parts)


def _text(text: str) -> str:
    """`text` as HTML text (element content: quotes need no escaping there)."""
    return html.escape(text, quote=False)


def _add_entry(fg: Any, entry: Entry, max_related: int) -> None:
    article = entry.article
    related = entry.coverage(max_related)
    fe = fg.add_entry(order="append")
    fe.id(entry.id)
    fe.title(article.title)
    fe.link(href=entry.url, rel="alternate")
    if article.excerpt:
        fe.summary(article.excerpt)
    if related:  # without coverage, the summary says it all
        fe.content(entry_html(article, related), type="html")
    if article.provider:
        author = {"name": article.provider.name}
        if article.provider.domain:
            author["uri"] = f"https://{article.provider.domain}/"
        fe.author(author)
    if entry.topics:
        fe.category([{"term": t.name, "label": t.name} for t in entry.topics])
    fe.published(article.published)
    fe.updated(entry.updated)
    for index, image in enumerate(article.images):
        attrs = {"url": image.url, "group": None}
        if image.width:
            attrs["width"] = str(image.width)
        if image.height:
            attrs["height"] = str(image.height)
        if index == 0:
            fe.media.thumbnail(dict(attrs))
        fe.media.content({**attrs, "medium": "image"})
    fe.related.links = [(r.url, r.title) for r in related]
    fe.related.language = article.language


def render_rss(plan: FeedPlan, site: SiteConfig, options: FeedOptions) -> bytes:
    """The RSS 2.0 document of one feed: the same entries, ids (as guids) and order as Atom.

    An item's provider is its `dc:creator` (RSS `author` must be an e-mail
    address); the WebSub `hub`, if any, is named as in Atom (`atom:link rel="hub"`).
    """
    hub, ttl_minutes = options.hub, options.ttl_minutes
    fg = FeedGenerator()
    fg.load_extension("media", atom=False, rss=True)
    fg.load_extension("dc", atom=False, rss=True)
    if hub:
        fg.register_extension("hub", _RssHub, atom=False, rss=True)
        fg.hub.href = hub
    fg.title(feed_title(site, plan.feed))
    fg.language(site.language)
    # feedgen takes the last link added as the channel's <link>: the page, so it goes last.
    fg.link(href=site.base_url + feed_path(plan.slug, "rss"), rel="self", type=RSS_TYPE)
    fg.link(href=site.base_url + page_path(plan.slug), rel="alternate")
    about = plan.feed.about
    fg.description(f"{about}, newest first")
    fg.generator("aggregator")
    fg.ttl(max(1, ttl_minutes))
    fg.lastBuildDate(plan.updated or EPOCH)
    for entry in plan.entries:
        article = entry.article
        fe = fg.add_entry(order="append")
        fe.guid(entry.id, permalink=False)
        fe.title(article.title)
        fe.link(href=entry.url)
        related = entry.coverage(options.max_related)
        if related:  # RSS descriptions are HTML
            fe.description(entry_html(article, related))
        elif article.excerpt:  # the excerpt is text
            fe.description(_text(article.excerpt))
        if article.provider:
            fe.dc.dc_creator(article.provider.name)
        fe.category([{"term": t.name} for t in entry.topics])
        fe.published(article.published)
        if article.images:
            image = article.images[0]
            attrs = {"url": image.url, "group": None}
            if image.width:
                attrs["width"] = str(image.width)
            if image.height:
                attrs["height"] = str(image.height)
            fe.media.thumbnail(attrs)
    data: bytes = fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return with_stylesheet(data, feed_path(plan.slug, "rss"))  # a page, in a browser


DIGEST_EXCERPT_CHARS = 200
"""A story's excerpt in a digest is cut to this many characters (at a word end)."""


def digest_html(digest: Digest, topic: str) -> str:
    """A digest's content as HTML: its stories, best first, each with its linked title, its
    outlet, a short excerpt and how many other outlets covered it. Every piece of text is
    escaped here; nothing else is HTML."""
    count = len(digest.stories)
    parts = [
        f"<p>The top {count} stor{'y' if count == 1 else 'ies'} on {_text(topic)} on "
        f"{digest.weekday} {digest.day.isoformat()}.</p>",
        "<ol>",
    ]
    for story in digest.stories:
        entry = story.entry
        article = entry.article
        line = (
            f'<a href="{html.escape(entry.url)}">{_text(article.title)}</a>'
            f" ({_text(outlet_name(article))})"
        )
        if article.excerpt:
            line += f"<br>{_text(truncate(article.excerpt, DIGEST_EXCERPT_CHARS))}"
        if story.breadth:
            others = "outlet" if story.breadth == 1 else "outlets"
            line += f"<br>Also covered by {story.breadth} {others}."
        parts.append(f"<li>{line}</li>")
    parts.append("</ol>")
    return "\n".join(parts)


def digest_title(digest: Digest, topic: str) -> str:
    """A digest's title: `<topic>: <weekday> <date>`."""
    return f"{topic}: {digest.weekday} {digest.day.isoformat()}"


def render_digest(plan: DigestPlan, site: SiteConfig, hub: str | None = None) -> bytes:
    """The Atom document of a topic's digest feed (`digests.digest_path`), as UTF-8 bytes:
    one entry per closed day, newest first, dated when its day closed (naming the WebSub
    `hub`, if any)."""
    fg = FeedGenerator()
    fg.id(digest_feed_id(site.base_url, plan.key))
    topic = strip_invalid_xml(plan.name)
    fg.title(f"{strip_invalid_xml(site.title)}: {topic}, daily digest")
    fg.subtitle(f"The top stories on {topic}, one entry a day, newest first")
    fg.language(site.language)
    where = digest_path(plan.slug)
    fg.link(href=site.base_url + where, rel="self", type=ATOM_TYPE)
    page = site.base_url + page_path(plan.slug)
    fg.link(href=page, rel="alternate", type="text/html")
    if hub:
        fg.link(href=hub, rel="hub")
    fg.author({"name": strip_invalid_xml(site.author)})
    fg.generator("aggregator")
    fg.updated(plan.updated)
    for digest in plan.digests:
        fe = fg.add_entry(order="append")
        fe.id(digest.id)
        fe.title(digest_title(digest, topic))
        fe.link(href=page, rel="alternate", type="text/html")  # the topic's page
        count = len(digest.stories)
        fe.summary(
            f"{count} stor{'y' if count == 1 else 'ies'}: "
            + "; ".join(s.entry.article.title for s in digest.stories)
        )
        fe.content(digest_html(digest, topic), type="html")
        fe.category([{"term": topic, "label": topic}])
        fe.published(digest.closed)
        fe.updated(digest.closed)
    data: bytes = fg.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return with_stylesheet(data, where)  # a page, when opened in a browser
