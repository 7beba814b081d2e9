"""Configuration: one frozen, typed object, read once and passed in.

Values come from four layers, each overriding the one before:

    defaults  <  config file (YAML)  <  AGGREGATOR_<SECTION>__<KEY> env vars  <  CLI flags

Environment values are read as YAML scalars, so `AGGREGATOR_FEEDS__MAX_ENTRIES=20`
is a number and `AGGREGATOR_SEEDS__EXTENSIONS='[.md]'` a list. Every error
names the key, where the value came from, and the value itself.

The sections are msgspec structs: msgspec converts each setting to its type within its
bounds (`Annotated[int, Meta(ge=1)]`), one setting at a time so that one run reports
every problem, not only the first (`config_from`); a `Check` in a setting's annotation
adds the setting's own rule. (msgspec rather than pydantic: every command reads the
config before anything else, and pydantic took 0.1 s of every command's start to
import and to build its models; msgspec takes about 15 ms.)
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import os
import stat
import typing
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml
from msgspec import Meta, field

from aggregator import yamlsafe
from aggregator.defaults import (
    DEFAULT_DIGEST_DAYS,
    DEFAULT_DIGEST_SIZE,
    DEFAULT_DIGEST_TIMEZONE,
    DEFAULT_EXTENSIONS,
    DEFAULT_MAX_FILE_BYTES,
)
from aggregator.errors import ConfigError
from aggregator.formats import ATOM, FEED_FORMAT_NAMES
from aggregator.text import language_tag, printable
from aggregator.urls import InvalidURL, database_url_problem, hide_password, http_url, redact

ENV_PREFIX = "AGGREGATOR_"
ENV_CONFIG = "AGGREGATOR_CONFIG"
"""Names the config file when `--config` is not given."""

DEFAULT, FILE, ENVIRONMENT, FLAG = "default", "file", "environment", "flag"
"""Where a setting can come from, weakest first."""

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080/"
DEFAULT_MAX_ENTRIES = 50
DEFAULT_MAX_RELATED = 5
DEFAULT_STORY_WINDOW_DAYS = 3


@dataclass(frozen=True, slots=True)
class Check:
    """A setting's own rule beyond its type, given in its annotation
    (`Annotated[str, Check(rule)]`): `rule` returns the value to keep (maybe normalized)
    or raises `ValueError` saying what is wrong. With `before`, it sees the value as given,
    before it is converted to the setting's type (and only when the config is read)."""

    rule: Callable[[Any], Any]
    before: bool = False


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A section of the config: typed settings, each converted to its type within its
    bounds, and its own `Check` run, whenever a section is made (read from the settings
    given, `config_from`; made or copied in code; unpickled): `ValueError` naming the
    setting when one is wrong."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            try:
                kept = _setting(type(self), name, value, before=False)
            except (msgspec.ValidationError, ValueError) as exc:
                raise ValueError(f"{name}: {exc}") from None
            if kept is not value:
                msgspec.structs.force_setattr(self, name, kept)


def _dotted(value: tuple[str, ...]) -> tuple[str, ...]:
    exts = tuple(e.strip().lower() for e in value)
    bad = [e for e in exts if not e.startswith(".") or len(e) < 2 or "/" in e]
    if bad:
        raise ValueError(f"extensions look like '.md'; got {bad[0]!r}")
    return exts


class SeedsConfig(_Section, frozen=True):
    dir: Path = Path("seeds")
    extensions: Annotated[tuple[str, ...], Check(_dotted)] = DEFAULT_EXTENSIONS
    max_file_bytes: Annotated[int, Meta(gt=0)] = DEFAULT_MAX_FILE_BYTES


class OutputConfig(_Section, frozen=True):
    dir: Path = Path("public")
    gzip_sidecars: bool = False
    """Also write `<file>.gz` beside each file, for nginx's gzip_static."""


def _absolute(value: str | None) -> str | None:
    if value is None:
        return None
    url = _public_http_url(value)
    if "?" in url or "#" in url:
        raise ValueError("expected a URL without query or fragment")
    return url if url.endswith("/") else url + "/"


class SiteConfig(_Section, frozen=True):
    title: Annotated[str, Meta(min_length=1, max_length=200)] = "aggregator"
    public_url: Annotated[str | None, Check(_absolute)] = None
    """Where the output directory is served (self links, OPML, feed ids); None: the built-in
    server's own address, http://<server.host>:<server.port>/."""
    author: Annotated[str, Meta(min_length=1, max_length=200)] = "aggregator"
    language: Annotated[str, Check(language_tag)] = "en"
    """The language of the feeds and pages (a BCP 47 tag); a seed's `language` overrides it
    for its own entry."""

    @property
    def base_url(self) -> str:
        """`public_url` (which `Config` fills in from the server address when unset)."""
        return self.public_url or DEFAULT_PUBLIC_URL


if TYPE_CHECKING:
    FeedFormatName = str
else:  # the registry's names, so that an unknown one is refused by name
    FeedFormatName = Literal[FEED_FORMAT_NAMES]


def _with_atom(value: tuple[str, ...]) -> tuple[str, ...]:
    if ATOM not in value:
        raise ValueError("atom is always written: list it with the others")
    return tuple(dict.fromkeys(value))


class FeedsConfig(_Section, frozen=True):
    max_entries: Annotated[int, Meta(ge=1, le=1000)] = DEFAULT_MAX_ENTRIES
    min_quality: Annotated[float, Meta(ge=0, le=100)] = 0
    max_age_days: Annotated[int, Meta(ge=0)] = 0
    """0 keeps articles of any age."""
    require_published: bool = False
    max_related: Annotated[int, Meta(ge=0, le=20)] = DEFAULT_MAX_RELATED
    """At most stories.MAX_COVERAGE: what a story keeps."""
    formats: Annotated[tuple[FeedFormatName, ...], Check(_with_atom)] = (ATOM,)
    """Atom always; JSON Feed 1.1 and RSS 2.0 beside it on request."""
    archive: bool = False
    """Keep entries that leave a feed in RFC 5005 archive pages (feeds/<slug>/archive/<n>.atom)."""
    providers: bool = True
    """A feed per provider (feeds/providers/<domain>.atom), a page and an OPML file listing them."""


class TopicsConfig(_Section, frozen=True):
    aliases: dict[str, str] = field(default_factory=dict)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


class ScanConfig(_Section, frozen=True):
    interval: Annotated[float, Meta(gt=0, le=86400)] = 60
    """Seconds between rescans of the seed directory."""
    jitter: Annotated[float, Meta(ge=0, le=3600)] = 2
    """Up to this many seconds are added to each interval, at random."""
    watch: bool = False
    """Also rescan on file-system events, so a new seed is served within about a second."""


class ServerConfig(_Section, frozen=True):
    enabled: bool = True
    host: Annotated[str, Meta(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 8080
    cache_max_age: Annotated[int, Meta(ge=0)] | None = None
    """Cache-Control max-age of served files; default: the scan interval."""
    header_timeout: Annotated[float, Meta(gt=0, le=3600)] = 10
    """Seconds a client has to send a whole request head, from connecting or from the first
    byte of a following request; then its connection is closed."""
    keepalive_timeout: Annotated[float, Meta(gt=0, le=3600)] = 5
    """Seconds a connection may stay idle between two requests."""
    max_header_bytes: Annotated[int, Meta(ge=1024, le=1048576)] = 32768
    """Largest request head (request line and headers); a larger one gets 431."""
    max_connections: Annotated[int, Meta(ge=1)] | None = None
    """Client connections held at once; default: what the open-file limit allows. At the
    limit, a new connection closes the one idle longest."""


def _networks(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"not a network in CIDR form: {item!r}") from None
    return value


class LinksConfig(_Section, frozen=True):
    enabled: bool = True
    """Check the articles' URLs over HTTP from the service."""
    interval: Annotated[float, Meta(gt=0)] = 600
    """Seconds between link-check runs of the service."""
    budget: Annotated[int, Meta(ge=1)] = 2000
    """URLs checked per run at most (new ones first, then the most overdue)."""
    recheck_hours: Annotated[float, Meta(gt=0)] = 24
    dead_after: Annotated[int, Meta(ge=1, le=100)] = 3
    """Consecutive dead answers before a URL counts as dead ..."""
    dead_min_hours: Annotated[float, Meta(ge=0)] = 48
    """... spread over at least this many hours."""
    on_dead: Literal["fallback", "drop", "keep"] = "fallback"
    follow_permanent_redirects: bool = True
    concurrency: Annotated[int, Meta(ge=1, le=1024)] = 64
    per_host: Annotated[int, Meta(ge=1, le=64)] = 2
    host_interval: Annotated[float, Meta(ge=0)] = 1.0
    """Minimum seconds between two requests to one host."""
    connect_timeout: Annotated[float, Meta(gt=0)] = 5
    timeout: Annotated[float, Meta(gt=0)] = 15
    """Seconds one whole check (all redirects, the body read) may take."""
    max_body_bytes: Annotated[int, Meta(ge=0)] = 65536
    max_redirects: Annotated[int, Meta(ge=0, le=50)] = 10
    allowed_ports: tuple[int, ...] = (80, 443, 8080, 8443)
    allow_networks: Annotated[tuple[str, ...], Check(_networks)] = ()
    """CIDRs the checker may reach although they are not public (intranets, tests)."""
    proxy: str | None = None
    """An HTTP(S) proxy for every check; environment proxies are never used."""
    user_agent: str | None = None
    """Default: aggregator/<version> (feed link checker; +<site.public_url>)."""


class ThumbnailsConfig(_Section, frozen=True):
    enabled: bool = True
    """Fetch the first image of each article shown on a topic page and serve a small copy."""
    interval: Annotated[float, Meta(gt=0)] = 120
    """Seconds between two runs that fetch the images still missing a thumbnail."""
    width: Annotated[int, Meta(ge=32, le=1280)] = 320
    """Thumbnail width in pixels (height at most twice that)."""
    max_bytes: Annotated[int, Meta(ge=1024, le=16 * 1024 * 1024)] = 4 * 1024 * 1024
    """Larger images are not fetched."""
    budget: Annotated[int, Meta(ge=1)] = 200
    """Images fetched per run at most."""


def _zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
        raise ValueError(
            "not a time zone this system knows (an IANA name such as Europe/Berlin or UTC)"
        ) from None
    return value


class DigestsConfig(_Section, frozen=True):
    enabled: bool = False
    """Write `feeds/<slug>/daily.atom` beside each topic feed: one entry per closed day."""
    timezone: Annotated[str, Check(_zone)] = DEFAULT_DIGEST_TIMEZONE
    """The IANA time zone (`Europe/Berlin`) whose midnights close the days."""
    size: Annotated[int, Meta(ge=1, le=50)] = DEFAULT_DIGEST_SIZE
    """Stories in one day's digest at most."""
    days: Annotated[int, Meta(ge=1, le=366)] = DEFAULT_DIGEST_DAYS
    """Closed days a digest feed keeps."""

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The time zone of `timezone`."""
        return zoneinfo.ZoneInfo(self.timezone)


def _hub_url(value: str | None) -> str | None:
    return None if value is None else _public_http_url(value)


class WebSubConfig(_Section, frozen=True):
    hub: Annotated[str | None, Check(_hub_url)] = None
    """A WebSub hub: feeds name it, and changed feeds are announced to it."""
    retries: Annotated[int, Meta(ge=0, le=10)] = 3


def _public_http_url(value: str) -> str:
    """`value` as an absolute http(s) URL that may be published: these go out in every feed,
    page and OPML, and in the link checker's User-Agent, so a user name or password in
    them is refused (the error shows the URL without it)."""
    try:
        url = http_url(value)
    except InvalidURL as exc:
        raise ValueError(f"expected an absolute http(s) URL ({exc})") from None
    if "@" in urlsplit(url).netloc:
        raise ValueError(
            "a user name or password in this URL would be published in every feed and page; "
            "give the URL without it"
        )
    return url


class LoggingConfig(_Section, frozen=True):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


def _file_path(value: object) -> object:
    if isinstance(value, str) and "://" in value:  # before Path() folds the slashes
        raise ValueError("a URL is not a state file's path: state.url takes postgresql:// URLs")
    return value


def _database_url(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if "://" not in value:
        raise ValueError("a PostgreSQL URL looks like postgresql://user@host:5432/name")
    problem = database_url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class StateConfig(_Section, frozen=True):
    path: Annotated[Path, Check(_file_path, before=True)] = Path("state/aggregator.sqlite3")
    """The SQLite state file: the embedded default, for one instance."""
    url: Annotated[str | None, Check(_database_url)] = None
    """A PostgreSQL database (`postgresql://user@host:5432/aggregator`) instead of `path`:
    several instances can share it, one elected leader writing."""

    @property
    def location(self) -> Path | str:
        """Where the state is: the PostgreSQL URL when one is set, else the SQLite file."""
        return self.url if self.url is not None else self.path

    @property
    def lock_file(self) -> Path | None:
        """The state file a writer locks; None for PostgreSQL, which leadership guards."""
        return None if self.url is not None else self.path

    @property
    def shared(self) -> bool:
        """Whether the state is in PostgreSQL, where several instances may share it."""
        return self.url is not None


class ClusterConfig(_Section, frozen=True):
    """Several instances on one PostgreSQL state: one leader writes, followers mirror."""

    lease: Annotated[float, Meta(ge=1, le=300)] = 5
    """Seconds a leader that stopped answering keeps its leadership (the database drops
    its session after this); a follower takes over within about lease + retry."""
    retry: Annotated[float, Meta(gt=0, le=60)] = 1
    """Seconds between a follower's attempts to become the leader."""
    catch_up: Annotated[float, Meta(gt=0, le=300)] = 2
    """Seconds between a follower's catch-ups with the published documents, besides the
    notifications that bring them at once."""


class BuildConfig(_Section, frozen=True):
    workers: Annotated[int, Meta(ge=0, le=64)] = 0
    """Processes that parse seeds; 0 means one per CPU."""


class StoriesConfig(_Section, frozen=True):
    merge: bool = True
    """Seeds that tell the same story (one's URL among another's related articles) become
    one entry with the coverage of all (see `aggregator.stories`)."""
    window_days: Annotated[int, Meta(ge=0, le=60)] = DEFAULT_STORY_WINDOW_DAYS
    """Articles published further apart (in days) are never one story."""


class Config(_Section, frozen=True):
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    site: SiteConfig = field(default_factory=SiteConfig)
    feeds: FeedsConfig = field(default_factory=FeedsConfig)
    stories: StoriesConfig = field(default_factory=StoriesConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    state: StateConfig = field(default_factory=StateConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    links: LinksConfig = field(default_factory=LinksConfig)
    thumbnails: ThumbnailsConfig = field(default_factory=ThumbnailsConfig)
    websub: WebSubConfig = field(default_factory=WebSubConfig)
    digests: DigestsConfig = field(default_factory=DigestsConfig)

    def __post_init__(self) -> None:
        """Each section is of its type; an unset `site.public_url` is the built-in server's
        address (`ValueError` when that makes no URL). Whether the directories overlap is
        asked of the file system when the config is read (`config_from`), not here: a
        config sent to a worker process is made again there."""
        for name, kind in SECTIONS.items():
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"{name}: expected a {kind.__name__}")
        if self.site.public_url is None:
            url = _derived_url(self.server)
            site = msgspec.structs.replace(self.site, public_url=url)
            msgspec.structs.force_setattr(self, "site", site)

    @property
    def cache_max_age(self) -> int:
        """Seconds readers and proxies may cache a served file: the scan interval by default."""
        if self.server.cache_max_age is not None:
            return self.server.cache_max_age
        return max(1, round(self.scan.interval))


SECTIONS: dict[str, type[_Section]] = {
    name: hint for name, hint in typing.get_type_hints(Config).items()
}
"""The config's sections by name, in their order."""


@functools.cache
def _hints(section: type[_Section]) -> dict[str, Any]:
    """A section's settings by name: their types, with what `Annotated` adds to them."""
    return typing.get_type_hints(section, include_extras=True)


@functools.cache
def _checks(section: type[_Section]) -> dict[str, Check]:
    """A section's settings that have a `Check`, with it."""
    return {
        name: extra
        for name, hint in _hints(section).items()
        if typing.get_origin(hint) is Annotated
        for extra in hint.__metadata__
        if isinstance(extra, Check)
    }


def _decode(kind: type, value: object) -> object:
    """What msgspec cannot convert by itself: a path, given as text."""
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    raise ValueError(f"expected {kind.__name__.lower()}, got {type(value).__name__}")


def _encode(value: object) -> object:
    """What msgspec cannot write by itself: a path, as text (bytes of its name that are
    not UTF-8 as `\\xNN`)."""
    if isinstance(value, Path):
        return os.fsencode(value).decode("utf-8", "backslashreplace")
    raise NotImplementedError(f"cannot write {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class _Problem:
    """One thing wrong with the settings given: where, what, and the value given."""

    loc: tuple[str, ...]
    message: str
    given: object = None


def _setting(section: type[_Section], name: str, value: object, before: bool = True) -> object:
    """`value` as setting `name` of `section`, converted and checked (with `before`, also
    by the checks of the value as given); raises `msgspec.ValidationError` or `ValueError`
    saying what is wrong."""
    hint = _hints(section)[name]
    check = _checks(section).get(name)
    if before and check is not None and check.before:
        value = check.rule(value)
    converted = msgspec.convert(value, hint, strict=False, dec_hook=_decode)
    _sound(converted)
    if check is not None and not check.before:
        converted = check.rule(converted)
    return converted


LARGEST = 2**63 - 1
"""The largest whole number a setting takes (what the state's SQLite integers hold)."""


def _sound(value: object) -> None:
    """Raises `ValueError` for what msgspec lets through but the service cannot use: text
    that is not UTF-8 (bytes the environment could not decode), a whole number beyond 64
    bits. Paths are exempt: a file's name may be any bytes."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("not valid UTF-8 text") from None
    elif isinstance(value, int):
        if not -LARGEST <= value <= LARGEST:
            raise ValueError("a number out of range")
    elif isinstance(value, tuple | list):
        for item in value:
            _sound(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _sound(key)
            _sound(item)


def _derived_url(server: ServerConfig) -> str:
    """The built-in server's address, for an unset `site.public_url`; `ValueError` when the
    server's host makes no URL that may be published."""
    url = _setting(SiteConfig, "public_url", server_url(server.host, server.port))
    return typing.cast(str, url)


def _validate(data: Mapping[Any, Any]) -> tuple[Config | None, list[_Problem]]:
    """The config from merged settings, or every problem with them (one per setting)."""
    problems: list[_Problem] = []
    sections: dict[str, Any] = {}  # section name → its settings made
    for name, given in data.items():
        key = str(name)
        section = SECTIONS.get(key) if isinstance(name, str) else None
        if section is None:
            problems.append(_Problem((key,), "unknown key" + _suggestion((key,)), given))
            continue
        if not isinstance(given, dict):
            problems.append(_Problem((key,), "expected a mapping of settings", given))
            continue
        values: dict[str, object] = {}
        wrong = len(problems)
        for setting, value in given.items():
            loc = (key, str(setting))
            if not isinstance(setting, str) or setting not in _hints(section):
                problems.append(_Problem(loc, "unknown key" + _suggestion(loc), value))
                continue
            try:
                values[setting] = _setting(section, setting, value)
            except (msgspec.ValidationError, ValueError) as exc:
                message = _validation_message(exc, ".".join(loc), _hints(section)[setting])
                problems.append(_Problem(loc, message, value))
        if len(problems) == wrong:
            sections[key] = section(**values)
    # An unset site.public_url is the built-in server's address, checked as a setting of its
    # own (and reported with the others) when the site and server sections are sound.
    failed = {p.loc[0] for p in problems}
    site, server = sections.get("site", SiteConfig()), sections.get("server", ServerConfig())
    if site.public_url is None and not failed & {"site", "server"}:
        try:
            sections["site"] = msgspec.structs.replace(site, public_url=_derived_url(server))
        except (msgspec.ValidationError, ValueError) as exc:
            url = server_url(server.host, server.port)
            message = _validation_message(exc, "site.public_url", None)
            problems.append(_Problem(("site", "public_url"), message, url))
    if problems:
        return None, problems
    config = Config(**sections)
    try:
        _check_directories(config)
    except ValueError as exc:  # a rule across sections
        return None, [_Problem((), str(exc))]
    return config, []


def _validation_message(exc: Exception, key: str, hint: object) -> str:
    """What is wrong with a setting's value: a check's message, or msgspec's, naming the
    setting where it says `$` (the value given), and the values a setting of a few allowed
    ones allows."""
    message = str(exc).replace("`$", f"`{key}")
    choices = _choices(hint)
    if choices and message.startswith("Invalid enum value"):
        message += "; expected one of " + ", ".join(map(repr, choices))
    return message


def _choices(hint: object) -> tuple[object, ...]:
    """The values a `Literal` allows, in `hint` or in what it holds (a tuple of them)."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    for inner in typing.get_args(hint):
        if choices := _choices(inner):
            return choices
    return ()


def config_from(data: Mapping[str, Any]) -> Config:
    """The config of these settings (section → setting → value, as in a config file).
    Raises `ConfigError` with every problem found."""
    config, problems = _validate(data)
    if config is None:
        lines = tuple(_line(p, {}, None) for p in problems)
        raise ConfigError("; ".join(lines), lines)
    return config


def config_json(config: Config) -> str:
    """The whole config as JSON text (every setting, defaults included)."""
    return msgspec.json.encode(config, enc_hook=_encode).decode()


def server_url(host: str, port: object) -> str:
    """The URL a client on this machine reaches the built-in server at."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - listening everywhere: ask locally
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _check_directories(config: Config) -> None:
    """The output directory is served: it must not hold, or sit inside, seeds or state."""
    seeds = _resolved(config.seeds.dir, "seeds.dir")
    out = _resolved(config.output.dir, "output.dir")
    state = _resolved(config.state.path, "state.path")
    if config.state.url is not None:
        state = seeds  # the state is not in a file
    if out == seeds or out.is_relative_to(seeds) or seeds.is_relative_to(out):
        raise ValueError(
            f"output.dir ({_shown(config.output.dir)}) and seeds.dir ({_shown(config.seeds.dir)}) "
            "overlap: "
            "the output is served, and seeds must not be"
        )
    if config.state.url is None and state.is_relative_to(out):
        raise ValueError(
            f"state.path ({_shown(config.state.path)}) is inside output.dir "
            f"({_shown(config.output.dir)}), "
            "which is served"
        )


def _resolved(path: Path, key: str) -> Path:
    """`path` made absolute, its symbolic links followed; `ValueError` naming `key` when
    that cannot be done (a loop of links, a name the system refuses)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError, ValueError) as exc:  # RuntimeError: a loop of links
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"{key} ({_shown(path)}): cannot be resolved: {reason}") from None


def _shown(path: Path) -> str:
    """A path as one line of a message."""
    return printable(str(path), 80)


def load_config(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read the config file (if any), apply env vars and `overrides` ("section.key": value)."""
    return explain_config(path, overrides=overrides, environ=environ).config


@dataclass(frozen=True)
class Explained:
    """The effective config and where each setting came from (what `config show` prints)."""

    config: Config
    file: Path | None
    """The config file read, if any."""
    file_from_environ: bool
    """Whether $AGGREGATOR_CONFIG named the file (no `--config`)."""
    sources: Mapping[str, str]
    """"section.key" → "file", "environment" or "flag"; every other key is a default."""


def explain_config(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Explained:
    """`load_config`, also saying where each setting came from.

    Raises `ConfigError` with every problem found (its `problems`, one line each).
    """
    environ = os.environ if environ is None else environ
    from_environ = path is None and bool(environ.get(ENV_CONFIG))
    if from_environ:
        path = Path(environ[ENV_CONFIG])
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        layers.append((FILE, _read_file(path)))
    layers.append((ENVIRONMENT, _from_environ(environ)))
    flags: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, key = dotted.split(".", 1)
            flags.setdefault(section, {})[key] = value
    layers.append((FLAG, flags))

    merged: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name, layer in layers:
        _merge(merged, layer, origin, name)
    misnamed = _misnamed_settings(environ)
    config, wrong = _validate(merged)
    if config is None:
        problems = (*(_line(problem, origin, path) for problem in wrong), *misnamed)
        raise ConfigError("; ".join(problems), problems)
    if misnamed:
        raise ConfigError("; ".join(misnamed), tuple(misnamed))
    sources = {".".join(loc): kind for loc, kind in origin.items() if len(loc) == 2}
    site = merged.get("site")
    if not isinstance(site, dict) or site.get("public_url") is None:
        sources.pop("site.public_url", None)  # null: derived from the server address
    return Explained(config, path, from_environ, sources)


MAX_CONFIG_BYTES = 1024 * 1024
"""A config file is a few KiB; anything this large is not one."""


def _read_file(path: Path) -> dict[str, Any]:
    """The mapping in a config file. An empty file (or one of comments only) is an error:
    taken as "all defaults", it would move a running service to ./seeds on reload."""
    try:
        text = _read_regular_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read the config file ({reason})") from None
    try:
        data = yamlsafe.load(text)
    except yamlsafe.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # an integer of more than 4300 digits
        raise ConfigError(
            f"{path}: not valid YAML: a value that cannot be read ({printable(str(exc))})"
        ) from None
    if data is None:
        raise ConfigError(
            f"{path}: the config file is empty (no settings); write the settings in it, "
            "or `{}` for all defaults"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def _read_regular_file(path: Path) -> str:
    """The text of `path`, which must be a regular file: a FIFO, a device or a directory is
    refused before it is opened, and the open never blocks (the file could be swapped
    for a FIFO in between), so a reload can never hang on the config file."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ConfigError(f"{path}: the config file is not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{path}: the config file is not a regular file")
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the config file is larger than {MAX_CONFIG_BYTES} bytes")
    return data.decode("utf-8")


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue  # `_misnamed_settings` looks at these
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        try:
            value = yamlsafe.load(raw)
        except (yamlsafe.YAMLError, RecursionError, ValueError, OverflowError):
            value = raw  # as text: the setting's own check says what is wrong with it
        data.setdefault(section, {})[key] = raw if value is None else value
    return data


def _misnamed_settings(environ: Mapping[str, str]) -> list[str]:
    """One line per `AGGREGATOR_*` variable meant as a setting but not named as one (pure).

    Settings are `AGGREGATOR_<SECTION>__<KEY>`; `AGGREGATOR_SCAN_INTERVAL` (one underscore)
    would otherwise be ignored without a word. A variable whose first word is not, and does
    not resemble, a section is left alone: the project's own `AGGREGATOR_CONFIG`, and
    others a deployment or test run may set.
    """
    settings = {
        f"{section}_{key}": f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
        for section, kind in SECTIONS.items()
        for key in kind.__struct_fields__
    }
    lines = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or "__" in name or name == ENV_CONFIG:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        first = rest.partition("_")[0]
        if not difflib.get_close_matches(first, list(SECTIONS), n=1, cutoff=0.75):
            continue
        close = difflib.get_close_matches(rest, list(settings), n=1, cutoff=0.8)
        hint = f"; did you mean {settings[close[0]]}?" if close else ""
        lines.append(
            f"{name}: not a setting (settings are {ENV_PREFIX}<SECTION>__<KEY>, "
            f"two underscores between section and key){hint}"
        )
    return lines


def _merge(
    into: dict[str, Any], layer: Mapping[str, Any], origin: dict[tuple[str, ...], str], name: str
) -> None:
    """Overlay `layer` on `into`, section by section, remembering where each key came from."""
    for section, values in layer.items():
        if not isinstance(values, dict):
            into[section] = values
            origin[(str(section),)] = name
            continue
        origin[(str(section),)] = name
        target = into.get(section)
        if not isinstance(target, dict):
            target = into[section] = {}
        for key, value in values.items():
            target[key] = value
            origin[(str(section), str(key))] = name


def _line(problem: _Problem, origin: Mapping[tuple[str, ...], str], path: Path | None) -> str:
    """A problem as one line: where the value came from, the key, what is wrong, the value."""
    loc = problem.loc
    if not loc:  # a rule across sections
        return problem.message
    key = ".".join(loc)
    source = next((origin[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origin), DEFAULT)
    if source == FILE:
        source = str(path)
    elif source == ENVIRONMENT:
        source = ENV_PREFIX + "__".join(loc[:2]).upper()
    elif source == FLAG:
        source = "command line"
    given = problem.given
    if isinstance(given, str) and "//" in given:
        given = hide_password(redact(given))  # never echo a password given in a URL
    try:
        shown = printable(repr(given), 80)
    except RecursionError:
        shown = "a value nested too deeply to show"
    except ValueError:  # an integer of more than 4,300 digits
        shown = "a number too long to show"
    return f"{source}: {key}: {problem.message} (got {shown})"


def _suggestion(loc: tuple[str, ...]) -> str:
    """ "; did you mean scan.interval?" for an unknown key that resembles a known one (pure)."""
    if len(loc) == 1:
        close = difflib.get_close_matches(loc[0].lower(), list(SECTIONS), n=1, cutoff=0.6)
        return f"; did you mean {close[0]}?" if close else ""
    section, key = loc[0], loc[1].lower()
    close = difflib.get_close_matches(
        key, list(SECTIONS[section].__struct_fields__), n=1, cutoff=0.6
    )
    if close:
        return f"; did you mean {section}.{close[0]}?"
    for other, kind in SECTIONS.items():  # the right key in the wrong section
        if key in kind.__struct_fields__:
            return f"; did you mean {other}.{key}?"
    return ""


def settings_lines(explained: Explained, flag_names: Mapping[str, str] | None = None) -> list[str]:
    """The effective settings as YAML, each key with a comment saying where it came from.

    `flag_names` maps "section.key" to the command-line flag that sets it, to name it.
    The lines parse as a config file with the same settings (pure).
    """
    flag_names = flag_names or {}
    if explained.file is None:
        file = "none (built-in defaults)"
    else:
        how = " (named by $" + ENV_CONFIG + ")" if explained.file_from_environ else ""
        file = f"{explained.file}{how}"
    lines = [
        "# effective settings; later sources win: default < file < environment < flag",
        f"# config file: {file}",
    ]
    every = msgspec.to_builtins(explained.config, enc_hook=_encode)
    for section, values in every.items():
        lines.append(f"{section}:")
        for key, value in values.items():
            dotted = f"{section}.{key}"
            source = explained.sources.get(dotted, DEFAULT)
            if source == ENVIRONMENT:
                source += f" {ENV_PREFIX}{section.upper()}__{key.upper()}"
            elif source == FLAG and dotted in flag_names:
                source += f" {flag_names[dotted]}"
            elif dotted == "site.public_url" and source == DEFAULT:
                source += " (from server.host and server.port)"
            if dotted == "state.url" and isinstance(value, str):
                value = hide_password(value)
            setting = f"  {key}: {_flow(value)}"
            lines.append(f"{setting.ljust(40)}  # {source}")
    return lines


def _flow(value: Any) -> str:
    """A value as one line of YAML (flow style)."""
    text = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=1 << 30)
    return text.strip()[1:-1]
