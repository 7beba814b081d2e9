"""URLs from seeds: which ones may become links, and the identity of an article.

Pure functions. A link in a feed is only ever an absolute http(s) URL with a
host; `javascript:`, `data:`, relative and malformed URLs are refused here,
once, so no renderer has to think about them.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aggregator.text import strip_invalid_xml

MAX_URL_LENGTH = 4096
_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f<>\"\\^`{|}]")
# The common shape, checked without a full parse: scheme, a plain host name, an
# optional port, then only characters that need no escaping in XML attributes.
_PLAIN = re.compile(
    r"https?://[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::(?P<port>[0-9]{1,5}))?"
    r"(?:[/?#][^\x00-\x20\x7f-\x9f<>\"\\^`{|}]*)?",
    re.IGNORECASE,
)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$"
)


class InvalidURL(ValueError):
    """The text is not an absolute http(s) URL that may be linked to."""


def http_url(value: str) -> str:
    """Return `value`, trimmed, when it is an absolute http(s) URL; raise otherwise."""
    url = value.strip()
    if strip_invalid_xml(url) != url:
        raise InvalidURL("URL contains characters XML forbids")
    plain = _PLAIN.fullmatch(url)
    if plain and len(url) <= MAX_URL_LENGTH and 0 < int(plain["port"] or 80) < 65536:
        return url
    if not url:
        raise InvalidURL("empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"URL is {len(url)} characters, over {MAX_URL_LENGTH}")
    if _FORBIDDEN.search(url):
        raise InvalidURL("URL contains white space, control or unsafe characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"malformed URL ({exc})") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise InvalidURL("not an absolute http(s) URL")
    host = parts.hostname
    if not host:
        raise InvalidURL("URL has no host")
    if port == 0:
        raise InvalidURL("URL has port 0")
    return url


_USERINFO = re.compile(r"(?:(?<=//)|^)[^/?#\s]*@")


def without_userinfo(url: str) -> str:
    """`url` (already an `http_url`) without a `user:password@` part.

    Seeds are published: a user name and password in an article URL would go
    out verbatim in every feed, page and log, so they are dropped on reading
    (`parse` warns, naming the seed file).
    """
    if "@" not in url:  # nowhere, so not in the host part either
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def redact(text: str) -> str:
    """`text` (a URL, perhaps malformed, or a host name) with anything like `user:password@`
    after `//` or at the start removed: for messages about URLs and hosts that could not
    be read (`carol:pw@prov.example` given as a domain must not reach logs or state)."""
    return _USERINFO.sub("", text)


_PASSWORD_PARAM = re.compile(r"((?:^|[?&;])password=)[^&;#]*", re.IGNORECASE)


def hide_password(url: str) -> str:
    """`url` with its password (if any, after the user or as a `password=` parameter)
    replaced by `***`, the user kept: how a database URL is shown in messages and
    `config show` (pure)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return _PASSWORD_PARAM.sub(r"\1***", redact(url))
    if password is not None:
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{user}:***@{host}")
    # libpq also takes it as a parameter: postgresql://host/db?password=…
    query = _PASSWORD_PARAM.sub(r"\1***", parts.query)
    if password is None and query == parts.query:
        return url
    return urlunsplit(parts._replace(query=query))


def database_url_problem(location: str) -> str | None:
    """Why `location` (a state: a file path or a PostgreSQL URL) cannot be used as given, or
    None (pure): another scheme than `postgresql://`/`postgres://` (which would otherwise be
    taken for a file path), a port that is not a number, no database name (libpq would
    pick one from the user's name, or the environment)."""
    if "://" not in location:
        return None
    scheme = location.split("://", 1)[0]
    if scheme.lower() not in ("postgresql", "postgres"):
        return f"{scheme}:// is not a state this can use: a file path or postgresql://… is"
    if scheme != scheme.lower():
        return f"write the scheme in lower case: {scheme.lower()}://"
    try:
        parts = urlsplit(location)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError as exc:
        return f"not a usable URL ({exc})"
    named = parts.path.strip("/") or any(
        key.lower() == "dbname" and value for key, value in parse_qsl(parts.query)
    )
    if not named:
        return "names no database: postgresql://user@host:5432/<database>"
    return None


def normalize_url(url: str) -> str:
    """The form of an article URL that decides its identity.

    Lower-case scheme and host, no default port, no fragment, no `utm_*`
    tracking parameters, and `/` for an empty path. The rules are part of the
    entry ids readers have stored: change them and every entry is new again.
    """
    if _NORMAL_URL.match(url) is not None and "utm_" not in url:
        return url  # the common case, in that form already
    return _normalized(url)


def _normalized(url: str) -> str:
    """`normalize_url`, taking the URL apart."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    query = parts.query
    if "utm_" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, v) for k, v in pairs if not k.lower().startswith("utm_")])
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


_URL_CHARS = r"A-Za-z0-9\-._~!$&'()*+,;=:@%/"
_NORMAL_URL = re.compile(rf"https?://[a-z0-9][a-z0-9.\-]*/[{_URL_CHARS}]*(?:\?[{_URL_CHARS}?]+)?\Z")
"""A URL that `normalize_url` leaves as it is (if it holds no `utm_`): lower-case http(s)
scheme and host name, no port, user or fragment, a path, and a query that is not empty."""
_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


@lru_cache(maxsize=8192)
def entry_id(url: str) -> str:
    """The Atom id of the article at `url`: a name-based UUID of its normalized form.

    `uuid.uuid5(uuid.NAMESPACE_URL, normalize_url(url))`, made from the same SHA-1 without
    building a `UUID` object; cached, as an article's id is asked for again by its
    record, its story and every seed that names it."""
    name = _URL_NAMESPACE + normalize_url(url).encode()
    digest = bytearray(hashlib.sha1(name).digest())  # noqa: S324 - UUID version 5 is SHA-1
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = digest[:16].hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_PLAIN_ORIGIN = re.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*)://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?(?:[/?#]|\Z)"
)
"""A URL whose host part is a plain name, perhaps with a port (no user, brackets or
escapes): its scheme, name and port."""


def host_of(url: str) -> str:
    """The lower-case host name of `url`, without brackets ("" when it has none): the key
    of per-host state (pauses, connections). Raises ValueError for a malformed URL.

    What `urlsplit(url).hostname` gives; a URL with a plain host is not split for it."""
    plain = _PLAIN_ORIGIN.match(url)
    if plain is not None:
        return plain[2].lower()
    return (urlsplit(url).hostname or "").lower()


def origin_of(url: str) -> tuple[str, str, int | None]:
    """The lower-case scheme and host name and the port of `url` ("" and None where it
    has none). Raises ValueError for a malformed URL or port.

    What `urlsplit(url)` gives (`scheme`, `hostname`, `port`); a URL with a plain host
    is not split for it."""
    plain = _PLAIN_ORIGIN.match(url)
    if plain is not None:
        scheme, host, digits = plain.groups()
        port = None if digits is None else int(digits)
        if port is None or port <= 65535:
            return scheme.lower(), host.lower(), port
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


def hostname(value: str) -> str:
    """Return `value` as a lower-case ASCII host name (IDNA for unicode); raise otherwise."""
    name = value.strip().lower().rstrip(".")
    if name.isascii():  # IDNA leaves ASCII as it is (what it refuses, the pattern does too)
        ascii_name = name
    else:
        try:
            ascii_name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURL("not a valid host name") from None
    if not _HOSTNAME.match(ascii_name) or "." not in ascii_name:
        raise InvalidURL("not a valid host name")
    return ascii_name
