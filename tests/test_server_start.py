"""The built-in server as the service starts it from the config's `server` section:
listening, its start-up log lines, a busy address, and stopping."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from aggregator import loops
from aggregator.config import ServerConfig
from aggregator.metrics import Metrics
from aggregator.server import RECEIVE_BUFFER, Serving, start_server
from tests.service import free_port

HUB = ("https://hub.example/", "http://127.0.0.1/")
T = TypeVar("T")


def health() -> tuple[int, dict[str, Any]]:
    return 200, {"status": "ok"}


LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(loops.new_event_loop, id="uvloop"),  # the service's
]


@pytest.mark.parametrize("new_loop", LOOPS)
def test_the_server_serves_the_directory_and_says_where(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    (tmp_path / "index.html").write_text("<p>hello</p>\n")
    settings = ServerConfig(port=free_port(), max_connections=5)
    got: dict[str, object] = {}

    async def main() -> None:
        serving = await start_server(settings, tmp_path, health, Metrics(), lambda: 60, lambda: HUB)
        assert serving is not None and serving.server.started
        base = f"http://127.0.0.1:{settings.port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            page, status = await client.get("/"), await client.get("/healthz")
        got.update(page=page.text, cache=page.headers["cache-control"], health=status.json())
        assert serving.server.limits.max_connections == 5
        await serving.stop()
        assert serving.task.done() and serving.task.result() is True

    with (
        caplog.at_level(logging.INFO, logger="aggregator"),
        asyncio.Runner(loop_factory=new_loop) as runner,
    ):
        runner.run(main())
    assert got["page"] == "<p>hello</p>\n" and got["cache"] == "public, max-age=60"
    assert got["health"] == {"status": "ok"}
    lines = [r.getMessage() for r in caplog.records if r.name == "aggregator"]
    assert lines[0] == f"serving {tmp_path} at http://127.0.0.1:{settings.port}/"
    assert lines[1].startswith("open-file limit ")
    assert lines[1].endswith(": up to 5 client connections at once")
    assert len(lines) == 2


def test_more_connections_than_the_open_file_limit_allows_are_warned_of(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServerConfig(port=free_port(), max_connections=1 << 30)

    async def main() -> None:
        serving = await start_server(
            settings, tmp_path, health, Metrics(), lambda: 60, lambda: None
        )
        assert serving is not None
        assert serving.server.limits.max_connections < 1 << 30
        await serving.stop()

    with caplog.at_level(logging.INFO, logger="aggregator"):
        asyncio.run(main())
    assert caplog.records[-1].levelno == logging.WARNING
    assert caplog.records[-1].getMessage() == (
        "server.max_connections is more than the open-file limit allows"
    )


def test_a_busy_address_is_logged_and_nothing_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = ServerConfig(port=port)

        async def main() -> object:
            return await start_server(
                settings, tmp_path, health, Metrics(), lambda: 60, lambda: None
            )

        with caplog.at_level(logging.INFO, logger="aggregator"):
            assert asyncio.run(main()) is None
    messages = [r.getMessage() for r in caplog.records if r.name == "aggregator"]
    assert len(messages) == 1 and messages[0].startswith(f"cannot listen on 127.0.0.1:{port}: ")
    assert caplog.records[-1].levelno == logging.ERROR


def _families(host: str) -> set[socket.AddressFamily]:
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return set()
    return {info[0] for info in infos}


def _while_serving(
    tmp_path: Path,
    settings: ServerConfig,
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    use: Callable[[Serving], Awaitable[T]],
) -> T:
    """`use(serving)` while `tmp_path` (an index page) is served on a loop of `new_loop`."""
    (tmp_path / "index.html").write_text("<p>hello</p>\n")

    async def main() -> T:
        serving = await start_server(
            settings, tmp_path, health, Metrics(), lambda: 60, lambda: None
        )
        assert serving is not None
        try:
            return await use(serving)
        finally:
            await serving.stop()

    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main())


async def _page(url: str) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(url)).text


@pytest.mark.parametrize("new_loop", LOOPS)
def test_a_host_name_with_ipv4_and_ipv6_addresses_is_served_on_both(
    tmp_path: Path, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    if _families("localhost") != {socket.AF_INET, socket.AF_INET6}:
        pytest.skip("localhost does not name both an IPv4 and an IPv6 address here")
    settings = ServerConfig(host="localhost", port=free_port())

    async def use(serving: Serving) -> list[str]:
        return [
            await _page(f"http://{address}:{settings.port}/") for address in ("127.0.0.1", "[::1]")
        ]

    assert _while_serving(tmp_path, settings, new_loop, use) == ["<p>hello</p>\n"] * 2


@pytest.mark.parametrize("new_loop", LOOPS)
def test_an_ipv6_address_is_served(
    tmp_path: Path, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    if socket.AF_INET6 not in _families("::1"):
        pytest.skip("no IPv6 here")
    settings = ServerConfig(host="::1", port=free_port())

    async def use(serving: Serving) -> str:
        return await _page(f"http://[::1]:{settings.port}/")

    assert _while_serving(tmp_path, settings, new_loop, use) == "<p>hello</p>\n"


@pytest.mark.parametrize("new_loop", LOOPS)
def test_connections_send_at_once_and_buffer_little(
    tmp_path: Path, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    # TCP_NODELAY: small answers go out at once, not after the client's delayed ACK; a
    # small receive buffer: a client that sends without reading holds little (RECEIVE_BUFFER).
    settings = ServerConfig(port=free_port())

    async def use(serving: Serving) -> list[tuple[int, int]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        found = []
        for connection in serving.server._connections:
            assert connection.transport is not None
            sock = connection.transport.get_extra_info("socket")
            nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            found.append((nodelay, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)))
        writer.close()
        return found

    found = _while_serving(tmp_path, settings, new_loop, use)
    assert len(found) == 1
    nodelay, received = found[0]
    assert nodelay and received <= 2 * RECEIVE_BUFFER + 4096
