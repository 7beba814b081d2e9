"""The built-in server under abuse: idle and slow clients, huge heads, the open-file limit.

Each test runs a real `aggregator run` and attacks it over real sockets, then
checks that everyone else is still answered and that the process stays small.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import select
import signal
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest

from aggregator.server import BACKLOG, connection_capacity
from tests.conftest import seed_text
from tests.feedcheck import check_feed, entry_titles
from tests.service import RunningService

QUIET = {"links": {"enabled": False}, "thumbnails": {"enabled": False}}
"""No link checks or image fetches: they would only add noise to memory figures."""


def _own_file_limit(needed: int) -> None:
    """Let this test process hold `needed` sockets, or skip when the system cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the open-file hard limit ({hard}) is below {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _start(root: Path, **settings: Any) -> RunningService:
    svc = RunningService(root, **{**QUIET, **settings})
    (svc.seeds / "ai.md").write_text(
        seed_text(title="AI one", topics=["AI"], originalUrl="https://s.example/1")
    )
    return svc


def _big_feed(svc: RunningService) -> None:
    """Seeds that make feeds/ai.atom about 80 KB (more than socket buffers hold at once)."""
    for n in range(40):
        (svc.seeds / f"big{n}.md").write_text(
            seed_text(
                title=f"Big {n}",
                topics=["AI"],
                originalUrl=f"https://s.example/big/{n}",
                excerpt=f"Words {n} " * 200,
            )
        )


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    with _start(tmp_path, server={"header_timeout": 1, "keepalive_timeout": 1}) as svc:
        svc.start()
        yield svc


_connected: list[socket.socket] = []
"""The sockets `connect` made in this test: closed after it, whatever it left open."""


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _connected:
        _connected.pop().close()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    _connected.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return sock


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (reading and dropping any answer)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:  # reset
            return True
    return False


def ready(sock: socket.socket, timeout: float) -> tuple[bool, bool]:
    """(readable, writable) within `timeout` seconds (poll: any descriptor number works)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLOUT)
    events = dict(poller.poll(timeout * 1000)).get(sock.fileno(), 0)
    readable = bool(events & (select.POLLIN | select.POLLHUP | select.POLLERR))
    return readable, bool(events & select.POLLOUT)


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


def timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    response = httpx.get(url, timeout=10)
    return response.status_code, time.monotonic() - started


_READERS: weakref.WeakKeyDictionary[socket.socket, BinaryIO] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer read off a raw socket (Content-Length bodies only).

    One buffered reader per socket, so bytes of a pipelined next answer are kept.
    """
    reader = _READERS.get(sock)
    if reader is None:
        reader = _READERS[sock] = sock.makefile("rb")
    status_line = reader.readline()
    if not status_line:
        raise ConnectionError("closed without an answer")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline().decode("latin-1").strip()) != "":
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    size = 0 if head or status == 304 else int(headers.get("content-length", "0"))
    return status, headers, reader.read(size)


# -- idle and slow connections ---------------------------------------------------------


def test_1500_idle_connections_leave_healthz_and_feeds_answering(tmp_path: Path) -> None:
    _own_file_limit(2048)
    with _start(tmp_path) as svc:
        svc.start()
        idle = [connect(svc.port) for _ in range(1500)]
        try:
            for path in ("/healthz", "/feeds/ai.atom", "/healthz"):
                status, seconds = timed_get(svc.base + path)
                assert status == 200, (path, status)
                assert seconds < 1.0, (path, seconds)
            assert entry_titles(check_feed(svc.get("/feeds/ai.atom").content)) == ["AI one"]
        finally:
            for sock in idle:
                sock.close()
        assert svc.stop() == 0


def test_at_a_low_open_file_limit_idle_connections_never_exhaust_descriptors(
    tmp_path: Path,
) -> None:
    # The service's hard limit is 1024, so it cannot raise it: 1,500 idle clients are more
    # than its descriptors, and each batch of accepted sockets must fit in what is kept free
    # for them before the longest idle connections are closed.
    _own_file_limit(2048)
    with _start(tmp_path) as svc:
        svc.start(open_files=1024)
        logged = len(svc.log().splitlines())
        idle = [connect(svc.port) for _ in range(1500)]
        try:
            time.sleep(1)
            for path in ("/healthz", "/feeds/ai.atom", "/healthz"):
                status, seconds = timed_get(svc.base + path)
                assert status == 200, (path, status)
                assert seconds < 1.0, (path, seconds)
            time.sleep(1)
            added = svc.log().splitlines()[logged:]
            assert len(added) <= 3, "\n".join(added[:20])
        finally:
            for sock in idle:
                sock.close()
        assert svc.stop() == 0


def test_running_out_of_descriptors_is_logged_once_not_per_accept(tmp_path: Path) -> None:
    # With 160 descriptors (room for 40 clients), a full accept batch overshoots: accepting
    # fails (EMFILE) and pauses a second at a time, which is logged as one line, not a
    # traceback per failure. The batch is made certain by queueing a whole backlog of
    # connections while the service is stopped (SIGSTOP), on top of 40 held ones.
    _own_file_limit(2048)
    with _start(tmp_path) as svc:
        svc.start(open_files=160)
        assert svc.process is not None
        logged = len(svc.log().splitlines())
        idle = [connect(svc.port) for _ in range(60)]
        assert svc.get("/healthz").status_code == 200
        os.kill(svc.process.pid, signal.SIGSTOP)
        try:
            idle += [connect(svc.port) for _ in range(BACKLOG)]  # the kernel queues them
        finally:
            os.kill(svc.process.pid, signal.SIGCONT)
        try:
            for _ in range(3):
                assert svc.get("/healthz").status_code == 200
            time.sleep(2)
            added = svc.log().splitlines()[logged:]
            # (A scan may fail for want of descriptors too, and say so: a real error here.)
            assert sum("cannot accept connections" in line for line in added) == 1, added
            noise = [line for line in added if "out of system resource" in line]
            assert not noise and not any("Traceback" in line for line in added), added[:20]
        finally:
            for sock in idle:
                sock.close()
        assert svc.stop() == 0


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    service: RunningService,
) -> None:
    silent = connect(service.port)
    assert closed_within(silent, 5)  # header_timeout: 1 (the default, 10 s, would not be)


def test_a_slowloris_head_is_closed_although_bytes_keep_coming(
    service: RunningService,
) -> None:
    sock = connect(service.port)
    sock.sendall(b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    deadline = time.monotonic() + 6
    closed = False
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"a")
        except OSError:
            closed = True
            break
        time.sleep(0.2)
        if ready(sock, 0)[0]:
            closed = closed_within(sock, 0.1)
            break
    assert closed, "a head sent a byte at a time outlived header_timeout (1 s) by 5 s"
    assert service.get("/healthz").status_code == 200


def test_keep_alive_connections_close_when_idle_not_while_used(service: RunningService) -> None:
    sock = connect(service.port)
    # Four requests 0.6 s apart take longer than header_timeout (1 s) and
    # keepalive_timeout (1 s) together: each limit counts for one request.
    for _ in range(4):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = read_response(sock)
        assert status == 200
        time.sleep(0.6)
    assert closed_within(sock, 4)  # then idle: closed after keepalive_timeout


def test_at_the_connection_limit_the_longest_idle_connection_makes_room(tmp_path: Path) -> None:
    server = {"max_connections": 20, "header_timeout": 60, "max_header_bytes": 4096}
    with _start(tmp_path, server=server) as svc:
        svc.start()
        sock = connect(svc.port)  # the configured cap, not the default, holds
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + _headers(5000) + b"\r\n")
        assert read_response(sock)[0] == 431
        sock.close()
        idle = []
        for _ in range(20):
            idle.append(connect(svc.port))
            time.sleep(0.01)
        try:
            for _ in range(3):  # each new connection closes the one idle longest
                assert svc.get("/healthz").status_code == 200
            assert closed_within(idle[0], 5)
            assert not closed_within(idle[-1], 0.5)
            # An open idle connection still works.
            idle[-1].sendall(b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body = read_response(idle[-1])
            assert status == 200 and entry_titles(check_feed(body)) == ["AI one"]
        finally:
            for sock in idle:
                sock.close()
        assert "up to 20 client connections" in svc.log()


def test_when_every_slot_is_busy_sending_the_slowest_reader_makes_room(tmp_path: Path) -> None:
    with _start(tmp_path, server={"max_connections": 20}) as svc:
        _big_feed(svc)
        svc.start()
        # 20 clients that ask for 100 feeds each (more than the socket buffers hold) and read
        # nothing: no connection is idle.
        slow = []
        for _ in range(20):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", svc.port))
            sock.sendall(b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\n\r\n" * 100)
            slow.append(sock)
            time.sleep(0.05)
        try:
            time.sleep(0.5)
            for _ in range(3):  # each new client closes the reader nearest its send timeout
                assert svc.get("/healthz").status_code == 200
            assert closed_within(slow[0], 5)
            log = svc.log()
            assert "none idle: closing the ones" in log, log
            assert "closing the longest idle" not in log
        finally:
            for sock in slow:
                sock.close()
        assert svc.stop() == 0


# -- request head size -------------------------------------------------------------------


def _headers(size: int) -> bytes:
    line = b"X-Filler: " + b"z" * 90 + b"\r\n"
    return line * (size // len(line))


def test_a_head_over_the_cap_gets_431_and_one_under_it_200(service: RunningService) -> None:
    sock = connect(service.port)
    sock.sendall(b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\n" + _headers(24_000) + b"\r\n")
    assert read_response(sock)[0] == 200  # under the default 32 KiB
    sock.close()
    sock = connect(service.port)
    sock.sendall(b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\n" + _headers(40_000) + b"\r\n")
    assert read_response(sock)[0] == 431
    assert closed_within(sock, 5)
    sock = connect(service.port)
    sock.sendall(b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(sock)[0] == 414
    assert service.get("/healthz").status_code == 200


def _flood_head(port: int, total: int, seen: list[bytes]) -> None:
    """Send a head of `total` bytes, stopping once the server answers or closes."""
    sock = connect(port)
    chunk = _headers(64 * 1024)
    sent = 0
    try:
        sock.sendall(b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\n")
        while sent < total:
            readable, writable = ready(sock, 5)
            if readable:
                break
            if writable:
                sent += sock.send(chunk)
        sock.settimeout(5)
        seen.append(sock.recv(64))
    except OSError:
        seen.append(b"")  # closed on us: also a refusal
    finally:
        sock.close()


def test_huge_heads_are_refused_early_and_memory_stays_flat(tmp_path: Path) -> None:
    with _start(tmp_path) as svc:
        svc.start()
        assert svc.process is not None
        warm: list[bytes] = []
        _flood_head(svc.port, 1024 * 1024, warm)
        before = rss_kib(svc.process.pid)
        seen: list[bytes] = []
        floods = [
            threading.Thread(target=_flood_head, args=(svc.port, 20 * 1024 * 1024, seen))
            for _ in range(4)
        ]
        for flood in floods:
            flood.start()
        for flood in floods:
            flood.join(60)
        grown = rss_kib(svc.process.pid) - before
        assert len(seen) == 4
        for first in [*warm, *seen]:
            assert first == b"" or first.startswith(b"HTTP/1.1 431 "), first
        # 80 MB were offered; the server read a little over 32 KiB of each.
        assert grown < 16 * 1024, f"RSS grew by {grown} KiB"
        assert svc.get("/healthz").status_code == 200
        assert svc.stop() == 0


def test_a_client_that_pipelines_without_reading_holds_no_memory(tmp_path: Path) -> None:
    with _start(tmp_path) as svc:
        _big_feed(svc)
        svc.start()
        assert svc.process is not None
        before = rss_kib(svc.process.pid)
        size = len(svc.get("/feeds/ai.atom").content)
        assert size > 60_000
        sock = connect(svc.port)
        sock.setblocking(False)
        request = b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
        offered = 0
        stalled = time.monotonic()
        while time.monotonic() - stalled < 1.5 and offered < 100_000:
            try:
                sock.send(request)
                offered += 1000
                stalled = time.monotonic()
            except BlockingIOError:
                time.sleep(0.05)
            except OSError:  # the server gave up on this client: fine too
                break
        status, seconds = timed_get(svc.base + "/healthz")
        assert status == 200 and seconds < 1.0
        grown = rss_kib(svc.process.pid) - before
        # Answering everything offered would take offered × size bytes (hundreds of MB).
        assert grown < 24 * 1024, f"RSS grew by {grown} KiB for {offered} requests"
        sock.close()
        assert svc.stop() == 0


# -- the protocol -------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(service: RunningService) -> None:
    sock = connect(service.port)
    sock.sendall(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /feeds/ai.atom HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /feeds/ai.atom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"  # after close: never answered
    )
    assert read_response(sock)[0] == 200
    status, headers, body = read_response(sock, head=True)
    assert status == 200 and int(headers["content-length"]) > 0 and body == b""
    assert read_response(sock)[0] == 404
    status, headers, body = read_response(sock)
    assert status == 200 and headers["connection"] == "close"
    assert entry_titles(check_feed(body)) == ["AI one"]
    assert closed_within(sock, 3)


def test_garbage_bodies_and_http_1_0(service: RunningService) -> None:
    sock = connect(service.port)
    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
    assert read_response(sock)[0] == 400
    assert closed_within(sock, 3)

    sock = connect(service.port)  # a body is never read: answered, then the connection closes
    sock.sendall(b"POST /feeds/ai.atom HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    status, headers, _ = read_response(sock)
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert closed_within(sock, 3)

    sock = connect(service.port)
    sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert read_response(sock)[0] == 200
    assert closed_within(sock, 3)

    sock = connect(service.port)
    sock.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status, headers, _ = read_response(sock)
    assert status == 200 and headers["connection"] == "keep-alive"
    sock.sendall(b"GET /feeds/ai.atom?x=1 HTTP/1.0\r\n\r\n")
    assert read_response(sock)[0] == 200


def test_stopping_with_idle_and_half_sent_requests_is_quick(tmp_path: Path) -> None:
    with _start(tmp_path, server={"header_timeout": 60, "keepalive_timeout": 60}) as svc:
        svc.start()
        socks = [connect(svc.port) for _ in range(50)]
        for sock in socks[:25]:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert svc.stop() == 0
        assert time.monotonic() - started < 8
        for sock in socks:
            assert closed_within(sock, 1)
            sock.close()


def test_the_service_raises_its_open_file_limit_and_says_what_it_holds(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"the open-file hard limit ({hard}) is too low to tell")
    svc = _start(tmp_path)
    low = max(256, len(os.listdir("/proc/self/fd")) + 64)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        svc.start(wait=False)  # inherits the low soft limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with svc:
        svc.wait_healthy()
        assert svc.process is not None
        limits = Path(f"/proc/{svc.process.pid}/limits").read_text()
        match = re.search(r"^Max open files\s+(\d+)\s+(\S+)", limits, re.MULTILINE)
        assert match, limits
        assert match.group(1) == match.group(2) != str(low)
        logged = re.search(r"up to (\d+) client connections", svc.log())
        assert logged, svc.log()
        assert f"raised from {low}" in svc.log()
        assert int(logged.group(1)) > low
        with contextlib.suppress(OSError):
            assert svc.stop() == 0


def test_connection_capacity_leaves_descriptors_for_everything_else() -> None:
    # FD_RESERVE: three accept batches of BACKLOG sockets, and 128 for the rest.
    assert connection_capacity(1024, None) == 512
    assert connection_capacity(1_048_576, None) == 1_048_064
    assert connection_capacity(300, None) == 75  # a tiny limit: a quarter of it
    assert connection_capacity(1024, 100) == 100
    assert connection_capacity(1024, 5000) == 512  # never more than the descriptors allow
