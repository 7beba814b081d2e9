"""The link checker's connections, seen from a real HTTP server on 127.0.0.1: kept alive
and shared within a host's limit, never reused once the server closed them, and within
that limit for one server however URLs and redirects spell its name."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aggregator.checker import run_checks
from aggregator.config import LinksConfig, config_from
from aggregator.links import Request
from tests.conftest import running

UA = "aggregator-tests (+http://127.0.0.1/)"


class Recording(BaseHTTPRequestHandler):
    """/ok answers at once, /slow after 0.2 s, /hop redirects to the server's `target`;
    the server notes each request's connection and how many /slow ones were in flight."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_: object) -> None:
        pass

    def do_HEAD(self) -> None:
        server: Any = self.server
        with server.lock:
            server.connections.append(self.client_address)
        if self.path.startswith("/hop"):
            self.send_response(302)
            self.send_header("Location", server.target)
        elif self.path.startswith("/slow"):
            with server.lock:
                server.in_flight += 1
                server.most = max(server.most, server.in_flight)
            time.sleep(0.2)
            with server.lock:
                server.in_flight -= 1
            self.send_response(200)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class ClosingIdle(Recording):
    """Closes a connection that stays idle for 0.2 s (as servers with a short keep-alive
    do), without saying so in its answers."""

    timeout = 0.2


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], address: str = "127.0.0.1") -> Iterator[Any]:
    server: Any = ThreadingHTTPServer((address, 0), handler)
    server.daemon_threads = True
    server.lock, server.connections, server.in_flight, server.most = threading.Lock(), [], 0, 0
    server.target = ""
    with running(server):
        yield server


@pytest.fixture
def recording() -> Iterator[Any]:
    with serving(Recording) as server:
        yield server


@pytest.fixture
def closing_idle() -> Iterator[Any]:
    with serving(ClosingIdle) as server:
        yield server


def config(*servers: Any, **overrides: Any) -> LinksConfig:
    settings = {
        "allowed_ports": tuple(server.server_address[1] for server in servers),
        "allow_networks": ("127.0.0.0/8",),
        "host_interval": 0,
    }
    settings.update(overrides)
    return config_from({"links": settings}).links


def test_a_host_s_urls_share_its_kept_alive_connections(recording: Any) -> None:
    port = recording.server_address[1]
    urls = [Request(f"http://127.0.0.1:{port}/ok/{n}") for n in range(8)]
    result = run_checks(config(recording, per_host=2), UA, urls)
    assert [a.status for a in result.attempts] == [200] * 8
    assert len(recording.connections) == 8
    assert 1 <= len(set(recording.connections)) <= 2


def test_a_connection_the_server_closed_while_idle_is_not_reused(closing_idle: Any) -> None:
    port = closing_idle.server_address[1]
    urls = [Request(f"http://127.0.0.1:{port}/ok/{n}") for n in range(3)]
    result = run_checks(config(closing_idle, per_host=1, host_interval=0.5), UA, urls)
    assert [(a.status, a.failure) for a in result.attempts] == [(200, None)] * 3
    assert len(set(closing_idle.connections)) == 3  # each asked on a new connection


def test_redirects_from_many_hosts_to_one_wait_for_its_connections(recording: Any) -> None:
    target = f"http://127.0.0.1:{recording.server_address[1]}/slow"
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(serving(Recording, f"127.0.0.{2 + n}")) for n in range(6)]
        for source in sources:
            source.target = target
        urls = [Request(f"http://{s.server_address[0]}:{s.server_address[1]}/hop") for s in sources]
        result = run_checks(config(recording, *sources, per_host=1), UA, urls)
    assert [(a.status, a.failure) for a in result.attempts] == [(200, None)] * 6
    assert all(a.final_url == target for a in result.attempts)
    assert recording.most == 1  # the target's one connection, taken in turn


class Counting(ThreadingHTTPServer):
    """Notes, as each connection arrives, how many of its connections are open (that one
    included): a connection the client closed is not, though its thread may not know yet."""

    def process_request(self, request: Any, client_address: Any) -> None:
        server: Any = self
        with server.lock:
            server.sockets = [s for s in server.sockets if _still_open(s)] + [request]
            server.most_open = max(server.most_open, len(server.sockets))
        super().process_request(request, client_address)


def _still_open(sock: socket.socket) -> bool:
    """Whether the client has not closed `sock` (and this server has not either)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True  # nothing to read: open and idle
    except OSError:
        return False  # reset by the client, or closed by its thread


def test_one_server_s_open_connections_stay_within_per_host_however_it_is_named() -> None:
    server: Any = Counting(("127.0.0.20", 0), Recording)
    server.daemon_threads = True
    server.lock, server.connections, server.in_flight, server.most = threading.Lock(), [], 0, 0
    server.sockets, server.most_open = [], 0
    port = server.server_address[1]
    # Dotted, a decimal integer, hex, and inet_aton's short form: one server, 127.0.0.20.
    names = ["127.0.0.20", "2130706452", "0x7f000014", "127.20"]
    with running(server), contextlib.ExitStack() as stack:
        sources = [stack.enter_context(serving(Recording, f"127.0.0.{21 + n}")) for n in range(4)]
        urls = [Request(f"http://{name}:{port}/slow/{n}") for n in range(4) for name in names]
        for n, source in enumerate(sources):  # and redirects to it, spelled each way
            source.target = f"http://{names[n]}:{port}/slow/hop"
            host, source_port = source.server_address
            urls += [Request(f"http://{host}:{source_port}/hop/{k}") for k in range(2)]
        result = run_checks(config(server, *sources, per_host=2), UA, urls)
    assert [(a.status, a.failure) for a in result.attempts] == [(200, None)] * len(urls)
    assert len(set(server.connections)) > 2  # connections did come and go
    assert server.most_open <= 2
