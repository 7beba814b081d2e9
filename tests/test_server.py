"""The HTTP server against real requests: paths, methods, conditionals and gzip."""

from __future__ import annotations

import asyncio
import functools
import gzip
import http.client
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest

from aggregator.metrics import Metrics
from aggregator.output import OutputDir
from aggregator.server import (
    FRESH_SECONDS,
    HttpServer,
    Routes,
    StaticFiles,
    accepts_gzip,
    safe_relative,
)
from tests.service import free_port

FEED = b"<?xml version='1.0' encoding='UTF-8'?>\n<feed>" + b"<entry/>" * 200 + b"</feed>\n"


class Served:
    def __init__(self, root: Path, port: int, files: StaticFiles) -> None:
        self.root = root
        self.files = files
        self.base = f"http://127.0.0.1:{port}"
        self.port = port

    def raw(self, method: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        """A request with the path sent exactly as given (no client-side normalizing)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name.replace("_", "-"), value)
            conn.endheaders()
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    root = tmp_path / "public"
    (root / "feeds").mkdir(parents=True)
    (root / "feeds" / "ai.atom").write_bytes(FEED)
    (root / "index.html").write_text("<!doctype html><title>home</title>")
    (root / "feeds" / ".tmp-half").write_text("partial")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    files = StaticFiles(root, lambda: 60)
    app = Routes(files, lambda: (200, {"status": "ok"}), Metrics())
    port = free_port()
    server = HttpServer(app, "127.0.0.1", port)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield Served(root, port, files)
    server.stop()
    thread.join(5)


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/feeds/../../secret.txt",
        "/feeds/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/feeds/..%5c..%5csecret.txt",
        "/feeds\\..\\..\\secret.txt",
        "//secret.txt",
        "/%2fsecret.txt",
        "/link.txt",
        "/feeds/.tmp-half",
        "/feeds/",
        "/feeds",
        "/%00",
        "/index.html%00.atom",
    ],
)
def test_nothing_outside_the_directory_or_hidden_is_served(served: Served, path: str) -> None:
    status, _, body = served.raw("GET", path)
    assert status in (400, 404), (path, status)
    assert b"SECRET" not in body and b"partial" not in body


def test_get_and_head_agree_and_head_has_no_body(served: Served) -> None:
    get = httpx.get(served.base + "/feeds/ai.atom")
    head = httpx.head(served.base + "/feeds/ai.atom")
    assert get.status_code == head.status_code == 200
    assert get.content == FEED and head.content == b""
    for name in ("etag", "last-modified", "content-type", "content-length", "cache-control"):
        assert get.headers[name] == head.headers[name]
    assert get.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert get.headers["cache-control"] == "public, max-age=60"
    assert get.headers["etag"].startswith('"')  # strong
    assert httpx.get(served.base + "/").text.startswith("<!doctype html>")


def test_gzip_when_asked_with_its_own_etag(served: Served) -> None:
    status, headers, body = served.raw("GET", "/feeds/ai.atom", Accept_Encoding="gzip, br")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == FEED and "accept-encoding" in headers["vary"].lower()
    _, plain, plain_body = served.raw("GET", "/feeds/ai.atom", Accept_Encoding="gzip;q=0")
    assert plain_body == FEED and "content-encoding" not in plain
    assert plain["etag"] != headers["etag"]
    not_modified = served.raw(
        "GET", "/feeds/ai.atom", Accept_Encoding="gzip", If_None_Match=headers["etag"]
    )
    assert not_modified[0] == 304


def test_conditional_requests_follow_rfc_9110(served: Served) -> None:
    url = served.base + "/feeds/ai.atom"
    first = httpx.get(url)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    mtime = (served.root / "feeds" / "ai.atom").stat().st_mtime

    def status(**headers: str) -> int:
        return httpx.get(
            url, headers={k.replace("_", "-"): v for k, v in headers.items()}
        ).status_code

    assert status(If_None_Match=etag) == 304
    assert status(If_None_Match=f"W/{etag}") == 304  # weak comparison for GET
    assert status(If_None_Match=f'"other", {etag}') == 304
    assert status(If_None_Match="*") == 304
    assert status(If_None_Match='"other"') == 200
    assert status(If_Modified_Since=modified) == 304
    assert status(If_Modified_Since=formatdate(mtime + 3600, usegmt=True)) == 304
    assert status(If_Modified_Since=formatdate(mtime - 3600, usegmt=True)) == 200
    assert status(If_Modified_Since="not a date") == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3).
    assert status(If_None_Match='"other"', If_Modified_Since=modified) == 200
    response = httpx.get(url, headers={"If-None-Match": etag})
    assert response.content == b"" and response.headers["etag"] == etag
    head = httpx.head(url, headers={"If-None-Match": etag})
    assert head.status_code == 304


def test_what_the_service_writes_removes_or_stamps_is_served_at_once(served: Served) -> None:
    out = OutputDir(served.root)
    out.on_change(served.files.changed)
    url = served.base + "/feeds/ai.atom"
    old = httpx.get(url).headers["etag"]
    writers: list[Callable[[str, bytes], bool]] = [out.write, functools.partial(_batched, out)]
    for n, write in enumerate(writers):
        data = FEED.replace(b"<entry/>", b"<entry>%d</entry>" % n, 1)
        assert write("feeds/ai.atom", data)
        fresh = httpx.get(url, headers={"If-None-Match": old})
        assert fresh.status_code == 200 and fresh.headers["etag"] != old
        assert fresh.content == data
        old = fresh.headers["etag"]
    out.stamp("feeds/ai.atom", 1_000_000_000)
    assert httpx.get(url).headers["last-modified"] == "Sun, 09 Sep 2001 01:46:40 GMT"
    assert out.remove("feeds/ai.atom")
    assert httpx.get(url).status_code == 404


def _batched(out: OutputDir, relative: str, data: bytes) -> bool:
    with out.batch():
        return out.write(relative, data)


def test_a_file_another_program_rewrites_is_served_within_a_second(served: Served) -> None:
    url = served.base + "/feeds/ai.atom"
    old = httpx.get(url).headers["etag"]
    path = served.root / "feeds" / "ai.atom"
    path.write_bytes(FEED.replace(b"<entry/>", b"<entry></entry>", 1))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    written = time.monotonic()
    while True:
        fresh = httpx.get(url, headers={"If-None-Match": old})
        if fresh.status_code == 200 or time.monotonic() - written > FRESH_SECONDS + 1:
            break
        time.sleep(0.05)
    assert fresh.status_code == 200 and fresh.headers["etag"] != old
    assert b"<entry></entry>" in fresh.content
    path.unlink()
    time.sleep(FRESH_SECONDS)
    assert httpx.get(url).status_code == 404


def test_other_methods_are_refused(served: Served) -> None:
    for method in ("POST", "PUT", "DELETE"):
        response = httpx.request(method, served.base + "/feeds/ai.atom")
        assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"


def test_path_rules_and_accept_encoding_parsing() -> None:
    assert safe_relative("/") == "index.html"
    assert safe_relative("/feeds//ai.atom") == "feeds/ai.atom"
    assert safe_relative("/topics/") == "topics/index.html"
    for bad in ("/../x", "/a/../x", "/./x", "/.env", "/a\\b", "/a\x00"):
        assert safe_relative(bad) is None
    assert accepts_gzip("gzip") and accepts_gzip("br, gzip;q=0.5") and accepts_gzip("*")
    assert not accepts_gzip("gzip;q=0") and not accepts_gzip("br") and not accepts_gzip("")


def _slow_read(port: int, request: bytes, pace: float) -> bytes:
    """Send `request` and read the whole answer until the server closes, slowly: 64 KiB per
    `pace` seconds into a small receive buffer, so most of the answer waits in the server."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(40)
    sock.connect(("127.0.0.1", port))
    received = bytearray()
    try:
        sock.sendall(request)
        while chunk := sock.recv(64 * 1024):
            received += chunk
            time.sleep(pace)
    finally:
        sock.close()
    return bytes(received)


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /big.bin HTTP/1.0\r\n\r\n",
    ],
)
def test_a_closing_answer_reaches_a_slow_reader_whole(served: Served, request_line: bytes) -> None:
    # 8 MB at about 2 MB/s takes longer than the linger after the answer is queued (2 s):
    # the connection closes only once everything was sent.
    big = os.urandom(8 * 1024 * 1024)
    (served.root / "big.bin").write_bytes(big)
    answer = _slow_read(served.port, request_line, 0.03)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: %d" % len(big) in head.lower()
    got = len(body)
    assert got == len(big)
    assert body == big, "the bytes differ"


def _answer(reader: BinaryIO) -> tuple[int, bytes]:
    """(status, body) of the next answer on a connection (Content-Length bodies only)."""
    status_line = reader.readline()
    if not status_line:
        raise ConnectionError("closed without an answer")
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(status_line.split()[1]), reader.read(length)


@pytest.mark.parametrize(("count", "size"), [(1000, 32 * 1024), (4000, 8 * 1024)])
def test_a_reading_client_gets_every_pipelined_answer(
    served: Served, count: int, size: int
) -> None:
    # 1,000 answers of 32 KB are more than the socket buffers hold: reading stops until the
    # client catches up, and every request of the reads already made waits its turn. 4,000
    # requests (140 KB) are more than MAX_PIPELINED, and a loop reads them at once (256 KB):
    # parsing stops too, and what is left of the read waits.
    part = os.urandom(size)
    (served.root / "part.bin").write_bytes(part)
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    request = b"GET /part.bin HTTP/1.1\r\nHost: x\r\n\r\n"
    sender = threading.Thread(target=sock.sendall, args=(request * count,))
    sender.start()
    time.sleep(0.5)  # a slow start: the answers pile up in the server
    reader = sock.makefile("rb")
    answered = 0
    try:
        for _ in range(count):
            status, body = _answer(reader)
            assert status == 200 and body == part, status
            answered += 1
    except (ConnectionError, OSError):
        pass
    sender.join(10)
    assert answered == count
    sock.sendall(request)  # and the connection goes on
    assert _answer(reader)[0] == 200
    sock.close()


def _exchange(port: int, data: bytes) -> tuple[int, bytes]:
    """(status, body) of the answer to `data` sent as is on a new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        return _answer(sock.makefile("rb"))


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /feeds/ai.atom HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 names its host
        (b"GET /feeds/ai.atom HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /feeds/ai.atom HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400),
        (b"GET /feeds/ai.atom HTTP/1.0\r\n\r\n", 200),  # HTTP/1.0 need not
        (b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (b"GET /feeds/ai.atom HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /feeds/ai.atom HTTP/3.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /feeds/ai.atom HTTP/0.9\r\n\r\n", 505),
        (b"GET http://x.example HTTP/1.1\r\nHost: x.example\r\n\r\n", 200),  # the index
        (b"GET http://x.example?a=b HTTP/1.1\r\nHost: x.example\r\n\r\n", 200),
        (b"GET http://x.example/feeds/ai.atom HTTP/1.1\r\nHost: x.example\r\n\r\n", 200),
    ],
)
def test_request_lines_and_host_follow_rfc_9112(served: Served, data: bytes, status: int) -> None:
    got, body = _exchange(served.port, data)
    assert got == status, body[:80]
    if b"http://x.example HTTP" in data or b"?a=b" in data:
        assert b"<title>home</title>" in body


def test_a_config_change_forgets_cached_files_only_when_their_headers_change(
    tmp_path: Path,
) -> None:
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "ai.atom").write_bytes(FEED)
    max_age = [60]
    hub: list[tuple[str, str]] = []
    files = StaticFiles(tmp_path, lambda: max_age[0], lambda: hub[0] if hub else None)
    first = files.get("/feeds/ai.atom")
    assert first is not None
    assert files.reconfigured() is False  # a reload that changes nothing the headers hold
    assert files.get("/feeds/ai.atom") is first  # not read and gzipped again
    max_age[0] = 300
    assert files.reconfigured() is True
    again = files.get("/feeds/ai.atom")
    assert again is not None and again is not first
    assert (b"cache-control", b"public, max-age=300") in again.plain.headers
    hub.append(("https://hub.example/", "https://feeds.example/"))
    assert files.reconfigured() is True
    linked = files.get("/feeds/ai.atom")
    assert linked is not None and any(name == b"link" for name, _ in linked.plain.headers)


def test_a_file_read_while_the_config_changes_is_not_kept_with_the_old_headers(
    tmp_path: Path,
) -> None:
    """The config changes (on the scheduler's thread) while a request is reading a file and
    making its headers from the old config: that answer may carry the old max age, the
    next one the new."""
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "ai.atom").write_bytes(FEED)
    max_age = [60]
    files: StaticFiles

    def asked() -> int:
        value = max_age[0]
        if value == 60 and asked_during_a_read[0]:  # the reload lands in the middle
            asked_during_a_read[0] = False
            max_age[0] = 300
            assert files.reconfigured() is True
        return value

    asked_during_a_read = [False]
    files = StaticFiles(tmp_path, asked)
    asked_during_a_read[0] = True
    during = files.get("/feeds/ai.atom")
    assert during is not None
    assert (b"cache-control", b"public, max-age=60") in during.plain.headers
    after = files.get("/feeds/ai.atom")
    assert after is not None
    assert (b"cache-control", b"public, max-age=300") in after.plain.headers


def _raw_answers(port: int, requests: list[bytes]) -> list[bytes]:
    """The raw bytes of the answers to `requests`, sent at once on one connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(requests))
        reader = sock.makefile("rb")
        raw = []
        for request in requests:
            lines = []
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                lines.append(line)
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length" and request.startswith(b"GET "):
                    length = int(value)
            raw.append(b"".join(lines) + b"\r\n" + reader.read(length))
        return raw


def _without_date(answer: bytes) -> bytes:
    lines = answer.split(b"\r\n")
    assert lines[1].startswith(b"date: "), lines[:3]
    return b"\r\n".join(lines[:1] + lines[2:])


def test_answers_of_a_file_are_the_same_bytes_each_time_but_for_the_date(served: Served) -> None:
    # A file's answers are put together once a second and kept: what is kept must be what
    # would be made anew, whatever the second, the method or the Connection header.
    identity = {"accept-encoding": "identity"}
    etag = httpx.get(served.base + "/feeds/ai.atom", headers=identity).headers["etag"]
    get = b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\n\r\n"
    head = b"HEAD /feeds/ai.atom HTTP/1.1\r\nHost: x\r\n\r\n"
    cond = b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n" % etag.encode()
    kept = b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    first = _raw_answers(served.port, [get, head, cond, kept, get])
    time.sleep(1.1)  # another second: another Date, the answers put together again
    second = _raw_answers(served.port, [get, head, cond, kept, get])
    assert [_without_date(a) for a in first] == [_without_date(a) for a in second]
    plain, bare, not_modified, keep_alive, again = (_without_date(a) for a in first)
    assert again == plain and plain.endswith(b"\r\n\r\n" + FEED)
    assert plain == bare + FEED  # HEAD: the same head, Content-Length included
    assert plain.startswith(b"HTTP/1.1 200 OK\r\netag: " + etag.encode() + b"\r\n")
    assert b"content-length: %d\r\n" % len(FEED) in bare
    assert not_modified == b"HTTP/1.1 304 Not Modified" + bare.replace(
        b"content-length: %d\r\n" % len(FEED), b""
    ).removeprefix(b"HTTP/1.1 200 OK")
    assert keep_alive == bare.replace(b"\r\n\r\n", b"\r\nconnection: keep-alive\r\n\r\n") + FEED
    assert first[0].split(b"\r\n")[1] != second[0].split(b"\r\n")[1]  # the Date moved on


def test_metrics_count_every_answer(served: Served) -> None:
    url = served.base + "/feeds/ai.atom"
    etag = httpx.get(url).headers["etag"]
    httpx.head(url)
    for _ in range(2):
        assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert httpx.get(served.base + "/nothing-here").status_code == 404
    text = httpx.get(served.base + "/metrics").text
    assert 'aggregator_http_requests_total{status="200"} 2.0' in text
    assert 'aggregator_http_requests_total{status="304"} 2.0' in text
    assert 'aggregator_http_requests_total{status="404"} 1.0' in text
    again = httpx.get(served.base + "/metrics").text  # the first /metrics counts too
    assert 'aggregator_http_requests_total{status="200"} 3.0' in again
