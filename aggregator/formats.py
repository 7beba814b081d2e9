"""One home for the feed formats, the kinds of file we serve, and where feeds live.

A registry, standard library only, so that the server, the daemon and the config
learn what a format is without importing a renderer (and so feedgen and lxml):

- `FEED_FORMATS`: name → `FeedFormat` (file kind, label on pages, renderer);
- `FILE_KINDS`: suffix → `FileKind` (media type, whether it is worth gzipping,
  what a browser opening it gets), for the feeds and every other file we write;
- the path rules: where a feed, its page and its archive pages live.

Adding a feed format takes its entry in `FEED_FORMATS` and its renderer (a function
`(plan, site, FeedOptions) -> bytes` named by the entry); the config, the pages, the
pipeline, the output directory and the server all read this registry.
"""

from __future__ import annotations

import importlib
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aggregator.config import SiteConfig
    from aggregator.plan import FeedPlan


@dataclass(frozen=True, slots=True)
class FileKind:
    """A kind of file we write and serve, by its suffix."""

    suffix: str
    """With its dot: `.atom`."""
    media_type: str
    """Bare, as `type=` attributes name it: `application/atom+xml`."""
    charset: bool = True
    """Text in UTF-8: the Content-Type says `charset=utf-8`."""
    compressible: bool = True
    """Worth gzipping: served gzipped when asked, and given a `.gz` sidecar on request."""
    for_browsers: str | None = None
    """The bare media type a browser opening the file gets instead (see `server`), if any."""

    @property
    def content_type(self) -> str:
        """The Content-Type the file is served with."""
        return _with_charset(self.media_type) if self.charset else self.media_type

    @property
    def browser_content_type(self) -> str | None:
        """The Content-Type a browser opening the file gets, if it gets another one."""
        if self.for_browsers is None:
            return None
        return _with_charset(self.for_browsers) if self.charset else self.for_browsers


def _with_charset(media_type: str) -> str:
    return f"{media_type}; charset=utf-8"


@dataclass(frozen=True, slots=True)
class FeedOptions:
    """What a feed renderer needs besides the plan and the site settings."""

    max_related: int
    """Related links per entry, at most."""
    hub: str | None = None
    """The WebSub hub the feed names, if any."""
    ttl_minutes: int = 1
    """How long a reader may keep the feed before asking again (RSS `<ttl>`)."""


FeedRenderer = Callable[["FeedPlan", "SiteConfig", FeedOptions], bytes]
"""A plan and the site settings in, the feed document's bytes out (pure)."""


@dataclass(frozen=True, slots=True)
class FeedFormat:
    """A feed format: the file kind it is written as, and what renders it."""

    name: str
    """As `feeds.formats` lists it."""
    kind: FileKind
    label: str
    """What pages call it: `Subscribe: <label>`."""
    renderer: str
    """`module:function`, a `FeedRenderer`, imported on first use (see `renderer`): what
    needs only the registry (server, daemon, config) does not load the renderers' libraries."""

    @property
    def suffix(self) -> str:
        return self.kind.suffix

    @property
    def media_type(self) -> str:
        return self.kind.media_type


ATOM = "atom"
"""The format every feed is written in (with its archive pages); the others are optional."""

_XML_FOR_BROWSERS = "application/xml"
"""Chromium shows `application/atom+xml` and `application/rss+xml` as plain text, but styles
XML with the stylesheet the feed names: a feed a browser opens is sent as this."""

FEED_FORMATS: dict[str, FeedFormat] = {
    f.name: f
    for f in (
        FeedFormat(
            ATOM,
            FileKind(".atom", "application/atom+xml", for_browsers=_XML_FOR_BROWSERS),
            "Atom feed",
            "aggregator.render:atom_feed",
        ),
        FeedFormat(
            "json",
            FileKind(".json", "application/feed+json"),
            "JSON Feed",
            "aggregator.jsonfeed:render_json",
        ),
        FeedFormat(
            "rss",
            FileKind(".rss", "application/rss+xml", for_browsers=_XML_FOR_BROWSERS),
            "RSS",
            "aggregator.render:render_rss",
        ),
    )
}
"""Every feed format, in the order feeds are written in them."""

FEED_FORMAT_NAMES = tuple(FEED_FORMATS)

_OTHER_KINDS = (
    FileKind(".opml", "text/x-opml"),
    FileKind(".html", "text/html"),
    FileKind(".xml", "application/xml"),
    FileKind(".css", "text/css"),
    FileKind(".txt", "text/plain"),
    FileKind(".webp", "image/webp", charset=False, compressible=False),
    FileKind(".svg", "image/svg+xml", charset=False),
    FileKind(".xsl", "text/xsl"),
)

FILE_KINDS: dict[str, FileKind] = {
    kind.suffix: kind for kind in (*(f.kind for f in FEED_FORMATS.values()), *_OTHER_KINDS)
}
"""Suffix → kind, for every file we serve with a known type (others: octet-stream)."""

DEFAULT_CONTENT_TYPE = "application/octet-stream"


def file_kind(relative: str) -> FileKind | None:
    """The kind of the file at `relative` (by its suffix, in any case); None: unknown."""
    return FILE_KINDS.get(posixpath.splitext(relative)[1].lower())


def content_type_of(relative: str) -> str:
    """The media type the file at `relative` is served with."""
    kind = file_kind(relative)
    return kind.content_type if kind is not None else DEFAULT_CONTENT_TYPE


def renderer(name: str) -> FeedRenderer:
    """The renderer of format `name` (KeyError: no such format)."""
    module, _, function = FEED_FORMATS[name].renderer.partition(":")
    found: FeedRenderer = getattr(importlib.import_module(module), function)
    return found


# Where things live, relative to the output directory.

FEEDS_FOLDER = "feeds"
PAGES_FOLDER = "topics"
PROVIDERS_FOLDER = "providers"
"""The provider feeds' folder in `feeds/`, and their pages': a provider feed's slug is
`providers/<domain>` (see `aggregator.providers.provider_slug`)."""
PAGE_SUFFIX = ".html"
ARCHIVE_SUFFIX = FEED_FORMATS[ATOM].suffix
"""Archive pages are Atom documents."""


def feed_path(slug: str, fmt: str = ATOM) -> str:
    """Where a feed lives, relative to the output directory."""
    return f"{FEEDS_FOLDER}/{slug}{FEED_FORMATS[fmt].suffix}"


def page_path(slug: str) -> str:
    """Where a feed's page for people lives, relative to the output directory: in
    `topics/`, or in its own folder when its slug has one (`providers/<domain>.html`),
    one level down either way."""
    return f"{slug}{PAGE_SUFFIX}" if "/" in slug else f"{PAGES_FOLDER}/{slug}{PAGE_SUFFIX}"


def archive_folder(slug: str) -> str:
    """Where the archive pages of a feed live (RFC 5005)."""
    return f"{FEEDS_FOLDER}/{slug}/archive"


def archive_path(slug: str, number: int) -> str:
    """Where archive page `number` (1: the oldest) of a feed lives."""
    return f"{archive_folder(slug)}/{number}{ARCHIVE_SUFFIX}"


_ARCHIVE_PAGE = re.compile(
    rf"{FEEDS_FOLDER}/(?P<slug>(?:{PROVIDERS_FOLDER}/)?[^/]+)/archive/(?P<number>[1-9][0-9]{{0,8}})"
    + re.escape(ARCHIVE_SUFFIX)
)


def archive_page(relative: str) -> tuple[str, int] | None:
    """(slug, number) when `relative` is where an archive page lives, else None."""
    match = _ARCHIVE_PAGE.fullmatch(relative)
    return (match["slug"], int(match["number"])) if match else None


def is_feed(relative: str) -> bool:
    """Whether `relative` is in the feeds folder but not an archive page: a feed document
    in any format (the one a reader subscribes to), or its sidecar."""
    return relative.startswith(f"{FEEDS_FOLDER}/") and archive_page(relative) is None
