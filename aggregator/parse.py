"""Seed documents: bytes in, a validated `Article` (or the reason why not) out.

Pure: no file system, no clock. `parse_seed` never raises for bad input; a
document that cannot become an article gives a `SeedResult` with one `error`
line, and a wrong optional field gives a warning and is dropped, so one odd
field never costs a whole article.

YAML is read with the project's one safe loader (`yamlsafe`, the C one when
libyaml is there): tags such as `!!python/object` are errors, never constructors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from typing import Any

import yaml

from aggregator import yamlsafe
from aggregator.model import Article, Image, Provider, Related, SeedResult
from aggregator.text import clean_line, language_tag, printable, truncate
from aggregator.urls import InvalidURL, hostname, http_url, redact, without_userinfo


class SeedLoader(yamlsafe.SafeLoader):
    """The safe loader, with YAML timestamps kept as text.

    Dates are validated where they are read (`parse_datetime`), so a bad date
    in an optional field costs that field, not the whole document.
    """


def _int_or_text(loader: SeedLoader, node: yaml.ScalarNode) -> object:
    """An integer, or its text when Python will not convert it (over 4300 digits)."""
    try:
        return loader.construct_yaml_int(node)
    except ValueError:
        return loader.construct_scalar(node)


SeedLoader.add_constructor(  # type: ignore[type-var]  # the stubs mistype the loader
    "tag:yaml.org,2002:timestamp", SeedLoader.construct_yaml_str
)
SeedLoader.add_constructor("tag:yaml.org,2002:int", _int_or_text)

MAX_TITLE_CHARS = 300
MAX_EXCERPT_CHARS = 2000
MAX_TOPICS = 50
MAX_TOPIC_CHARS = 100
MAX_IMAGES = 10
MAX_RELATED = 20

_BOM = b"\xef\xbb\xbf"
_OPEN = re.compile(r"---[ \t]*\r?\n")
_CLOSE = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$", re.MULTILINE)


class _Rejected(Exception):
    """The document cannot become an article; the message says why."""


def describe(value: object) -> str:
    """Name the type of a YAML value for a message, never its (maybe huge) contents."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, datetime):
        return "a date-time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a binary value" if isinstance(value, bytes) else "an unsupported value"


def front_matter(data: bytes) -> str:
    """The YAML text between the first line `---` and the next `---` (or `...`) line."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if not data.strip():
        raise _Rejected("empty file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Rejected(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    opening = _OPEN.match(text)
    if opening is None:
        raise _Rejected("no front matter: the first line is not '---'")
    closing = _closing(text, opening.end())
    if closing is None:
        raise _Rejected("front matter is not closed: no '---' line after the first")
    return text[opening.end() : closing.start()]


def _closing(text: str, start: int) -> re.Match[str] | None:
    """`_CLOSE.search(text, start)` (`start` begins a line), trying the pattern only where
    a line begins with `---` or `...`, found with `str.find`: 4 µs for a seed, not 18."""
    at = start - 1  # the line feed before `start`
    while True:
        dashes = text.find("\n---", at)
        dots = text.find("\n...", at, len(text) if dashes < 0 else dashes)
        if dots >= 0:
            at = dots
        elif dashes >= 0:
            at = dashes
        else:
            return None
        found = _CLOSE.match(text, at + 1)
        if found is not None:
            return found
        at += 1


def load_yaml(text: str) -> object:
    """Parse front matter with the safe loader; errors become one-line reasons."""
    try:
        return yamlsafe.load(text, SeedLoader)
    except yaml.MarkedYAMLError as exc:
        where = ""
        if exc.problem_mark is not None:
            # +2: one for the opening '---' line, one because marks count from 0.
            where = f" (line {exc.problem_mark.line + 2}, column {exc.problem_mark.column + 1})"
        problem = exc.problem or exc.context or "syntax error"
        raise _Rejected(f"front matter is not valid YAML: {printable(problem)}{where}") from None
    except yaml.YAMLError as exc:
        raise _Rejected(f"front matter is not valid YAML: {printable(str(exc))}") from None
    except RecursionError:
        raise _Rejected("front matter is nested too deeply") from None
    except (ValueError, OverflowError) as exc:
        raise _Rejected(
            f"front matter has a value that cannot be read: {printable(str(exc))}"
        ) from None


def parse_seed(data: bytes, source: str) -> SeedResult:
    """Turn the bytes of one seed file into an article, or say what is wrong."""
    warnings: list[str] = []
    try:
        document = load_yaml(front_matter(data))
        if document is None:
            raise _Rejected("front matter is empty")
        if not isinstance(document, dict):
            raise _Rejected(f"front matter is {describe(document)}, not a mapping")
        article = _article(document, source, warnings.append)
    except _Rejected as exc:
        return SeedResult(source, None, str(exc), tuple(warnings))
    return SeedResult(source, article, None, tuple(warnings))


READING_RULES = "4"
"""The version of the rules that turn a seed into an article: when it changes, every seed
is read again (2: user names and passwords are dropped from URLs; 3: related articles keep
their provider, excerpt, date and quality, and the article its language; 4: the hash of
what readers see takes the outlets of the coverage, and the ids of the related URLs are
kept)."""

Warn = Callable[[str], None]


def _article(doc: Mapping[Any, Any], source: str, warn: Warn) -> Article:
    title = _title(doc.get("title"), "title")
    original_url = _url(doc.get("originalUrl"), "originalUrl", warn)
    web_url = _url(doc.get("webUrl"), "webUrl", warn)
    if original_url is None and web_url is None:
        raise _Rejected("no absolute http(s) URL in originalUrl or webUrl")
    if "publishedDateTime" not in doc:
        raise _Rejected("publishedDateTime: missing")
    try:
        published = parse_datetime(doc["publishedDateTime"])
    except ValueError as exc:
        raise _Rejected(f"publishedDateTime: {exc}") from None
    return Article(
        source=source,
        title=title,
        published=published,
        original_url=original_url,
        web_url=web_url,
        topics=_topics(doc.get("topics"), warn),
        excerpt=_optional_text(doc, "excerpt", MAX_EXCERPT_CHARS, warn),
        provider=_provider(doc.get("provider"), warn),
        images=_images(doc.get("images"), "images", warn),
        related=_related(doc.get("related"), warn),
        quality=_number(doc, "quality", warn, (0, 100)),
        heat=_number(doc, "heat", warn),
        is_published=_boolean(doc, "published", warn),
        category=_optional_text(doc, "category", 100, warn),
        kind=_optional_text(doc, "type", 100, warn),
        language=_language(doc.get("language"), warn),
    )


def _title(value: object, where: str) -> str:
    if value is None:
        raise _Rejected(f"{where}: missing")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Rejected(f"{where}: expected a string, got {describe(value)}")
    title = clean_line(value)
    if not title:
        raise _Rejected(f"{where}: empty")
    return truncate(title, MAX_TITLE_CHARS)


def _url(value: object, where: str, warn: Warn) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        warn(f"{where}: expected a string, got {describe(value)}")
        return None
    try:
        url = http_url(value)
    except InvalidURL as exc:
        warn(f"{where}: {exc}: '{printable(redact(value), 80)}'")
        return None
    public = without_userinfo(url)
    if public != url:
        warn(f"{where}: user name and password removed from the URL: '{printable(public, 80)}'")
    return public


def parse_datetime(value: object) -> datetime:
    """A timezone-aware UTC datetime from a YAML value; naive means UTC, a date is midnight."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, str):
        moment = _datetime_from_text(value.strip())
    else:
        raise ValueError(f"expected a date-time, got {describe(value)}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("date-time out of range") from None


def _datetime_from_text(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime  # here: rare, and 5 ms to import

    try:
        return parsedate_to_datetime(text)  # RFC 2822, as in RSS
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"not a date-time: '{printable(text, 60)}'") from None


def _topics(value: object, warn: Warn) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        warn(f"topics: expected a list of strings, got {describe(value)}")
        return ()
    if len(value) > MAX_TOPICS:
        warn(f"topics: {len(value)} topics, only the first {MAX_TOPICS} are used")
    names: list[str] = []
    for index, item in enumerate(value[:MAX_TOPICS]):
        if not isinstance(item, str):
            warn(f"topics[{index}]: expected a string, got {describe(item)}")
            continue
        name = clean_line(item)
        if len(name) > MAX_TOPIC_CHARS:
            warn(f"topics[{index}]: {len(name)} characters, cut to {MAX_TOPIC_CHARS}")
            name = truncate(name, MAX_TOPIC_CHARS)
        if not name:
            warn(f"topics[{index}]: empty topic name")
        elif name not in names:
            names.append(name)
    return tuple(names)


def _optional_text(
    doc: Mapping[Any, Any], key: str, limit: int, warn: Warn, where: str = ""
) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        warn(f"{_field(where, key)}: expected a string, got {describe(value)}")
        return None
    return truncate(clean_line(value), limit) or None


def _field(where: str, key: str) -> str:
    """How a message names field `key` of the part `where` ("" for the document itself)."""
    return f"{where}.{key}" if where else key


def _number(
    doc: Mapping[Any, Any],
    key: str,
    warn: Warn,
    bounds: tuple[float, float] | None = None,
    where: str = "",
) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    name = _field(where, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        warn(f"{name}: expected a number, got {describe(value)}")
        return None
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        warn(f"{name}: expected a finite number")
        return None
    if bounds is not None and not bounds[0] <= number <= bounds[1]:
        warn(f"{name}: {number:g} is outside {bounds[0]:g}–{bounds[1]:g}")
        return None
    return number


def _boolean(doc: Mapping[Any, Any], key: str, warn: Warn) -> bool | None:
    value = doc.get(key)
    if value is None or isinstance(value, bool):
        return value
    warn(f"{key}: expected true or false, got {describe(value)}")
    return None


def _provider(value: object, warn: Warn, where: str = "provider") -> Provider | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        warn(f"{where}: expected a mapping, got {describe(value)}")
        return None
    domain: str | None = None
    raw_domain = value.get("domain")
    if isinstance(raw_domain, str):
        try:
            domain = hostname(raw_domain)
        except InvalidURL as exc:
            warn(f"{where}.domain: {exc}: '{printable(redact(raw_domain), 80)}'")
    elif raw_domain is not None:
        warn(f"{where}.domain: expected a string, got {describe(raw_domain)}")
    raw_name = value.get("name")
    name = clean_line(raw_name) if isinstance(raw_name, str) else ""
    if raw_name is not None and not isinstance(raw_name, str):
        warn(f"{where}.name: expected a string, got {describe(raw_name)}")
    name = truncate(name, 200) or (domain or "")
    return Provider(name, domain) if name else None


def _images(value: object, where: str, warn: Warn) -> tuple[Image, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        warn(f"{where}: expected a list, got {describe(value)}")
        return ()
    images: list[Image] = []
    for index, item in enumerate(value[:MAX_IMAGES]):
        here = f"{where}[{index}]"
        if not isinstance(item, dict):
            warn(f"{here}: expected a mapping, got {describe(item)}")
            continue
        url = _url(item.get("url"), f"{here}.url", warn)
        if url is None:
            if item.get("url") is None:
                warn(f"{here}.url: missing")
            continue
        images.append(
            Image(
                url, _dimension(item, "width", here, warn), _dimension(item, "height", here, warn)
            )
        )
    return tuple(images)


def _dimension(item: Mapping[Any, Any], key: str, where: str, warn: Warn) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 100_000:
        warn(f"{where}.{key}: expected a positive integer, got {describe(value)}")
        return None
    return value


def _related(value: object, warn: Warn) -> tuple[Related, ...]:
    """The related articles: a title and a URL each, or the item is dropped with a warning;
    the other fields are read as the article's own are, a bad one costing only itself."""
    if value is None:
        return ()
    if not isinstance(value, list):
        warn(f"related: expected a list, got {describe(value)}")
        return ()
    if len(value) > MAX_RELATED:
        warn(f"related: {len(value)} articles, only the first {MAX_RELATED} are read")
    related: list[Related] = []
    for index, item in enumerate(value[:MAX_RELATED]):
        here = f"related[{index}]"
        if not isinstance(item, dict):
            warn(f"{here}: expected a mapping, got {describe(item)}")
            continue
        try:
            title = _title(item.get("title"), f"{here}.title")
        except _Rejected as exc:
            warn(str(exc))
            continue
        url = _url(item.get("originalUrl"), f"{here}.originalUrl", warn) or _url(
            item.get("webUrl"), f"{here}.webUrl", warn
        )
        if url is None:
            warn(f"{here}: no absolute http(s) URL in originalUrl or webUrl")
            continue
        related.append(
            Related(
                title,
                url,
                provider=_provider(item.get("provider"), warn, f"{here}.provider"),
                excerpt=_optional_text(item, "excerpt", MAX_EXCERPT_CHARS, warn, here),
                published=_optional_datetime(item, "publishedDateTime", warn, here),
                quality=_number(item, "quality", warn, (0, 100), here),
            )
        )
    return tuple(related)


def _optional_datetime(
    item: Mapping[Any, Any], key: str, warn: Warn, where: str
) -> datetime | None:
    value = item.get(key)
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except ValueError as exc:
        warn(f"{where}.{key}: {exc}")
        return None


def _language(value: object, warn: Warn) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        warn(f"language: expected a string, got {describe(value)}")
        return None
    try:
        return language_tag(value)
    except ValueError as exc:
        warn(f"language: {exc}: '{printable(value, 40)}'")
        return None
