"""Configuration: one frozen, typed object, read once and passed in.

Values come from four layers, each overriding the one before:

    defaults  <  config file (YAML)  <  AGGREGATOR_<SECTION>__<KEY> env vars  <  CLI flags

Environment values are read as YAML scalars, so `AGGREGATOR_FEEDS__MAX_ENTRIES=20`
is a number and `AGGREGATOR_SEEDS__EXTENSIONS='[.md]'` a list. Every error
names the key, where the value came from, and the value itself.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import stat
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SeedsConfig(_Section):
    dir: Path = Path("seeds")
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    max_file_bytes: int = Field(DEFAULT_MAX_FILE_BYTES, gt=0)

    @field_validator("extensions")
    @classmethod
    def _dotted(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        exts = tuple(e.strip().lower() for e in value)
        bad = [e for e in exts if not e.startswith(".") or len(e) < 2 or "/" in e]
        if bad:
            raise ValueError(f"extensions look like '.md'; got {bad[0]!r}")
        return exts


class OutputConfig(_Section):
    dir: Path = Path("public")
    gzip_sidecars: bool = False
    """Also write `<file>.gz` beside each file, for nginx's gzip_static."""


class SiteConfig(_Section):
    title: str = Field("aggregator", min_length=1, max_length=200)
    public_url: str | None = None
    """Where the output directory is served (self links, OPML, feed ids); None: the built-in
    server's own address, http://<server.host>:<server.port>/."""
    author: str = Field("aggregator", min_length=1, max_length=200)
    language: str = "en"
    """The language of the feeds and pages (a BCP 47 tag); a seed's `language` overrides it
    for its own entry."""

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return language_tag(value)

    @field_validator("public_url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = _public_http_url(value)
        if "?" in url or "#" in url:
            raise ValueError("expected a URL without query or fragment")
        return url if url.endswith("/") else url + "/"

    @property
    def base_url(self) -> str:
        """`public_url` (which `Config` fills in from the server address when unset)."""
        return self.public_url or DEFAULT_PUBLIC_URL


if TYPE_CHECKING:
    FeedFormatName = str
else:  # the registry's names, so that an unknown one is refused by name
    FeedFormatName = Literal[FEED_FORMAT_NAMES]


class FeedsConfig(_Section):
    max_entries: int = Field(DEFAULT_MAX_ENTRIES, ge=1, le=1000)
    min_quality: float = Field(0, ge=0, le=100)
    max_age_days: int = Field(0, ge=0)
    """0 keeps articles of any age."""
    require_published: bool = False
    max_related: int = Field(
        DEFAULT_MAX_RELATED, ge=0, le=20
    )  # stories.MAX_COVERAGE: what a story keeps
    formats: tuple[FeedFormatName, ...] = (ATOM,)
    """Atom always; JSON Feed 1.1 and RSS 2.0 beside it on request."""
    archive: bool = False
    """Keep entries that leave a feed in RFC 5005 archive pages (feeds/<slug>/archive/<n>.atom)."""
    providers: bool = True
    """A feed per provider (feeds/providers/<domain>.atom), a page and an OPML file listing them."""

    @field_validator("formats")
    @classmethod
    def _with_atom(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if ATOM not in value:
            raise ValueError("atom is always written: list it with the others")
        return tuple(dict.fromkeys(value))


class TopicsConfig(_Section):
    aliases: dict[str, str] = Field(default_factory=dict)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


class ScanConfig(_Section):
    interval: float = Field(60, gt=0, le=86400)
    """Seconds between rescans of the seed directory."""
    jitter: float = Field(2, ge=0, le=3600)
    """Up to this many seconds are added to each interval, at random."""
    watch: bool = False
    """Also rescan on file-system events, so a new seed is served within about a second."""


class ServerConfig(_Section):
    enabled: bool = True
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8080, ge=1, le=65535)
    cache_max_age: int | None = Field(None, ge=0)
    """Cache-Control max-age of served files; default: the scan interval."""
    header_timeout: float = Field(10, gt=0, le=3600)
    """Seconds a client has to send a whole request head, from connecting or from the first
    byte of a following request; then its connection is closed."""
    keepalive_timeout: float = Field(5, gt=0, le=3600)
    """Seconds a connection may stay idle between two requests."""
    max_header_bytes: int = Field(32768, ge=1024, le=1048576)
    """Largest request head (request line and headers); a larger one gets 431."""
    max_connections: int | None = Field(None, ge=1)
    """Client connections held at once; default: what the open-file limit allows. At the
    limit, a new connection closes the one idle longest."""


class LinksConfig(_Section):
    enabled: bool = True
    """Check the articles' URLs over HTTP from the service."""
    interval: float = Field(600, gt=0)
    """Seconds between link-check runs of the service."""
    budget: int = Field(2000, ge=1)
    """URLs checked per run at most (new ones first, then the most overdue)."""
    recheck_hours: float = Field(24, gt=0)
    dead_after: int = Field(3, ge=1, le=100)
    """Consecutive dead answers before a URL counts as dead ..."""
    dead_min_hours: float = Field(48, ge=0)
    """... spread over at least this many hours."""
    on_dead: Literal["fallback", "drop", "keep"] = "fallback"
    follow_permanent_redirects: bool = True
    concurrency: int = Field(64, ge=1, le=1024)
    per_host: int = Field(2, ge=1, le=64)
    host_interval: float = Field(1.0, ge=0)
    """Minimum seconds between two requests to one host."""
    connect_timeout: float = Field(5, gt=0)
    timeout: float = Field(15, gt=0)
    """Seconds one whole check (all redirects, the body read) may take."""
    max_body_bytes: int = Field(65536, ge=0)
    max_redirects: int = Field(10, ge=0, le=50)
    allowed_ports: tuple[int, ...] = (80, 443, 8080, 8443)
    allow_networks: tuple[str, ...] = ()
    """CIDRs the checker may reach although they are not public (intranets, tests)."""
    proxy: str | None = None
    """An HTTP(S) proxy for every check; environment proxies are never used."""
    user_agent: str | None = None
    """Default: aggregator/<version> (feed link checker; +<site.public_url>)."""

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"not a network in CIDR form: {item!r}") from None
        return value


class ThumbnailsConfig(_Section):
    enabled: bool = True
    """Fetch the first image of each article shown on a topic page and serve a small copy."""
    interval: float = Field(120, gt=0)
    """Seconds between two runs that fetch the images still missing a thumbnail."""
    width: int = Field(320, ge=32, le=1280)
    """Thumbnail width in pixels (height at most twice that)."""
    max_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Larger images are not fetched."""
    budget: int = Field(200, ge=1)
    """Images fetched per run at most."""


class DigestsConfig(_Section):
    enabled: bool = False
    """Write `feeds/<slug>/daily.atom` beside each topic feed: one entry per closed day."""
    timezone: str = DEFAULT_DIGEST_TIMEZONE
    """The IANA time zone (`Europe/Berlin`) whose midnights close the days."""
    size: int = Field(DEFAULT_DIGEST_SIZE, ge=1, le=50)
    """Stories in one day's digest at most."""
    days: int = Field(DEFAULT_DIGEST_DAYS, ge=1, le=366)
    """Closed days a digest feed keeps."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "not a time zone this system knows (an IANA name such as Europe/Berlin or UTC)"
            ) from None
        return value

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The time zone of `timezone`."""
        return zoneinfo.ZoneInfo(self.timezone)


class WebSubConfig(_Section):
    hub: str | None = None
    """A WebSub hub: feeds name it, and changed feeds are announced to it."""
    retries: int = Field(3, ge=0, le=10)

    @field_validator("hub")
    @classmethod
    def _hub_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _public_http_url(value)


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


class LoggingConfig(_Section):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


class StateConfig(_Section):
    path: Path = Path("state/aggregator.sqlite3")
    """The SQLite state file: the embedded default, for one instance."""
    url: str | None = None
    """A PostgreSQL database (`postgresql://user@host:5432/aggregator`) instead of `path`:
    several instances can share it, one elected leader writing."""

    @field_validator("path", mode="before")
    @classmethod
    def _file_path(cls, value: object) -> object:
        if "://" in str(value):  # before Path() folds the slashes
            raise ValueError("a URL is not a state file's path: state.url takes postgresql:// URLs")
        return value

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if "://" not in value:
            raise ValueError("a PostgreSQL URL looks like postgresql://user@host:5432/name")
        problem = database_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

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


class ClusterConfig(_Section):
    """Several instances on one PostgreSQL state: one leader writes, followers mirror."""

    lease: float = Field(5, ge=1, le=300)
    """Seconds a leader that stopped answering keeps its leadership (the database drops
    its session after this); a follower takes over within about lease + retry."""
    retry: float = Field(1, gt=0, le=60)
    """Seconds between a follower's attempts to become the leader."""
    catch_up: float = Field(2, gt=0, le=300)
    """Seconds between a follower's catch-ups with the published documents, besides the
    notifications that bring them at once."""


class BuildConfig(_Section):
    workers: int = Field(0, ge=0, le=64)
    """Processes that parse seeds; 0 means one per CPU."""


class StoriesConfig(_Section):
    merge: bool = True
    """Seeds that tell the same story (one's URL among another's related articles) become
    one entry with the coverage of all (see `aggregator.stories`)."""
    window_days: int = Field(DEFAULT_STORY_WINDOW_DAYS, ge=0, le=60)
    """Articles published further apart (in days) are never one story."""


class Config(_Section):
    seeds: SeedsConfig = SeedsConfig()
    output: OutputConfig = OutputConfig()
    site: SiteConfig = SiteConfig()
    feeds: FeedsConfig = FeedsConfig()
    stories: StoriesConfig = StoriesConfig()
    topics: TopicsConfig = TopicsConfig()
    state: StateConfig = StateConfig()
    cluster: ClusterConfig = ClusterConfig()
    build: BuildConfig = BuildConfig()
    scan: ScanConfig = ScanConfig()
    server: ServerConfig = ServerConfig()
    logging: LoggingConfig = LoggingConfig()
    links: LinksConfig = LinksConfig()
    thumbnails: ThumbnailsConfig = ThumbnailsConfig()
    websub: WebSubConfig = WebSubConfig()
    digests: DigestsConfig = DigestsConfig()

    @model_validator(mode="before")
    @classmethod
    def _public_url_from_server(cls, data: Any) -> Any:
        """An unset `site.public_url` is the built-in server's address."""
        if not isinstance(data, dict):
            return data
        site, server = data.get("site"), data.get("server")
        site = site if isinstance(site, dict) else {}
        if site.get("public_url") is not None or (
            "site" in data and not isinstance(data["site"], dict)
        ):
            return data
        server = server if isinstance(server, dict) else {}
        port = _port_number(server.get("port", 8080))
        if port is None:  # server.port's own error says what is wrong; derive nothing from it
            return data
        url = server_url(str(server.get("host", "127.0.0.1")), port)
        return {**data, "site": {**site, "public_url": url}}

    @model_validator(mode="after")
    def _separate_directories(self) -> Config:
        _check_directories(self)
        return self

    @property
    def cache_max_age(self) -> int:
        """Seconds readers and proxies may cache a served file: the scan interval by default."""
        if self.server.cache_max_age is not None:
            return self.server.cache_max_age
        return max(1, round(self.scan.interval))


def _port_number(value: object) -> int | None:
    """`value` as a TCP port a server can listen on, or None (pure)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        port = int(value)
    except ValueError:
        return None
    return port if 1 <= port <= 65535 else None


def server_url(host: str, port: object) -> str:
    """The URL a client on this machine reaches the built-in server at."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - listening everywhere: ask locally
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _check_directories(config: Config) -> None:
    """The output directory is served: it must not hold, or sit inside, seeds or state."""
    seeds = config.seeds.dir.resolve()
    out = config.output.dir.resolve()
    state = config.state.path.resolve()
    if config.state.url is not None:
        state = seeds  # the state is not in a file
    if out == seeds or out.is_relative_to(seeds) or seeds.is_relative_to(out):
        raise ValueError(
            f"output.dir ({config.output.dir}) and seeds.dir ({config.seeds.dir}) overlap: "
            "the output is served, and seeds must not be"
        )
    if config.state.url is None and state.is_relative_to(out):
        raise ValueError(
            f"state.path ({config.state.path}) is inside output.dir ({config.output.dir}), "
            "which is served"
        )


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
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        problems = (*_describe(exc, origin, path), *misnamed)
        raise ConfigError("; ".join(problems), problems) from None
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
        for section, field in Config.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        for key in field.annotation.model_fields
    }
    lines = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or "__" in name or name == ENV_CONFIG:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        first = rest.partition("_")[0]
        if not difflib.get_close_matches(first, list(Config.model_fields), n=1, cutoff=0.75):
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


def _describe(
    exc: ValidationError, origin: Mapping[tuple[str, ...], str], path: Path | None
) -> tuple[str, ...]:
    """One line per error: where the value came from, the key, what is wrong, the value."""
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        if not loc:  # a rule across sections
            lines.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        key = ".".join(loc)
        source = next(
            (origin[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origin), "default"
        )
        if source == FILE:
            source = str(path)
        elif source == ENVIRONMENT:
            source = ENV_PREFIX + "__".join(loc[:2]).upper()
        elif source == FLAG:
            source = "command line"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _suggestion(loc)
        given = error.get("input")
        if isinstance(given, str) and "//" in given:
            given = hide_password(redact(given))  # never echo a password given in a URL
        value = printable(repr(given), 80)
        lines.append(f"{source}: {key}: {message} (got {value})")
    return tuple(lines)


def _suggestion(loc: tuple[str, ...]) -> str:
    """ "; did you mean scan.interval?" for an unknown key that resembles a known one (pure)."""
    *parents, key = loc
    model: type[BaseModel] = Config
    for part in parents:
        field = model.model_fields.get(part)
        inner = field.annotation if field is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return ""
        model = inner
    close = difflib.get_close_matches(key.lower(), list(model.model_fields), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {'.'.join([*parents, close[0]])}?"
    if model is not Config and len(parents) == 1:  # the right key in the wrong section
        for section, field in Config.model_fields.items():
            inner = field.annotation
            keys = (
                inner.model_fields
                if isinstance(inner, type) and issubclass(inner, BaseModel)
                else {}
            )
            if key.lower() in keys:
                return f"; did you mean {section}.{key.lower()}?"
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
    for section, values in explained.config.model_dump(mode="json").items():
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
