"""Serving the output directory over HTTP/1.1: the app, and a small server on asyncio.

The app serves only regular files below the output directory, from memory:
each file is read (and gzipped) once per version, and a `stat` at most once a
second per file (at once after the service writes) tells when a version is new,
so answers cost no disk reads and conditional requests cost next to nothing.
The server is our own HTTP/1.1 layer on asyncio (uvloop in the service), with
its own accept loop and httptools (llhttp) parsing requests; httptools stays
inside this module. It bounds what a client can hold: time to send a request head,
its size, idle time, unread answers, and connections (see `Limits`).

    GET/HEAD /            index.html
    GET/HEAD /<path>      a file of the output directory (no listings)
    GET      /healthz     JSON status; 503 until a scan succeeded, or after one failed
    GET      /metrics     Prometheus text format
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import http
import json
import logging
import os
import resource
import socket
import stat
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httptools

from aggregator import logs
from aggregator.formats import (
    FEED_FORMATS,
    archive_page,
    archive_path,
    content_type_of,
    file_kind,
    is_feed,
)
from aggregator.metrics import Metrics
from aggregator.output import content_tag

if TYPE_CHECKING:
    from aggregator.config import ServerConfig

log = logging.getLogger("aggregator")

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
    if not header:
        return False
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


_BROWSER_FEED_TYPES = tuple(
    f.media_type.partition("/")[2] for f in FEED_FORMATS.values() if f.kind.for_browsers
)
"""`atom+xml`, `rss+xml`: named in an Accept value, they mark a feed reader, not a browser
(for the formats a browser gets as a page: see `formats.FileKind.for_browsers`)."""


def wants_page(accept: str) -> bool:
    """Whether an Accept value is a browser's, opening a page: it asks for HTML and names no
    feed type (feed readers name theirs, or send `*/*`)."""
    value = accept.lower()
    return "text/html" in value and not any(name in value for name in _BROWSER_FEED_TYPES)


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match with the weak comparison RFC 9110 §13.1.2 asks for."""
    if header == etag:
        return True
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


@dataclass(frozen=True, slots=True, eq=False)
class Response:
    """An answer, ready to write: status, headers (with Content-Length) and body bytes.

    Compared and hashed by identity: the answers of a cached file are made once (see
    `Representation`), and the server keeps them as written for the current second.
    """

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    """Empty for HEAD and 304; Content-Length still gives the size a GET gets."""
    lines: bytes
    """The header lines as sent (`name: value\r\n` each), in the order of `headers`."""
    shared: bool = False
    """Made once and answered many times (a cached file's): it may be kept as written."""


def response(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, shared: bool = False
) -> Response:
    """A `Response` with `headers` written out as header lines once."""
    lines = b"".join([name + b": " + value + b"\r\n" for name, value in headers])
    return Response(status, headers, body, lines, shared)


@dataclass(frozen=True, slots=True)
class Representation:
    body: bytes
    etag: str
    headers: list[tuple[bytes, bytes]]
    ok: Response
    """The answer to a GET: 200, the body and its Content-Length."""
    ok_head: Response
    """The answer to a HEAD: the GET's head without the body."""
    not_modified: Response
    """304: the headers without Content-Length, no body."""


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


PATHS_KEPT = 4096
"""Request targets and URL paths whose path and file name are kept once worked out (see
`StaticFiles.get`, `HttpServer._path`), when no longer than PATH_BYTES_KEPT: what a client
can make the server hold this way stays near 10 MB, whatever it asks for."""
PATH_BYTES_KEPT = 512


_UNSEEN = ("", "")


FRESH_SECONDS = 1.0
"""How long a file's version, once looked at, is served without looking again (a `stat`):
what the service writes itself is served at once (`StaticFiles.changed`), what another
program writes in the directory within this many seconds."""


class StaticFiles:
    """Regular files below `root`, read once per version and kept in memory.

    A file's version (inode, size, modification time) is looked at again when it was last
    looked at FRESH_SECONDS ago, or after `changed()`. A `stat` for every request cost over
    a quarter of a 304's CPU time (docs/benchmarks.md, the ninth round).
    """

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
        self._paths: dict[str, tuple[str, str] | None] = {}
        """URL path → (relative, full path) as `safe_relative` says, or None; PATHS_KEPT at most."""
        self._fresh: dict[str, tuple[CachedFile, float]] = {}
        """URL path → its file and the `time.monotonic()` until which it is served without a
        new look; PATHS_KEPT at most. Replaced, not changed, by `changed` (another thread)."""
        self._lock = threading.Lock()
        self._inputs = self._header_inputs()
        """What the cached headers were made from, besides each file (see `reconfigured`)."""
        self._generation = 0
        """How many times the cache was forgotten (`clear`, `reconfigured`): a file read and
        made into headers meanwhile is served to the request that read it, not kept."""

    def get(self, url_path: str) -> CachedFile | None:
        """The file at `url_path` (see `safe_relative`), as it is or was FRESH_SECONDS ago at
        most; None when there is none."""
        fresh = self._fresh
        hit = fresh.get(url_path)
        now = time.monotonic()
        if hit is not None and now < hit[1]:
            return hit[0]
        found = self._look(url_path)
        if found is not None and len(url_path) <= PATH_BYTES_KEPT:
            if len(fresh) >= PATHS_KEPT:
                fresh.clear()
            fresh[url_path] = (found, now + FRESH_SECONDS)
        return found

    def changed(self) -> None:
        """The directory's files changed (the service wrote, removed or stamped some): look
        at each file again when it is next asked for. Safe from any thread."""
        self._fresh = {}

    def _look(self, url_path: str) -> CachedFile | None:
        paths = self._paths
        found = paths.get(url_path, _UNSEEN)
        if found is _UNSEEN:
            relative = safe_relative(url_path)
            found = None if relative is None else (relative, os.path.join(self.root, relative))
            if len(url_path) <= PATH_BYTES_KEPT:
                if len(paths) >= PATHS_KEPT:
                    paths.clear()
                paths[url_path] = found
        if found is None:
            return None
        relative, full = found
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
        generation = self._generation
        try:
            with open(full, "rb") as handle:
                body = handle.read(_MAX_FILE_BYTES + 1)
        except OSError:
            return None
        cached = self._load(relative, body, version, int(info.st_mtime))
        with self._lock:
            if generation == self._generation:  # else made from what the config was
                self._cache[relative] = cached
        return cached

    def clear(self) -> None:
        """Forget every cached file."""
        with self._lock:
            self._generation += 1
            self._cache.clear()
            self._fresh = {}

    def reconfigured(self) -> bool:
        """After a config change: forget the cached files if what their headers are made of
        (max age, WebSub hub and public URL) changed; True when they were forgotten.

        Otherwise the cache stays, so a reload does not have every file read and gzipped
        again while clients keep asking for them.
        """
        inputs = self._header_inputs()
        with self._lock:
            if inputs == self._inputs:
                return False
            self._inputs = inputs
            self._generation += 1
            self._cache.clear()
            self._fresh = {}
        return True

    def _header_inputs(self) -> tuple[int, tuple[str, str] | None]:
        return self.max_age(), self.hub()

    def _load(
        self, relative: str, body: bytes, version: tuple[int, int, int], mtime: int
    ) -> CachedFile:
        kind = file_kind(relative)
        content_type = content_type_of(relative)
        browser_type = kind.browser_content_type if kind else None
        tag = content_tag(body)[1:-1]
        max_age = ARCHIVE_MAX_AGE if self._closed_archive_page(relative) else self.max_age()
        common = [
            (b"last-modified", formatdate(mtime, usegmt=True).encode()),
            (b"cache-control", f"public, max-age={max_age}".encode()),
            (b"content-type", content_type.encode()),
            *(_FEED_SECURITY_HEADERS if browser_type else _SECURITY_HEADERS),
        ]
        websub = self.hub()
        if websub is not None and is_feed(relative):
            hub, base = websub
            link = f'<{hub}>; rel="hub", <{base}{relative}>; rel="self"'
            common.append((b"link", link.encode("utf-8")))
        gzipped = None
        packed = None
        if kind is not None and kind.compressible:
            vary = b"Accept-Encoding, Accept" if browser_type else b"Accept-Encoding"
            common.append((b"vary", vary))
            packed = gzip.compress(body, compresslevel=6, mtime=0)
            if len(packed) < len(body):
                gzipped = _representation(
                    packed, f'"{tag}-gz"', [*common, (b"content-encoding", b"gzip")]
                )
        plain = _representation(body, f'"{tag}"', common)
        for_browsers = None
        if browser_type:  # a feed: see `formats.FileKind.for_browsers`
            xml = [
                (name, browser_type.encode() if name == b"content-type" else value)
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
    headers = [(b"etag", etag.encode()), *headers]
    full = [*headers, (b"content-length", str(len(body)).encode())]
    ok = response(200, full, body, shared=True)
    ok_head = Response(200, full, b"", ok.lines, shared=True)
    not_modified = response(304, headers, b"", shared=True)
    return Representation(body, etag, headers, ok, ok_head, not_modified)


Health = Callable[[], tuple[int, dict[str, Any]]]


_REFUSALS = {
    400: b"bad request\n",
    414: b"request URL too long\n",
    431: b"request header fields too large\n",
    505: b"HTTP version not supported\n",
}


class Routes:
    """What the server answers: static files, /healthz and /metrics, from memory.

    `respond` is called by the protocol layer below for every request head; it
    never blocks for long (a `stat`, and a read when a file has a new version).
    """

    def __init__(self, files: StaticFiles, health: Health, metrics: Metrics) -> None:
        self.files = files
        self.health = health
        self.metrics = metrics
        self._counted: dict[int, int] = {}
        """Answers of files not yet added to `metrics` (see `counted`), by status."""

    def counted(self) -> None:
        """Add the answers counted since last time to `metrics` (before it is read).

        A file's answers are counted here, a dict entry each, and added in one step: the
        metrics' counters take a lock and four calls for every increment.
        """
        counted, self._counted = self._counted, {}
        for status, count in counted.items():
            self.metrics.request(status, count)

    def respond(self, method: str, path: str, request: Mapping[bytes, str]) -> Response:
        """The answer to `method path`; `request` holds the request's conditional headers."""
        if method not in ("GET", "HEAD"):
            return self._send(405, b"method not allowed\n", [(b"allow", b"GET, HEAD")], method)
        if path == "/healthz":
            status, report = self.health()
            body = json.dumps(report, indent=2).encode() + b"\n"
            headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
            return self._send(status, body, headers, method)
        if path == "/metrics":
            self.counted()
            headers = [(b"content-type", self.metrics.content_type.encode())]
            return self._send(200, self.metrics.exposition(), headers, method)
        found = self.files.get(path)
        if found is None:
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
            return self._send(404, b"not found\n", headers, method)
        plain, gzipped = found.plain, found.gzipped
        if found.for_browsers is not None and wants_page(request.get(b"accept") or ""):
            plain, gzipped = found.for_browsers
        rep = plain
        if gzipped is not None:
            encodings = request.get(b"accept-encoding")
            if encodings and accepts_gzip(encodings):
                rep = gzipped
        inm = request.get(b"if-none-match")
        ims = request.get(b"if-modified-since")
        if (inm is not None and (inm == rep.etag or etag_matches(inm, rep.etag))) or (
            inm is None and ims is not None and not_modified_since(ims, found.mtime)
        ):
            counted = self._counted
            counted[304] = counted.get(304, 0) + 1
            return rep.not_modified
        counted = self._counted
        counted[200] = counted.get(200, 0) + 1
        return rep.ok if method == "GET" else rep.ok_head

    def refusal(self, status: int) -> Response:
        """The answer to a request the protocol layer refuses (400, 414, 431, 505)."""
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        return self._send(status, _REFUSALS[status], headers, "GET")

    def _send(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        method: str,
    ) -> Response:
        self.metrics.request(status)
        length = [(b"content-length", str(len(body)).encode())] if status != 304 else []
        return response(status, headers + length, b"" if method == "HEAD" else body)


# -- the HTTP/1.1 layer ----------------------------------------------------------------
#
# A small HTTP/1.1 server on asyncio, with httptools (llhttp) as the parser,
# instead of a general ASGI server: everything served is in memory and every
# answer is computed at once, so a connection only ever waits for its client.
# That makes the limits simple and exact:
#
#   - a request head (request line and headers) must arrive complete within
#     `header_timeout` seconds of the connection's start, or of the first byte
#     of a following request; between requests a connection may sit idle for
#     `keepalive_timeout` seconds; a client that stops reading its answers is
#     dropped after SEND_TIMEOUT seconds without progress;
#   - a head over `max_header_bytes` gets 431, a URL over `max_url_bytes` 414,
#     garbage 400; what a client sends is parsed PART_SIZE bytes at a time, and at
#     most two parts past the cap are;
#   - a request with a body is answered (405 for every method that sends one)
#     and its connection closed: nothing here reads request bodies;
#   - at `max_connections`, a new connection closes the connection that has
#     been idle longest (no answer in progress; nginx reuses idle keep-alive
#     connections the same way), or when none is idle the one nearest its send
#     timeout, so idle or slow clients never lock others out;
#   - pipelined requests are answered in order; while a client does not read, parsing
#     and reading from it stop, so the requests of one part at most wait (MAX_PIPELINED).

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEPALIVE_TIMEOUT = 5.0
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_MAX_URL_BYTES = 8 * 1024
SEND_TIMEOUT = 30.0
"""Seconds a client may leave an answer unread (the write buffer full) before it is dropped."""
LINGER_SECONDS = 2.0
"""After refusing a request, read and discard what the client still sends for this long, so
the refusal reaches it before the connection closes (closing with unread data sends a reset)."""
RECEIVE_BUFFER = 16 * 1024
"""The kernel's receive buffer of each connection (SO_RCVBUF; Linux doubles it for its own
bookkeeping): requests are small, and a client that pipelines without reading its answers
holds no more than this in the kernel, nor much more than this in the server (`held`)."""
PART_SIZE = 16 * 1024
"""What is parsed at a time of one read (uvloop reads up to 256 KB): after each part, parsing
stops while the client is behind reading its answers, and the rest of the read waits."""
MAX_PIPELINED = PART_SIZE // 16 + 1
"""Parsed requests that may wait for their answers: more than one part can hold (a request
takes 16 bytes at least), since parsing stops while answers wait, so every request of a
client that reads its answers is answered. They are small (no body, a few headers); past
this, the connection would close after the answers before it."""
BACKLOG = 128
"""The listen queue, and what `HttpServer._accept` takes per readiness event: each accepted socket
reaches `HttpServer._opened` (where the longest idle connection is closed to make room) two
loop iterations later, and the one closed is released one iteration after that, so up to
three batches of sockets are open beyond `max_connections` at once."""
FD_RESERVE = 3 * BACKLOG + 128
"""Open files kept for everything but settled client connections: three accept batches (see
`BACKLOG`), and 128 for the rest (state file, seeds, link checks, the process's own)."""
ACCEPT_ERROR_INTERVAL = 60.0
"""Seconds between two log lines saying accepting failed for want of descriptors or memory."""
ACCEPT_RETRY_SECONDS = 1.0
"""Seconds accepting pauses after it failed for want of descriptors or memory (as asyncio's)."""
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_TICK = 0.25
_STOP_GRACE = 1.5
_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()
    for status in http.HTTPStatus
}
_CLOSE = b"connection: close\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"
MESSAGES_KEPT = 256
"""Shared answers kept put together per second (one per file version, representation and
Connection line asked for in that second); past this, the rest are put together anew."""
MESSAGE_BYTES_KEPT = 8 * 1024 * 1024
"""Bytes those answers may hold (bodies are copied into them): 57 of a 140 KB feed."""
_METHODS = {b"GET": "GET", b"HEAD": "HEAD"}
_WANTED = frozenset(
    {
        b"if-none-match",
        b"if-modified-since",
        b"accept-encoding",
        b"accept",
        b"connection",
        b"content-length",
        b"transfer-encoding",
    }
)


@dataclass(frozen=True, slots=True)
class Limits:
    """How long and how much a client may take; see the notes above."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_url_bytes: int = DEFAULT_MAX_URL_BYTES
    max_connections: int = 10_000


_NO_LIMIT = 1 << 20
"""Descriptors taken as the limit where there is none (the Linux default of fs.nr_open)."""


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft open-file limit (RLIMIT_NOFILE) to the hard limit.

    Returns (before, after). Every client connection holds a file descriptor, so
    the soft limit (often 1024) and not memory is what first caps connections.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _NO_LIMIT, _NO_LIMIT
    target = hard if hard != resource.RLIM_INFINITY else max(soft, _NO_LIMIT)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # e.g. macOS caps it below its hard limit
            return soft, soft
        return soft, target
    return soft, soft


def connection_capacity(open_files: int, configured: int | None) -> int:
    """How many client connections fit in `open_files` descriptors (and `configured`)."""
    room = max(open_files - FD_RESERVE, open_files // 4, 1)
    return room if configured is None else max(1, min(configured, room))


class _Refused(Exception):
    """Raised in a parser callback to stop parsing this connection's input."""


class _Request:
    """A parsed request head waiting for its answer (pipelined behind a slow reader)."""

    __slots__ = ("close", "method", "refusal", "request", "url")

    def __init__(
        self, method: str, url: bytes, request: dict[bytes, str], close: bool, refusal: int = 0
    ) -> None:
        self.method = method
        self.url = url
        self.request = request
        self.close = close
        self.refusal = refusal


class _Connection(asyncio.Protocol):
    """One client connection: heads parsed by httptools, answered at once from `Routes`.

    A `Protocol`, not a `BufferedProtocol` reading into one buffer: uvloop then makes one
    call into Python per read, not two (`get_buffer`, `buffer_updated`): about 1 µs less
    user time per 304, of about 19 µs in all (docs/benchmarks.md, the ninth round).
    """

    __slots__ = (
        "body",
        "closing",
        "completed",
        "deadline",
        "fresh",
        "head_bytes",
        "head_len",
        "held",
        "hosts",
        "in_head",
        "loop",
        "parser",
        "paused",
        "queue",
        "reject",
        "request",
        "server",
        "stop_after",
        "transport",
        "unsent",
        "url",
    )

    def __init__(self, server: HttpServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.request: dict[bytes, str] = {}
        self.body = False
        self.head_len = 0
        """Bytes of the current head, counted exactly from what the parser reported."""
        self.hosts = 0
        """Host header lines in the current head (RFC 9112 §3.2: exactly one in HTTP/1.1)."""
        self.head_bytes = 0
        """Bytes received while a head was incomplete: catches what the parser still holds."""
        self.in_head = True
        self.completed = False
        self.fresh = False
        """Idle between requests: the keep-alive timeout runs, not the header timeout."""
        self.deadline = loop.time() + server.limits.header_timeout
        self.queue: deque[_Request] = deque()
        self.paused = False
        self.closing = False
        self.stop_after = False
        """No request after the current one is read (Connection: close, a body, a refusal)."""
        self.reject = 0
        self.unsent = 0
        """Bytes left in the write buffer when last looked at (while the client is behind)."""
        self.held: memoryview | None = None
        """What is left of a read when the client fell behind (see PART_SIZE): a read is
        at most about twice RECEIVE_BUFFER."""

    # -- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server._opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.queue.clear()
        self.held = None
        self.server._closed(self)

    def eof_received(self) -> bool:
        return False  # the client is done: close once the answers are written

    def data_received(self, data: bytes) -> None:
        if len(data) <= PART_SIZE:
            self._parse(data)
        else:
            self._parse_parts(memoryview(data))

    def _parse_parts(self, data: memoryview) -> None:
        """Parse `data` PART_SIZE bytes at a time while the client reads its answers; once it
        is behind, keep the rest (`held`) for `resume_writing` (reading is paused then)."""
        for start in range(0, len(data), PART_SIZE):
            if self.paused:
                self.held = data[start:]
                return
            self._parse(data[start : start + PART_SIZE])

    def _parse(self, data: bytes | memoryview) -> None:
        if self.closing or self.stop_after:
            return  # lingering or answered for good: what the client still sends is dropped
        self.completed = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._submit(_Request("", b"", {}, True, 0), stop=True)  # not HTTP any more
            return
        except httptools.HttpParserError as exc:
            if not self.stop_after:  # a refusal from a callback, or garbage
                # llhttp knows HTTP/1.0, 1.1 and 2.0 (refused below); other versions are 505
                refusal = 505 if str(exc) == "Invalid HTTP version" else 400
                self._submit(_Request("", b"", {}, True, self.reject or refusal), stop=True)
            return
        if self.in_head:
            self.head_bytes = 0 if self.completed else self.head_bytes + len(data)
            if self.head_bytes > self.server.limits.max_header_bytes:
                self._submit(_Request("", b"", {}, True, 431), stop=True)

    def pause_writing(self) -> None:
        self.paused = True
        self._sending()
        if self.transport is not None and not self.closing:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.closing:
            return  # the tick follows the rest of the output, then lingers
        self.server._sent(self)
        while self.queue and not self.paused:
            self._answered(self.queue.popleft())
        if self.paused or self.closing:
            return
        if self.held is not None:
            held, self.held = self.held, None
            self._parse_parts(held)
            if self.paused or self.closing:
                return
        if self.transport is not None and not self.stop_after:
            self.transport.resume_reading()
        self._idle()

    # -- httptools callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.stop_after:
            raise _Refused  # nothing after a request that ends the connection
        self.url = b""
        self.request = {}
        self.body = False
        self.head_len = 0
        self.hosts = 0
        if self.fresh:
            self.fresh = False
            self.deadline = self.loop.time() + self.server.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.server.limits.max_url_bytes:
            self.reject = 414
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_len += len(name) + len(value) + 4
        if self.head_len + len(self.url) > self.server.limits.max_header_bytes:
            self.reject = 431
            raise _Refused
        name = name.lower()
        if name == b"host":
            self.hosts += 1
        elif name in _WANTED:
            self.request[name] = value.decode("latin-1")
            if name == b"transfer-encoding" or (
                name == b"content-length" and value.strip() != b"0"
            ):
                self.body = True

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        parser = self.parser
        close = self.body or not parser.should_keep_alive()
        raw = parser.get_method()
        method = _METHODS.get(raw) or raw.decode("ascii", "replace")
        version, hosts = parser.get_http_version(), self.hosts
        refusal = 0 if version == "1.1" and hosts == 1 else _version_refusal(version, hosts)
        if refusal:
            self._submit(_Request(method, b"", {}, True, refusal), stop=True)
        elif close or self.paused or self.queue:
            self._submit(_Request(method, self.url, self.request, close), stop=close)
        else:  # what `_submit` does, without a `_Request`
            self._answer(method, self.url, self.request, False, 0)
            if not self.paused and not self.closing:
                self._idle()

    def on_message_complete(self) -> None:
        self.in_head = True
        self.completed = True

    # -- answering -----------------------------------------------------------------

    def _submit(self, request: _Request, stop: bool) -> None:
        """Answer now, or after the answers before it when the client is behind."""
        if stop:
            self.stop_after = True
        if self.paused or self.queue:
            if len(self.queue) >= MAX_PIPELINED:
                self.queue[-1].close = True  # answer what waits, then close
                self.stop_after = True  # and parse nothing more
                return
            self.queue.append(request)
            return
        self._answer(request.method, request.url, request.request, request.close, request.refusal)
        if not self.paused and not self.closing:
            self._idle()

    def _answered(self, request: _Request) -> None:
        """Answer a request that waited in the queue."""
        self._answer(request.method, request.url, request.request, request.close, request.refusal)

    def _answer(
        self, method: str, url: bytes, request: dict[bytes, str], close: bool, refusal: int
    ) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        server = self.server
        if refusal:
            response = server.app.refusal(refusal)
        elif not method:  # an upgrade: the bytes that follow are not ours to read
            self._linger()
            return
        else:
            try:
                path = server._paths[url]
            except KeyError:
                path = server._path(url)
            app = server.app
            response = app.refusal(400) if path is None else app.respond(method, path, request)
        close = close or server.stopping
        if close:
            connection = _CLOSE
        elif b"connection" in request and "keep-alive" in request[b"connection"].lower():
            connection = _KEEP_ALIVE
        else:
            connection = b""
        transport.write(server._message(response, connection))
        if close:
            self._linger()

    def _idle(self) -> None:
        """The answer is written: wait for the next request, for keepalive_timeout at most."""
        if self.server.stopping:
            self.expire()
            return
        self.fresh = True
        self.deadline = self.loop.time() + self.server.limits.keepalive_timeout
        order = self.server._idle_order  # what `HttpServer._idle` does, one call less
        order.pop(self, None)
        if self in self.server._connections:
            order[self] = None

    def _sending(self) -> None:
        """The client is behind: it is dropped after SEND_TIMEOUT seconds without progress."""
        self.unsent = self.transport.get_write_buffer_size() if self.transport else 0
        self.deadline = self.loop.time() + SEND_TIMEOUT
        self.server._busy(self)
        self.server._progress(self)

    def _linger(self) -> None:
        """Close after the answers are sent, reading and dropping input for a moment.

        The moment (LINGER_SECONDS) starts once the output is all written: until then the
        send timeout applies, so a slow reader still gets a large answer whole.
        """
        self.closing = True
        self.queue.clear()
        self.held = None
        transport = self.transport
        if transport is None or not transport.get_write_buffer_size():
            self.deadline = self.loop.time() + LINGER_SECONDS
            self.server._idle(self)
        else:
            self._sending()
        if transport is None:
            return
        if self.paused:
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def expire(self) -> None:
        """A deadline passed (or the server stops): drop the connection and what it holds."""
        if self.transport is not None:
            self.transport.abort()

    def shutdown(self) -> None:
        """The server stops: close at once when idle, else after the answers in progress."""
        if not self.paused and not self.queue:
            self.expire()
        elif self.queue:
            self.queue[-1].close = True
            self.stop_after = True


def _version_refusal(version: str, hosts: int) -> int:
    """The status refusing a head of this HTTP version with this many Host lines; 0 if none.

    Pure. RFC 9112 §2.6: a major version other than 1 is not spoken here (505). §3.2: an
    HTTP/1.1 request names its host, and no request names two (400).
    """
    if not version.startswith("1."):
        return 505
    if hosts > 1 or (hosts == 0 and version != "1.0"):
        return 400
    return 0


def _path(url: bytes) -> str | None:
    """The percent-decoded path of a request target; None when it is not one.

    An absolute-form target without a path (`http://host`, `http://host?q`) means `/`
    (RFC 9112 §3.2.2, RFC 3986 §6.2.3).
    """
    # `find`, not `in`: `b"?" in url` first tries b"?" as an integer, raising and clearing a
    # TypeError each time, which costs ten times the search.
    if url[:1] != b"/" or url.find(b"?") >= 0 or url.find(b"#") >= 0:
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            return None
        raw = parsed.path
        if raw is None:
            if parsed.host is None:
                return None
            raw = b"/"
        url = raw
    try:
        path = url.decode("ascii")
    except UnicodeDecodeError:
        return None
    return urllib.parse.unquote(path) if "%" in path else path


async def _listening_sockets(
    loop: asyncio.AbstractEventLoop, host: str, port: int
) -> list[socket.socket]:
    """Non-blocking sockets listening on every address `host` names, as asyncio's
    `create_server` binds them: IPv4 and IPv6 for a name that has both (an address family
    this system lacks skipped), each reusable at once, IPv6 ones for IPv6 only. OSError
    when one cannot be bound, or none made.

    Their receive buffers are RECEIVE_BUFFER bytes, as the connections they accept: a
    client that sends more than it reads answers to holds that little in the kernel, and
    what one read brings is no more than about twice that (see `_Connection.held`).
    """
    infos = await loop.getaddrinfo(
        host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:  # no IPv6 in this kernel, say: as `create_server`, the others
                continue
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"error while attempting to bind on address {address!r}: "
                    f"{(exc.strerror or str(exc)).lower()}",
                ) from None
            sock.listen(BACKLOG)
            sock.setblocking(False)
        if not sockets:
            raise OSError(errno.EAFNOSUPPORT, f"no address of {host!r} can be listened on here")
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class HttpServer:
    """`Routes` served over HTTP/1.1 on host:port, until `stop()` (from any thread)."""

    def __init__(self, app: Routes, host: str, port: int, limits: Limits | None = None) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self.stopping = False
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._connections: set[_Connection] = set()
        self._idle_order: dict[_Connection, None] = {}
        """Connections with no answer in progress, the longest idle first."""
        self._sending: dict[_Connection, None] = {}
        """Connections whose client is behind reading (see SEND_TIMEOUT), or that close once
        their output is written; in the order of their last progress, so the first is the
        one nearest its send timeout."""
        self._date_at = 0
        self._date_line = b""
        self._paths: dict[bytes, str | None] = {}
        """Request targets → their paths (see `_path`), as most requests name a few files."""
        self._messages: dict[tuple[Response, bytes], bytes] = {}
        """Shared answers put together in this second (see `_message`); `_kept`: their bytes."""
        self._kept = 0
        self._full_warned: dict[str, float] = {}
        """When each kind of making room was last logged."""
        self._accept_warned = 0.0
        self._listening: list[socket.socket] = []
        self._adopting: set[asyncio.Task[None]] = set()
        """Accepted sockets being given their transports (see `_adopt`)."""
        self._ticker: asyncio.TimerHandle | None = None

    @property
    def started(self) -> bool:
        return self._started

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def serve(self) -> None:
        """Listen and serve until `stop()`; OSError when the address cannot be used."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._wake = asyncio.Event()
        self._listening = await _listening_sockets(loop, self.host, self.port)
        try:
            for sock in self._listening:
                loop.add_reader(sock.fileno(), self._accept, sock)
            self._started = True
            self._ticker = loop.call_later(_TICK, self._tick)
            if not self.stopping:
                await self._wake.wait()
        finally:
            self.stopping = True
            if self._ticker is not None:
                self._ticker.cancel()
            for sock in self._listening:
                loop.remove_reader(sock.fileno())
                sock.close()
            for connection in list(self._connections):
                connection.shutdown()
            deadline = loop.time() + _STOP_GRACE
            while (self._connections or self._adopting) and loop.time() < deadline:
                await asyncio.sleep(0.02)
            for connection in list(self._connections):
                connection.expire()

    def _accept(self, listening: socket.socket) -> None:
        """Take up to BACKLOG waiting connections (the listening socket is readable).

        The server's own accept loop, as asyncio's standard one does it, but on any event
        loop: uvloop's (libuv's) closes waiting connections unseen and unlogged when the
        process runs out of descriptors. Here, accepting then pauses for a second, and says
        so in one log line a minute at most.
        """
        loop = self._loop
        assert loop is not None
        for _ in range(BACKLOG):
            if self.stopping:
                return  # (`serve` closes the listening sockets next)
            try:
                sock, _address = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # none left, or one that gave up while it waited
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._accept_failed(loop, listening, exc)
                else:
                    log.error("cannot accept a connection: %s", exc.strerror or exc)
                return
            sock.setblocking(False)
            task = loop.create_task(self._adopt(loop, sock))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    async def _adopt(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        """Give an accepted socket its transport and a `_Connection`."""
        try:
            await loop.connect_accepted_socket(lambda: _Connection(self, loop), sock)
        except OSError:  # the client went away meanwhile
            sock.close()

    def _accept_failed(
        self, loop: asyncio.AbstractEventLoop, listening: socket.socket, error: OSError
    ) -> None:
        """No descriptor or memory left: stop accepting for a second, and log that once a
        minute at most (not once per failed accept, thousands of lines a second)."""
        loop.remove_reader(listening.fileno())
        loop.call_later(ACCEPT_RETRY_SECONDS, self._accept_again, listening)
        now = time.monotonic()
        if now - self._accept_warned >= ACCEPT_ERROR_INTERVAL or not self._accept_warned:
            self._accept_warned = now
            log.error(
                "cannot accept connections: %s (open-file limit %d, %d client connections); "
                "retrying every second, logged once a minute",
                error.strerror or error,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                len(self._connections),
            )

    def _accept_again(self, listening: socket.socket) -> None:
        if not self.stopping and self._loop is not None:
            self._loop.add_reader(listening.fileno(), self._accept, listening)

    def stop(self) -> None:
        """Stop taking connections, finish the answers in progress, close the rest."""
        self.stopping = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(wake.set)

    # -- bookkeeping for the connections ----------------------------------------------

    def _opened(self, connection: _Connection) -> None:
        """A new connection; at the limit, another one makes room for it.

        The one idle longest, as nginx does with keep-alive connections. When none is idle,
        every slot is held by a client still being sent its answers: the one that read
        nothing for longest (nearest its send timeout) goes, the likeliest to be holding a
        slot on purpose, so that new clients (and /healthz) are still answered rather than
        locked out until send timeouts pass.
        """
        self._connections.add(connection)
        self._idle_order[connection] = None
        if self.stopping:  # accepted as the server stopped: it is closed like the idle ones
            connection.shutdown()
            return
        if len(self._connections) <= self.limits.max_connections:
            return
        victim = next((c for c in self._idle_order if c is not connection), None)
        what = "closing the longest idle ones for new ones"
        if victim is None:
            victim = next(iter(self._sending), None)
            what = "none idle: closing the ones slowest to read their answers for new ones"
        if victim is None:  # only connections lingering over: the new one waits its turn
            victim = connection
            what = "none idle: closing new ones"
        self._closed(victim)
        victim.expire()
        now = time.monotonic()
        if now - self._full_warned.get(what, 0.0) > 60:
            self._full_warned[what] = now
            log.warning("%d connections open, the limit: %s", self.limits.max_connections, what)

    def _closed(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        self._idle_order.pop(connection, None)
        self._sending.pop(connection, None)

    def _sent(self, connection: _Connection) -> None:
        self._sending.pop(connection, None)

    def _progress(self, connection: _Connection) -> None:
        """The client read some of its answers: it goes last in the sending order."""
        self._sending.pop(connection, None)
        if connection in self._connections:
            self._sending[connection] = None

    def _idle(self, connection: _Connection) -> None:
        self._idle_order.pop(connection, None)
        if connection in self._connections:
            self._idle_order[connection] = None

    def _busy(self, connection: _Connection) -> None:
        self._idle_order.pop(connection, None)

    def _tick(self) -> None:
        """Drop every connection whose deadline passed; runs every _TICK seconds."""
        assert self._loop is not None
        now = self._loop.time()
        for connection in list(self._sending):
            transport = connection.transport
            left = transport.get_write_buffer_size() if transport is not None else 0
            if left < connection.unsent:  # progress: the send timeout starts again
                connection.unsent = left
                connection.deadline = now + SEND_TIMEOUT
                self._progress(connection)
            if not left and connection.closing:  # all written: linger, then close
                self._sending.pop(connection, None)
                connection.deadline = now + LINGER_SECONDS
                self._idle(connection)  # nothing left to send: it may make room
        for connection in [c for c in self._connections if c.deadline < now]:
            self._closed(connection)
            connection.expire()
        if not self.stopping:
            self._ticker = self._loop.call_later(_TICK, self._tick)

    def _path(self, url: bytes) -> str | None:
        """`_path(url)`, kept for the next request naming `url` (see PATHS_KEPT)."""
        path = _path(url)
        if len(url) <= PATH_BYTES_KEPT:
            if len(self._paths) >= PATHS_KEPT:
                self._paths.clear()
            self._paths[url] = path
        return path

    def _message(self, response: Response, connection: bytes) -> bytes:
        """`response` as written: the status line, this second's Date, the header lines, the
        Connection line (empty, `_CLOSE` or `_KEEP_ALIVE`), a blank line, and the body.

        A shared answer (a cached file's) is put together once a second and kept, within
        MESSAGES_KEPT answers and MESSAGE_BYTES_KEPT bytes: a feed asked for again and again
        is then written without joining its body to its head (a copy of it) every time.
        """
        now = int(time.time())
        if now != self._date_at:
            self._date_at = now
            self._date_line = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
            self._messages.clear()
            self._kept = 0
        if not response.shared:
            return self._make_head(response, connection) + response.body
        key = (response, connection)
        message = self._messages.get(key)
        if message is None:
            message = self._make_head(response, connection) + response.body
            size = len(message)
            if len(self._messages) < MESSAGES_KEPT and self._kept + size <= MESSAGE_BYTES_KEPT:
                self._messages[key] = message
                self._kept += size
        return message

    def _make_head(self, response: Response, connection: bytes) -> bytes:
        status = response.status
        return b"".join(
            [
                _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status,
                self._date_line,
                response.lines,
                connection,
                b"\r\n",
            ]
        )


# -- the built-in server of a running service ----------------------------------------


@dataclass(frozen=True, slots=True)
class Serving:
    """The built-in server once it listens: its task ends when the server stops."""

    server: HttpServer
    files: StaticFiles
    task: asyncio.Task[bool]
    """True once stopped; False when serving failed (logged)."""

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop taking connections and wait up to `timeout` seconds for the answers in
        progress (then the task is cancelled). Raises nothing."""
        self.server.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.task, timeout)


async def start_server(
    settings: ServerConfig,
    root: Path,
    health: Health,
    metrics: Metrics,
    max_age: Callable[[], int],
    hub: Callable[[], tuple[str, str] | None],
) -> Serving | None:
    """Serve `root`, `/healthz` (`health`) and `/metrics` (`metrics`) as the config's
    `server` section (`settings`) says, on the running event loop, after raising the
    open-file limit; log where and how many connections it takes.

    `max_age` and `hub` are asked again after `StaticFiles.reconfigured()`. Returns the
    `Serving` once the server listens, or None when it could not (logged: the address is
    in use, say). Raises nothing else of its own.
    """
    files = StaticFiles(root, max_age, hub)
    routes = Routes(files, health, metrics)
    before, open_files = raise_open_file_limit()
    capacity = connection_capacity(open_files, settings.max_connections)
    limits = Limits(
        header_timeout=settings.header_timeout,
        keepalive_timeout=settings.keepalive_timeout,
        max_header_bytes=settings.max_header_bytes,
        max_connections=capacity,
    )
    server = HttpServer(routes, settings.host, settings.port, limits)
    task = asyncio.create_task(_serve(server, settings))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():  # it could not listen; `_serve` logged why
        return None
    log.info(
        "serving %s at http://%s:%d/",
        root,
        settings.host,
        settings.port,
        extra=logs.fields(output=str(root), host=settings.host, port=settings.port),
    )
    log.info(
        "open-file limit %d%s: up to %d client connections at once",
        open_files,
        f" (raised from {before})" if open_files > before else "",
        capacity,
    )
    if (settings.max_connections or 0) > capacity:
        log.warning("server.max_connections is more than the open-file limit allows")
    return Serving(server, files, task)


async def _serve(server: HttpServer, settings: ServerConfig) -> bool:
    """Run `server`; False when it could not start (the address is in use, say)."""
    try:
        await server.serve()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror or exc)
        return False
    return True
