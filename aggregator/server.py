"""Serving the output directory over HTTP: an ASGI app, run by uvicorn.

uvicorn stays inside this module. The app serves only regular files below
the output directory, from memory: each file is read (and gzipped) once per
version, and a `stat` per request tells when a version is new, so answers
cost no disk reads and conditional requests cost next to nothing.

    GET/HEAD /            index.html
    GET/HEAD /<path>      a file of the output directory (no listings)
    GET      /healthz     JSON status; 503 until a scan succeeded, or after one failed
    GET      /metrics     Prometheus text format
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import stat
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import uvicorn

from aggregator.metrics import Metrics
from aggregator.render import archive_page, archive_path

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONTENT_TYPES = {
    ".atom": "application/atom+xml; charset=utf-8",
    ".rss": "application/rss+xml; charset=utf-8",
    ".json": "application/feed+json; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".xsl": "text/xsl; charset=utf-8",
}
_COMPRESSIBLE = {".atom", ".rss", ".json", ".opml", ".html", ".xml", ".css", ".txt", ".svg", ".xsl"}
_FOR_BROWSERS = {
    ".atom": "application/xml; charset=utf-8",
    ".rss": "application/xml; charset=utf-8",
}
"""What a feed is sent as to a browser opening it: Chromium shows `application/atom+xml` and
`application/rss+xml` as plain text, but styles XML with the stylesheet the feed names."""
_MAX_FILE_BYTES = 64 * 1024 * 1024
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"
"""Pages need nothing but their own styles and images: no script, no other host."""
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", _POLICY.encode()),
]
_FEED_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", f"{_POLICY}; script-src 'self'".encode()),
]
"""A feed may also load the XSLT stylesheet it names (Chromium and Firefox count that as a
script: `script-src`), from its own origin; the page it makes keeps the feed's policy."""


def safe_relative(url_path: str) -> str | None:
    """The file a URL path names, relative to the served directory; None when refused.

    Pure. Refuses `..`, `.`, hidden names (temp files are hidden), NUL and
    backslashes, whatever their spelling once decoded; empty segments (`//`)
    are ignored; a path ending in `/` means its `index.html`.
    """
    if "\x00" in url_path or "\\" in url_path:
        return None
    parts = [p for p in url_path.split("/") if p]
    if any(p.startswith(".") for p in parts):
        return None
    if not parts or url_path.endswith("/"):
        parts.append("index.html")
    return "/".join(parts)


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding value allows gzip (RFC 9110 §12.5.3)."""
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def wants_page(accept: str) -> bool:
    """Whether an Accept value is a browser's, opening a page: it asks for HTML and names no
    feed type (feed readers name theirs, or send `*/*`)."""
    value = accept.lower()
    return "text/html" in value and "atom+xml" not in value and "rss+xml" not in value


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match with the weak comparison RFC 9110 §13.1.2 asks for."""
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in header.split(","))


def not_modified_since(header: str, mtime: int) -> bool:
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:
        return False
    return mtime <= since.timestamp()


@dataclass(frozen=True, slots=True)
class Representation:
    body: bytes
    etag: str
    headers: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class CachedFile:
    version: tuple[int, int, int]
    mtime: int
    plain: Representation
    gzipped: Representation | None
    for_browsers: tuple[Representation, Representation | None] | None = None
    """A feed as a browser gets it (plain, gzipped): same bytes, an XML type it styles."""


ARCHIVE_MAX_AGE = 86_400
"""Cache-Control max-age of a full archive page, which changes only when an article in it does."""


class StaticFiles:
    """Regular files below `root`, read once per version and kept in memory."""

    def __init__(
        self,
        root: Path,
        max_age: Callable[[], int],
        hub: Callable[[], tuple[str, str] | None] = lambda: None,
    ) -> None:
        self.root = root.resolve()
        self.max_age = max_age
        self.hub = hub
        """(hub URL, public URL of the directory) when WebSub is on: feeds get Link headers."""
        self._cache: dict[str, CachedFile] = {}
        self._lock = threading.Lock()

    def get(self, url_path: str) -> CachedFile | None:
        relative = safe_relative(url_path)
        if relative is None:
            return None
        full = os.path.join(self.root, relative)
        try:
            info = os.stat(full)
        except (OSError, ValueError):
            if relative in self._cache:
                with self._lock:
                    self._cache.pop(relative, None)
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_FILE_BYTES:
            return None
        version = (info.st_ino, info.st_size, info.st_mtime_ns)
        cached = self._cache.get(relative)
        if cached is not None and cached.version == version:
            return cached
        if not Path(os.path.realpath(full)).is_relative_to(self.root):
            return None  # a symbolic link out of the directory
        try:
            with open(full, "rb") as handle:
                body = handle.read(_MAX_FILE_BYTES + 1)
        except OSError:
            return None
        cached = self._load(relative, body, version, int(info.st_mtime))
        with self._lock:
            self._cache[relative] = cached
        return cached

    def clear(self) -> None:
        """Forget every cached file (after a config change)."""
        with self._lock:
            self._cache.clear()

    def _load(
        self, relative: str, body: bytes, version: tuple[int, int, int], mtime: int
    ) -> CachedFile:
        suffix = os.path.splitext(relative)[1].lower()
        content_type = CONTENT_TYPES.get(suffix, "application/octet-stream")
        tag = hashlib.blake2b(body, digest_size=12).hexdigest()
        max_age = ARCHIVE_MAX_AGE if self._closed_archive_page(relative) else self.max_age()
        common = [
            (b"last-modified", formatdate(mtime, usegmt=True).encode()),
            (b"cache-control", f"public, max-age={max_age}".encode()),
            (b"content-type", content_type.encode()),
            *(_FEED_SECURITY_HEADERS if suffix in _FOR_BROWSERS else _SECURITY_HEADERS),
        ]
        websub = self.hub()
        if websub is not None and relative.startswith("feeds/") and not archive_page(relative):
            hub, base = websub
            link = f'<{hub}>; rel="hub", <{base}{relative}>; rel="self"'
            common.append((b"link", link.encode("utf-8")))
        gzipped = None
        packed = None
        if suffix in _COMPRESSIBLE:
            vary = b"Accept-Encoding, Accept" if suffix in _FOR_BROWSERS else b"Accept-Encoding"
            common.append((b"vary", vary))
            packed = gzip.compress(body, compresslevel=6, mtime=0)
            if len(packed) < len(body):
                gzipped = _representation(
                    packed, f'"{tag}-gz"', [*common, (b"content-encoding", b"gzip")]
                )
        plain = _representation(body, f'"{tag}"', common)
        for_browsers = None
        if suffix in _FOR_BROWSERS:
            xml = [
                (name, _FOR_BROWSERS[suffix].encode() if name == b"content-type" else value)
                for name, value in common
            ]
            page = _representation(body, f'"{tag}-x"', xml)
            page_gz = None
            if gzipped is not None and packed is not None:
                page_gz = _representation(
                    packed, f'"{tag}-x-gz"', [*xml, (b"content-encoding", b"gzip")]
                )
            for_browsers = (page, page_gz)
        return CachedFile(version, mtime, plain, gzipped, for_browsers)

    def _closed_archive_page(self, relative: str) -> bool:
        """Whether this is an archive page with a newer one after it (so it is full)."""
        page = archive_page(relative)
        if page is None:
            return False
        return os.path.isfile(os.path.join(self.root, archive_path(page[0], page[1] + 1)))


def _representation(body: bytes, etag: str, headers: list[tuple[bytes, bytes]]) -> Representation:
    return Representation(body, etag, [(b"etag", etag.encode()), *headers])


_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since", b"accept-encoding", b"accept"})


Health = Callable[[], tuple[int, dict[str, Any]]]


class App:
    """The ASGI application: static files, /healthz and /metrics."""

    def __init__(self, files: StaticFiles, health: Health, metrics: Metrics) -> None:
        self.files = files
        self.health = health
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        path: str = scope["path"]
        if method not in ("GET", "HEAD"):
            await self._send(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")], method)
            return
        if path == "/healthz":
            status, report = self.health()
            body = json.dumps(report, indent=2).encode() + b"\n"
            headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
            await self._send(send, status, body, headers, method)
            return
        if path == "/metrics":
            headers = [(b"content-type", self.metrics.content_type.encode())]
            await self._send(send, 200, self.metrics.exposition(), headers, method)
            return
        found = self.files.get(path)
        if found is None:
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
            await self._send(send, 404, b"not found\n", headers, method)
            return
        request = {
            name: value.decode("latin-1")
            for name, value in scope["headers"]
            if name.lower() in _CONDITIONAL
        }
        plain, gzipped = found.plain, found.gzipped
        if found.for_browsers is not None and wants_page(request.get(b"accept", "")):
            plain, gzipped = found.for_browsers
        rep = plain
        if gzipped is not None and accepts_gzip(request.get(b"accept-encoding", "")):
            rep = gzipped
        inm = request.get(b"if-none-match")
        ims = request.get(b"if-modified-since")
        if (inm is not None and etag_matches(inm, rep.etag)) or (
            inm is None and ims is not None and not_modified_since(ims, found.mtime)
        ):
            await self._send(send, 304, b"", rep.headers, "HEAD")
            return
        await self._send(send, 200, rep.body, rep.headers, method)

    async def _send(
        self,
        send: Send,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        method: str,
    ) -> None:
        self.metrics.request(status)
        length = [(b"content-length", str(len(body)).encode())] if status != 304 else []
        await send({"type": "http.response.start", "status": status, "headers": headers + length})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon owns the signal handlers


class HttpServer:
    """uvicorn serving `App` on host:port, stopped by `stop()`."""

    def __init__(self, app: App, host: str, port: int, max_connections: int = 1000) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            proxy_headers=False,
            limit_concurrency=max_connections,
            timeout_keep_alive=5,
        )
        self._server = _Server(config)

    async def serve(self) -> None:
        await self._server.serve()

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def stop(self) -> None:
        self._server.should_exit = True
