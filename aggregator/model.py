"""The records the pipeline passes along: frozen, typed, already clean.

An `Article` is what one seed document says, after validation: every string
in it is free of XML-invalid characters and every URL is an absolute http(s)
URL. Nothing in it comes from the seed's `secured` field.
"""

from __future__ import annotations

import json
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
    digest: str = ""
    """Hash of the file's bytes ("" when they could not be read)."""


def article_to_json(article: Article) -> str:
    """The stored form of an article (see `article_from_json`)."""
    data = {
        "source": article.source,
        "title": article.title,
        "published": article.published.isoformat(),
        "original_url": article.original_url,
        "web_url": article.web_url,
        "topics": list(article.topics),
        "excerpt": article.excerpt,
        "provider": [article.provider.name, article.provider.domain] if article.provider else None,
        "images": [[i.url, i.width, i.height] for i in article.images],
        "related": [[r.title, r.url] for r in article.related],
        "quality": article.quality,
        "heat": article.heat,
        "is_published": article.is_published,
        "category": article.category,
        "kind": article.kind,
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def article_from_json(text: str) -> Article:
    data = json.loads(text)
    provider = data["provider"]
    return Article(
        source=data["source"],
        title=data["title"],
        published=datetime.fromisoformat(data["published"]),
        original_url=data["original_url"],
        web_url=data["web_url"],
        topics=tuple(data["topics"]),
        excerpt=data["excerpt"],
        provider=Provider(provider[0], provider[1]) if provider else None,
        images=tuple(Image(url, width, height) for url, width, height in data["images"]),
        related=tuple(Related(title, url) for title, url in data["related"]),
        quality=data["quality"],
        heat=data["heat"],
        is_published=data["is_published"],
        category=data["category"],
        kind=data["kind"],
    )


@dataclass(frozen=True, slots=True)
class SeedRecord:
    """What the state store keeps of a good seed: the article, plus the columns it sorts on.

    Built in the worker process that parsed the seed, so the process that
    stores it only moves rows.
    """

    entry_id: str
    article_json: str
    topics: tuple[str, ...]
    published_us: int
    quality: float | None
    is_published: bool | None
    shown: str
    """Hash of what readers see of the article (topics aside): see `plan.shown_hash`."""
    original_url: str | None = None
    web_url: str | None = None


@dataclass(frozen=True, slots=True)
class LoadedSeed:
    """One seed file read for the state store: its record, or the reason there is none."""

    source: str
    digest: str
    record: SeedRecord | None
    error: str | None
    warnings: tuple[str, ...]
