"""The records the pipeline passes along: frozen, typed, already clean.

An `Article` is what one seed document says, after validation: every string
in it is free of XML-invalid characters and every URL is an absolute http(s)
URL. Nothing in it comes from the seed's `secured` field.

The records are msgspec `Struct`s, frozen, which the cycle collector does not track
(they hold only strings, numbers, dates, tuples and other records: no cycle): a
worker makes about ten for every seed it reads, and a frozen dataclass with slots
takes ten times as long to make (each field set through `object.__setattr__`), and
about 0.7 ms to define at start-up. `msgspec.structs.replace` copies one with some
fields changed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import orjson

from aggregator.urls import entry_id, host_of


class Record(msgspec.Struct, frozen=True, gc=False):
    """A record of the pipeline (see the module's docstring)."""


class Provider(Record, frozen=True, gc=False):
    name: str
    domain: str | None = None


class Image(Record, frozen=True, gc=False):
    url: str
    width: int | None = None
    height: int | None = None


class Related(Record, frozen=True, gc=False):
    """Another outlet's article on the same story (the seed's `related`)."""

    title: str
    url: str
    provider: Provider | None = None
    excerpt: str | None = None
    published: datetime | None = None
    """Timezone-aware, in UTC, when the seed gives a usable date."""
    quality: float | None = None

    @property
    def outlet(self) -> str:
        """Who published it, as readers are told: the provider's name, else the URL's host."""
        if self.provider is not None:
            return self.provider.name
        return host_of(self.url) or self.url


class Article(Record, frozen=True, gc=False):
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
    language: str | None = None
    """The seed's `language`: a well-formed BCP 47 tag, in its conventional case."""

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


class SeedResult(Record, frozen=True, gc=False):
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
        "related": [_related_to_list(r) for r in article.related],
        "quality": article.quality,
        "heat": article.heat,
        "is_published": article.is_published,
        "category": article.category,
        "kind": article.kind,
        "language": article.language,
    }
    return dumps(data)


def dumps(value: object) -> str:
    """`value` (lists, dicts with string keys, strings, numbers, None, booleans) as compact
    JSON, as `json.dumps(value, ensure_ascii=False, separators=(",", ":"))` writes it: by
    orjson, which gives the same text but for how some floats are written (`1e-7` for
    `1e-07`, `0.00001` for `1e-05`: the same numbers), in a tenth of the time. What
    orjson refuses (a lone surrogate, which only a file name that is not UTF-8 brings; an
    integer past 64 bits) goes to `json`."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> Any:
    """The value of JSON `text` that `dumps` wrote: read by orjson, or by `json` where
    orjson refuses it (a lone surrogate, which only `json` writes). orjson reads an
    integer past 64 bits as a float: the stored forms hold none (an image's sizes are
    under 100,000, every other number a float)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def article_from_json(text: str) -> Article:
    data = loads(text)
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
        related=tuple(_related_from_list(r) for r in data["related"]),
        quality=data["quality"],
        heat=data["heat"],
        is_published=data["is_published"],
        category=data["category"],
        kind=data["kind"],
        language=data.get("language"),
    )


def related_to_json(related: Sequence[Related]) -> str:
    """The stored form of a list of related articles (a story's coverage)."""
    return dumps([_related_to_list(r) for r in related])


def related_from_json(text: str) -> tuple[Related, ...]:
    """The related articles `related_to_json` stored."""
    return tuple(_related_from_list(r) for r in loads(text))


def _related_to_list(related: Related) -> list[object]:
    provider = related.provider
    return [
        related.title,
        related.url,
        [provider.name, provider.domain] if provider else None,
        related.excerpt,
        related.published.isoformat() if related.published else None,
        related.quality,
    ]


def _related_from_list(item: list[Any]) -> Related:
    """A related article from its stored form (a record stored before the other fields
    were kept has the title and URL only; it is read again: see `parse.READING_RULES`)."""
    title, url, *rest = item
    if not rest:
        return Related(title, url)
    provider, excerpt, published, quality = rest
    return Related(
        title,
        url,
        Provider(provider[0], provider[1]) if provider else None,
        excerpt,
        datetime.fromisoformat(published) if published else None,
        quality,
    )


class SeedRecord(Record, frozen=True, gc=False):
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
    related_ids: tuple[str, ...] = ()
    """The article ids (`urls.entry_id`) of its related articles' URLs, sorted, without
    its own: what tells which articles are on one story (see `aggregator.stories`)."""


class LoadedSeed(Record, frozen=True, gc=False):
    """One seed file read for the state store: its record, or the reason there is none."""

    source: str
    digest: str
    record: SeedRecord | None
    error: str | None
    warnings: tuple[str, ...]
