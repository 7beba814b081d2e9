"""The records the pipeline passes along: frozen, typed, already clean.

An `Article` is what one seed document says, after validation: every string
in it is free of XML-invalid characters and every URL is an absolute http(s)
URL. Nothing in it comes from the seed's `secured` field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aggregator.urls import entry_id


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class Image:
    url: str
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class Related:
    title: str
    url: str


@dataclass(frozen=True, slots=True)
class Article:
    source: str
    """Path of the seed file, relative to the seed directory (POSIX separators)."""
    title: str
    published: datetime
    """When the article was published; always timezone-aware, in UTC."""
    original_url: str | None
    web_url: str | None
    topics: tuple[str, ...] = ()
    """Topic names as the seed spells them (cleaned, not yet merged or aliased)."""
    excerpt: str | None = None
    provider: Provider | None = None
    images: tuple[Image, ...] = ()
    related: tuple[Related, ...] = ()
    quality: float | None = None
    heat: float | None = None
    is_published: bool | None = None
    category: str | None = None
    kind: str | None = None
    """The seed's `type` field."""

    @property
    def url(self) -> str:
        """The link readers follow: `originalUrl`, else `webUrl`."""
        url = self.original_url or self.web_url
        assert url is not None, "an Article always has a URL"
        return url

    @property
    def id(self) -> str:
        """The Atom entry id: stable across file renames and identical in every feed."""
        return entry_id(self.url)


@dataclass(frozen=True, slots=True)
class SeedResult:
    """What reading one seed file gave: an article, or the reason there is none."""

    source: str
    article: Article | None
    error: str | None = None
    warnings: tuple[str, ...] = ()
