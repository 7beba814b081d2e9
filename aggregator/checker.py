"""Checking URLs over HTTP, politely and safely (httpx and httpcore stay inside this module).

Per URL: HEAD, then a GET whose body is read up to a bound when HEAD is
refused or inconclusive; stored validators sent as conditional headers;
redirects followed hop by hop (each hop checked against the rules, a user
name and password in its target dropped); one deadline for the whole check.

Politeness: at most `per_host` requests in flight to one host, `host_interval`
seconds between two starts to it, `concurrency` in flight overall, and a host
that answers 429/503 with Retry-After is left alone for that long (pauses
asked in earlier runs are given to `run_checks`). A host is the address
connected to, however URLs spell it (`127.1`, `2130706433` and
`localhost` are one server): each name is resolved once per run, and that one
answer both keys the limits and is what connections go to. Each origin has its
own small connection pool (all sharing one SSL context), so neither one slow
host nor one big pool holds up the others; the connections open to one server
(address and port), whichever pools keep them, are `per_host` at most too.

Not a way in: the address actually connected to is checked, after DNS and on
every hop, by the network backend that opens the socket, with no second
lookup in between (`GuardedBackend`); environment proxies are ignored.

Cheap per request: requests go straight to the origin's transport (no
client), and connections are asyncio transports read through a small
buffering protocol (`_Stream`) rather than httpcore's AnyIO streams, whose
cancel scopes and attribute lookups around every read and write took about a
quarter of a check's CPU; each origin's connections are kept by a small pool
of the checker's own (`_Pool`, one request per connection at a time) rather
than httpcore's general one, whose bookkeeping and AnyIO locks took about a
fifth of what was left; the loop is uvloop's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import gc
import heapq
import ipaddress
import itertools
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from aggregator import __version__, loops
from aggregator.config import LinksConfig
from aggregator.links import (
    Attempt,
    Failure,
    Hop,
    IPNetwork,
    Request,
    RunResult,
    address_allowed,
    politeness_key,
    retry_after,
    url_allowed,
)
from aggregator.urls import host_of, http_url, without_userinfo

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""host, port → IP addresses (raises `NameNotResolved`)."""

REDIRECTS = frozenset({301, 302, 303, 307, 308})


class CheckError(Exception):
    """A check failed before an HTTP answer; `failure` says how."""

    failure = Failure.PROTOCOL

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NameNotResolved(CheckError):
    failure = Failure.DNS


class NameLookupFailed(CheckError):
    """A temporary DNS failure: says nothing about the site."""

    failure = Failure.UNREACHABLE


class AddressBlocked(CheckError):
    failure = Failure.BLOCKED


class InvalidHost(CheckError):
    failure = Failure.INVALID


class ConnectFailed(CheckError):
    def __init__(self, detail: str, failure: Failure) -> None:
        super().__init__(detail)
        self.failure = failure


_DNS_THREADS = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="links-dns")
"""Lookups block a thread each: enough of them that slow names cannot starve the rest."""


async def system_resolver(host: str, port: int) -> list[str]:
    """Addresses of `host` from the system resolver, in its order."""
    lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = await asyncio.get_running_loop().run_in_executor(_DNS_THREADS, lookup)
    except UnicodeError:
        raise InvalidHost(f"{host} is not a valid host name") from None
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            raise NameNotResolved(f"{host} does not resolve") from None
        raise NameLookupFailed(f"cannot look up {host} ({exc.strerror})") from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


_READ_BUFFER = 256 * 1024
"""Bytes received ahead of reads at most: past that the socket is not read until they are."""


class _Buffered(asyncio.Protocol):
    """What one connection received and not yet read, and whether it ended."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.ended = False
        self.lost: Exception | None = None
        self.reading_paused = False
        self.waiter: asyncio.Future[bool] | None = None
        self.writable: asyncio.Future[bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _READ_BUFFER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        _wake(self.waiter)

    def eof_received(self) -> bool:
        self.ended = True
        _wake(self.waiter)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.lost = exc
        _wake(self.waiter)
        _wake(self.writable)

    def pause_writing(self) -> None:
        if self.writable is None or self.writable.done():
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        _wake(self.writable)


def _wake(waiter: asyncio.Future[bool] | None, result: bool = True) -> None:
    """Settle `waiter` (True: something happened; False: its time ran out)."""
    if waiter is not None and not waiter.done():
        waiter.set_result(result)


async def _until(waiter: asyncio.Future[bool], timeout: float | None) -> bool:
    """Wait for `waiter`: False when `timeout` seconds passed first."""
    if timeout is None:
        return await waiter
    timer = asyncio.get_running_loop().call_later(timeout, _wake, waiter, False)
    try:
        return await waiter
    finally:
        timer.cancel()


class _Stream(httpcore.AsyncNetworkStream):
    """A connection on asyncio's own transports: what httpcore's AnyIO streams do, without
    the layers of cancel scopes and attribute lookups around every read and write."""

    def __init__(self, transport: asyncio.Transport, protocol: _Buffered) -> None:
        self._transport = transport
        self._protocol = protocol
        self._socket: Any = transport.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not protocol.ended:
            if self._transport.is_closing():
                raise httpcore.ReadError("the connection is closed")
            protocol.waiter = asyncio.get_running_loop().create_future()
            try:
                if not await _until(protocol.waiter, timeout):
                    raise httpcore.ReadTimeout("no data within the read timeout")
            finally:
                protocol.waiter = None
        buffer = protocol.buffer
        if buffer:
            data = bytes(buffer[:max_bytes])
            del buffer[:max_bytes]
            if protocol.reading_paused and len(buffer) <= _READ_BUFFER // 2:
                protocol.reading_paused = False
                self._transport.resume_reading()
            return data
        if protocol.lost is not None:
            raise httpcore.ReadError(str(protocol.lost)) from protocol.lost
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if self._transport.is_closing() or protocol.lost is not None:
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        writable = protocol.writable
        if writable is not None and not writable.done():
            if not await _until(writable, timeout):
                raise httpcore.WriteTimeout("the peer took nothing within the write timeout")
            if protocol.lost is not None:
                raise httpcore.WriteError(str(protocol.lost)) from protocol.lost

    async def aclose(self) -> None:
        self._transport.abort()  # like httpcore's own streams: no TLS close_notify, no lingering

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._transport.abort()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
            self._transport.abort()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self._transport.abort()
            raise
        if transport is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        return _Stream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle connection that received something: it is over
            protocol = self._protocol
            return bool(protocol.buffer) or protocol.ended or _readable(self._socket)
        name = _EXTRA_INFO.get(info)
        return None if name is None else self._transport.get_extra_info(name)


_EXTRA_INFO = {
    "ssl_object": "ssl_object",
    "client_addr": "sockname",
    "server_addr": "peername",
    "socket": "socket",
}
"""httpcore's names for what a stream tells → asyncio's."""


def _readable(sock: Any) -> bool:
    """Whether a socket has something to read (its end included): True once it is gone."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


async def _open_tcp(
    address: str,
    port: int,
    timeout: float | None,
    local_address: str | None,
    socket_options: Iterable[Any] | None,
) -> httpcore.AsyncNetworkStream:
    """A TCP connection to `address` (an IP address: no lookup happens here)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await loop.create_connection(
                _Buffered,
                address,
                port,
                local_addr=(local_address, 0) if local_address else None,
            )
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"no connection within {timeout} s") from exc
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    sock = transport.get_extra_info("socket")
    for option in socket_options or ():
        sock.setsockopt(*option)
    return _Stream(transport, protocol)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the SSRF rules allow, resolving exactly once."""

    def __init__(self, resolve: Resolver, allow: Sequence[IPNetwork]) -> None:
        self.resolve = resolve
        self.allow = tuple(allow)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
        *,
        admit: Callable[[str, int], Awaitable[None]] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A connection to `host`; `admit(address, port)` is awaited before each address
        allowed is tried (`_Claim`: a place among that server's connections)."""
        bare = host.strip("[]")
        try:
            addresses = [str(ipaddress.ip_address(bare))]
        except ValueError:
            addresses = await self.resolve(bare, port)
        allowed = [a for a in addresses if address_allowed(ipaddress.ip_address(a), self.allow)]
        if not allowed:
            shown = addresses[0] if addresses else "nothing"
            raise AddressBlocked(f"{bare} is {shown}, not a public address")
        failure: ConnectFailed | None = None
        timed_out: httpcore.ConnectTimeout | None = None
        for address in allowed:  # a dead address (say, a broken IPv6) must not hide a live one
            if admit is not None:
                await admit(address, port)
            try:
                return await _open_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectTimeout as exc:
                timed_out = exc
            except httpcore.ConnectError as exc:
                failure = _connect_failure(exc, address, port)
        if timed_out is not None:
            raise timed_out
        assert failure is not None
        raise failure

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _errnos(exc: BaseException | None, depth: int = 0) -> list[int]:
    """Every errno in an exception's causes (anyio wraps them in groups)."""
    if exc is None or depth > 10:
        return []
    found = [exc.errno] if isinstance(exc, OSError) and exc.errno else []
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found += _errnos(inner, depth + 1)
    return found + _errnos(exc.__cause__ or exc.__context__, depth + 1)


def _connect_failure(exc: BaseException, address: str, port: int) -> ConnectFailed:
    if errno.ECONNREFUSED in _errnos(exc):
        return ConnectFailed(f"{address}:{port} refused the connection", Failure.REFUSED)
    return ConnectFailed(f"cannot connect to {address}:{port} ({exc})", Failure.UNREACHABLE)


KEEPALIVE_EXPIRY = 30.0
"""Seconds an idle connection is kept for the next request to its origin."""


class _Uncontended:
    """The lock of a connection that only one request holds at a time (`_Pool` sees to
    that): httpcore's is AnyIO's, which yields to the event loop on every acquisition."""

    async def __aenter__(self) -> _Uncontended:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class _Connection(httpcore.AsyncHTTP11Connection):
    """httpcore's HTTP/1.1 connection (h11 underneath), given to one request at a time."""

    def __init__(
        self,
        origin: httpcore.Origin,
        stream: httpcore.AsyncNetworkStream,
        pool: _Pool,
        server: _Server,
    ) -> None:
        super().__init__(origin, stream, keepalive_expiry=KEEPALIVE_EXPIRY)
        self._state_lock = _Uncontended()  # type: ignore[assignment]  # same protocol
        self.pool = pool
        self.server = server
        """Where it is connected to: its place there is free again once it is closed."""


def _wake_first(waiters: deque[asyncio.Future[bool]]) -> None:
    """Wake the first of `waiters` still waiting (those cancelled or timed out meanwhile
    are dropped)."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(True)
            return


class _Server:
    """The connections open to one server (an address and port), whichever pools hold
    them: pools are per origin as spelled, and `127.0.0.20`, `2130706452` and a
    redirect to `0x7f000014` are one server, which gets `per_host` connections at most.

    A connection to open when the server has them all closes the oldest idle one,
    whatever pool keeps it, for the place it frees; or else waits for one to come free
    or idle, within the check's deadline. Closing keeps both the bound and the pace:
    an idle connection serves no request now, and waiting for it instead would stall
    the run until its pool closed (its host done) or it expired (30 s). Waiting is
    only ever for connections in use, each for one request that ends by its deadline;
    a check holds one connection at a time, so none waits on itself.

    A place comes free once the socket is closed, not before: the loop closes an
    aborted transport's socket in a callback (uvloop's too), and `release` has its
    own called after that one.
    """

    __slots__ = ("free", "idle", "waiters")

    def __init__(self, size: int) -> None:
        self.free = size
        """Places left: connections open or being opened take one each."""
        self.idle: dict[_Connection, None] = {}
        """Its idle connections, oldest first."""
        self.waiters: deque[asyncio.Future[bool]] = deque()

    async def admit(self, timeout: float | None) -> None:
        """Take a place, closing an idle connection for it when none is free;
        `httpcore.PoolTimeout` when none came within `timeout` seconds."""
        woken = False
        while self.free <= 0:
            if self.idle:  # its place comes free (to the first in line) once it is closed
                oldest = next(iter(self.idle))
                await oldest.pool.evict(oldest)
            waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            if woken:  # and beaten to it: still first in line
                self.waiters.appendleft(waiter)
            else:
                self.waiters.append(waiter)
            try:
                woken = await _until(waiter, timeout)
                if not woken:
                    raise httpcore.PoolTimeout("no connection to the server came free in time")
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result():
                    self.wake_one()  # woken while being cancelled: pass it on
                raise
        self.free -= 1

    def keep(self, connection: _Connection) -> None:
        """`connection` is idle: a connection waiting for a place may close it for one."""
        self.idle[connection] = None
        if self.waiters:
            self.wake_one()

    def release(self) -> None:
        """A connection is closed (or was never opened): its place is free once its socket
        is, on the loop's next turn."""
        asyncio.get_running_loop().call_soon(self._free_one)

    def _free_one(self) -> None:
        self.free += 1
        self.wake_one()

    def wake_one(self) -> None:
        _wake_first(self.waiters)


class _Servers:
    """The servers of one run, by address connected to and port."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._servers: dict[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int], _Server]
        self._servers = {}

    def of(self, address: str, port: int) -> _Server:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # one socket, either way
            ip = ip.ipv4_mapped
        server = self._servers.get((ip, port))
        if server is None:
            server = self._servers[ip, port] = _Server(self._size)
        return server


class _Claim:
    """The place, among its server's, of one connection being opened: `GuardedBackend`
    asks for one for each address it tries; the last is the connection's."""

    __slots__ = ("_servers", "_timeout", "server")

    def __init__(self, servers: _Servers, timeout: float | None) -> None:
        self.server: _Server | None = None
        self._servers = servers
        self._timeout = timeout

    async def __call__(self, address: str, port: int) -> None:
        self.release()  # the address tried before failed
        server = self._servers.of(address, port)
        await server.admit(self._timeout)
        self.server = server

    def release(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.release()


class _Pool:
    """The connections to one origin: at most `size`, each serving one request at a time,
    idle ones kept for the next (newest first) until they expire or the server ends them.

    What httpcore's connection pool does for this one case (one origin, HTTP/1.1, no
    proxy), without its general bookkeeping: that pool walks every connection and
    queued request twice per request, and its locks, events and cancel-shields are
    AnyIO's, each a yield to the event loop or a cancel scope.
    """

    def __init__(
        self, backend: GuardedBackend, ssl_context: ssl.SSLContext, size: int, servers: _Servers
    ) -> None:
        self._backend = backend
        self._ssl = ssl_context
        self._size = size
        self._servers = servers
        self._open: set[_Connection] = set()
        """Every connection made and not closed, idle or serving."""
        self._idle: list[_Connection] = []
        self._opening = 0
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._closed = False

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send `request` on an idle connection, a new one, or the first to come free."""
        if request.url.scheme not in (b"http", b"https"):
            scheme = request.url.scheme.decode("ascii", "replace")
            raise httpcore.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme}://'."
            )
        while True:
            connection = await self._take_idle()
            if connection is None:
                if len(self._open) + self._opening >= self._size:
                    await self._wait(request.extensions.get("timeout", {}).get("pool"))
                    continue
                connection = await self._connect(request)
            try:
                response = await connection.handle_async_request(request)
            except BaseException:
                await self.give_back(connection)
                raise
            response.stream = _Body(response.stream, self, connection)
            return response

    async def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            del connection.server.idle[connection]
            if connection.is_idle() and not connection.has_expired():
                return connection
            await self._close(connection)  # expired, or the server closed it meanwhile
        return None

    async def _connect(self, request: httpcore.Request) -> _Connection:
        origin = request.url.origin
        host = origin.host.decode("ascii")
        timeouts = request.extensions.get("timeout", {})
        timeout = timeouts.get("connect")
        claim = _Claim(self._servers, timeouts.get("pool"))
        self._opening += 1
        try:
            stream = await self._backend.connect_tcp(
                host, origin.port, timeout=timeout, admit=claim
            )
            if origin.scheme == b"https":
                name = request.extensions.get("sni_hostname") or host
                stream = await stream.start_tls(self._ssl, server_hostname=name, timeout=timeout)
        except BaseException:
            claim.release()
            self._wake_one()  # its place is free again
            raise
        finally:
            self._opening -= 1
        assert claim.server is not None  # connected: an address was admitted
        connection = _Connection(origin, stream, self, claim.server)
        self._open.add(connection)
        return connection

    async def _wait(self, timeout: float | None) -> None:
        """Until a connection may be free; `httpcore.PoolTimeout` after `timeout` seconds."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            if not await _until(waiter, timeout):
                raise httpcore.PoolTimeout("no connection came free within the pool timeout")
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._wake_one()  # woken while being cancelled: pass it on
            raise

    def _wake_one(self) -> None:
        _wake_first(self._waiters)

    async def give_back(self, connection: _Connection) -> None:
        """A request is done with `connection`: keep it for the next one, or let it go."""
        if connection.is_idle() and not self._closed:
            self._idle.append(connection)
            connection.server.keep(connection)
        else:
            await self._close(connection)
        self._wake_one()

    async def _close(self, connection: _Connection) -> None:
        """Let `connection` go: closed, and its place at its server free."""
        if connection not in self._open:
            return
        self._open.remove(connection)
        try:
            if not connection.is_closed():
                await connection.aclose()
        finally:
            connection.server.release()

    async def evict(self, connection: _Connection) -> None:
        """Close idle `connection`: another pool opens one to its server in its place."""
        self._idle.remove(connection)
        del connection.server.idle[connection]
        await self._close(connection)
        self._wake_one()  # a place in this pool is free

    async def aclose(self) -> None:
        """Close the idle connections now and the others as their requests end: requests
        on their way (a redirect's hop, on the pool of a host that others are done with)
        are not cut off."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            del connection.server.idle[connection]
        for connection in idle:
            await self._close(connection)


class _Body:
    """A response's body: once it is closed, its connection goes back to its pool."""

    def __init__(
        self,
        stream: Iterable[bytes] | AsyncIterable[bytes],
        pool: _Pool,
        connection: _Connection,
    ) -> None:
        assert isinstance(stream, AsyncIterable)
        self._stream = stream
        self._pool = pool
        self._connection: _Connection | None = connection

    def __aiter__(self) -> AsyncIterator[bytes]:
        return aiter(self._stream)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            close = getattr(self._stream, "aclose", None)
            if close is not None:
                await close()
        finally:
            await self._pool.give_back(connection)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, sending through a `_Pool` that connects with `GuardedBackend`."""

    def __init__(
        self, ssl_context: ssl.SSLContext, size: int, backend: GuardedBackend, servers: _Servers
    ):
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        super().__init__(verify=ssl_context, limits=limits, trust_env=False, retries=0)
        # httpx's transport asks its pool only for `handle_async_request` and `aclose`.
        pool = _Pool(backend, ssl_context, size, servers)
        self._pool = cast(httpcore.AsyncConnectionPool, pool)


class _Slots:
    """A counting semaphore whose waiters are served by priority (lowest first).

    Requests of the hosts with the most URLs left go first, so a run does not
    end with a long tail of one or two busy hosts working alone.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


@dataclass
class _Pace:
    """Politeness towards one server: every host name that leads to its address shares it.

    Times are `time.monotonic()` seconds: uvloop's clock and timers count whole
    milliseconds, and a sleep may end up to one early."""

    slots: asyncio.Semaphore
    """`per_host` requests in flight at most."""
    next_start: float = 0.0
    paused_until: float = 0.0


@dataclass
class _Host:
    """The URLs of one host name, as written."""

    name: str
    workers: int = 0
    queue: deque[Request] = field(default_factory=deque)


class Checker:
    """Checks batches of URLs. One instance per run; `run()` is the entry point."""

    def __init__(
        self,
        config: LinksConfig,
        user_agent: str,
        resolve: Resolver = system_resolver,
        progress: Callable[[Attempt], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        pauses: Mapping[str, float] | None = None,
    ) -> None:
        self.should_stop = should_stop
        self._pauses = dict(pauses or {})
        """Host name or server → seconds it asked (in an earlier run) to be left alone."""
        self.config = config
        self.user_agent = user_agent
        self.progress = progress
        allow = [ipaddress.ip_network(n, strict=False) for n in config.allow_networks]
        self._resolve = resolve
        self._lookups: dict[str, asyncio.Future[list[str]]] = {}
        self._backend = GuardedBackend(self._resolve_once, allow)
        self._paces: dict[str, _Pace] = {}
        self._ssl = ssl.create_default_context()
        self._ssl.set_alpn_protocols(["http/1.1"])  # as httpcore offers it
        self._pools: dict[str, dict[str, httpx.AsyncBaseTransport]] = {}
        """Host name → origin → its connection pool."""
        self._servers = _Servers(config.per_host)
        """What the pools' connections are open to: `per_host` at most to each."""
        self._planned: set[str] = set()
        self._strays: set[str] = set()
        """Hosts with pools that no URL of the run named (redirect targets)."""
        self._global = _Slots(config.concurrency)
        # Reads, writes and waits for a pooled connection are ended by the check's own
        # deadline (`timeout`, started before any of them): no timer of their own each.
        self._timeouts = httpx.Timeout(None, connect=config.connect_timeout).as_dict()
        self._head_agrees: dict[str, bool] = {}
        """Per host, in this run: whether its HEAD 404/410 answers matched GET (True), or a
        HEAD said gone where GET found the page (False: that host is asked with GET only)."""
        self._headers = {"User-Agent": user_agent, "Accept": "*/*"}

    async def run(self, requests: Sequence[Request]) -> RunResult:
        """Check every request; hosts run side by side, each at its own polite pace."""
        hosts: dict[str, _Host] = {}
        result = RunResult()
        for request in requests:
            try:
                key = host_of(request.url)
            except ValueError:
                result.attempts.append(
                    Attempt(request.url, failure=Failure.INVALID, detail="malformed URL")
                )
                continue
            host = hosts.setdefault(key, _Host(key))
            host.queue.append(request)
        try:
            self._planned = set(hosts)
            workers = [asyncio.create_task(self._serve(host, result)) for host in hosts.values()]
            everything = asyncio.gather(*workers)
            stopped = False
            while not everything.done():
                await asyncio.wait({everything}, timeout=0.2)
                if self.should_stop() and not everything.done():
                    everything.cancel()  # a shutdown: keep what is done, drop the rest
                    stopped = True
                    with contextlib.suppress(asyncio.CancelledError):
                        await everything
            if not stopped:
                everything.result()
        finally:
            pools = [t for origins in self._pools.values() for t in origins.values()]
            self._pools.clear()
            await asyncio.gather(*(t.aclose() for t in pools))
        return result

    async def _serve(self, host: _Host, result: RunResult) -> None:
        """Check one host name's URLs, paced by the server its name leads to."""
        key = await self._server_of(host)
        result.servers[host.name] = key
        pace = self._paces.get(key)
        if pace is None:
            pace = self._paces[key] = _Pace(asyncio.Semaphore(self.config.per_host))
        wait = max(self._pauses.get(key, 0.0), self._pauses.get(host.name, 0.0))
        if wait > 0:  # a pause asked earlier, perhaps under another name for this server
            until = time.monotonic() + wait
            pace.paused_until = max(pace.paused_until, until)
        host.workers = min(self.config.per_host, len(host.queue))
        await asyncio.gather(*(self._host_worker(host, pace, result) for _ in range(host.workers)))

    async def _server_of(self, host: _Host) -> str:
        """The politeness key of a host name: its address, as its connections will find it."""
        try:
            # The name as the connection pool gets it (IDNA-encoded).
            name = httpx.URL(host.queue[0].url).raw_host.decode("ascii").strip("[]")
        except (httpx.InvalidURL, UnicodeError):
            return host.name
        try:
            addresses = [ipaddress.ip_address(name)]
        except ValueError:
            try:
                async with asyncio.timeout(self.config.timeout):
                    found = await self._resolve_once(name, 0)
                addresses = [ipaddress.ip_address(a) for a in found]
            except (CheckError, ValueError, TimeoutError):
                return host.name  # its check fails without a request, and says why
        return politeness_key(host.name, addresses, self._backend.allow)

    async def _resolve_once(self, host: str, port: int) -> list[str]:
        """`resolve`, once per name and run: limits are keyed and connections made on one
        answer (DNS may answer differently each time)."""
        lookup = self._lookups.get(host)
        if lookup is None:
            lookup = asyncio.ensure_future(self._resolve(host, port))
            lookup.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._lookups[host] = lookup
        return list(await asyncio.shield(lookup))

    async def _host_worker(self, host: _Host, pace: _Pace, result: RunResult) -> None:
        while host.queue:
            request = host.queue.popleft()
            async with pace.slots:
                now = time.monotonic()
                if pace.paused_until > now:
                    # The host asked for a pause: the rest of its URLs wait for a later run.
                    result.deferred[request.url] = pace.paused_until - now
                    continue
                start = max(now, pace.next_start)
                pace.next_start = start + self.config.host_interval
                while (left := start - time.monotonic()) > 0:  # timers may ring early
                    await asyncio.sleep(left)
                await self._global.acquire(-len(host.queue))
                try:
                    attempt = await self.check(request, host.name)
                finally:
                    self._global.release()
                if attempt.status in (429, 503) and attempt.retry_after:
                    until = time.monotonic() + attempt.retry_after
                    pace.paused_until = max(pace.paused_until, until)
            result.attempts.append(attempt)
            if self.progress is not None:
                self.progress(attempt)
            if attempt.hops and self._strays:  # pools opened for redirect targets go at once
                strays, self._strays = self._strays, set()
                await self._close_pools(strays)
        host.workers -= 1
        if host.workers == 0:  # the host is done: let its connections go
            await self._close_pools((host.name,))

    async def _close_pools(self, hosts: Iterable[str]) -> None:
        """Close the pools of `hosts`, so open connections stay bounded."""
        for name in hosts:
            for transport in self._pools.pop(name, {}).values():
                await transport.aclose()

    def _transport(self, url: str, host: str) -> httpx.AsyncBaseTransport:
        """The small connection pool of one origin (all share one SSL context); `host` is
        `url`'s host name."""
        origins = self._pools.get(host)
        if origins is None:
            origins = self._pools[host] = {}
            if host not in self._planned:
                self._strays.add(host)
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}".lower()
        transport = origins.get(key)
        if transport is None:
            if self.config.proxy:
                size = self.config.per_host
                limits = httpx.Limits(
                    max_connections=size,
                    max_keepalive_connections=size,
                    keepalive_expiry=KEEPALIVE_EXPIRY,
                )
                transport = httpx.AsyncHTTPTransport(
                    verify=self._ssl, limits=limits, proxy=self.config.proxy, trust_env=False
                )
            else:
                transport = _GuardedTransport(
                    self._ssl, self.config.per_host, self._backend, self._servers
                )
            origins[key] = transport
        return transport

    async def check(self, request: Request, host: str | None = None) -> Attempt:
        """One URL, start to finish, within `timeout` seconds (`host`: its host name,
        when known)."""
        try:
            async with asyncio.timeout(self.config.timeout):
                return await self._follow(request, host_of(request.url) if host is None else host)
        except TimeoutError:
            detail = f"no complete answer within {self.config.timeout:g} s"
            return Attempt(request.url, failure=Failure.TIMEOUT, detail=detail)
        except Exception as exc:  # noqa: BLE001 - one odd URL or answer must not end the run
            detail = f"{type(exc).__name__}: {exc}"[:300]
            return Attempt(request.url, failure=Failure.PROTOCOL, detail=detail)

    async def _follow(self, request: Request, host: str) -> Attempt:
        url = request.url
        method = "GET" if request.keep or self._head_agrees.get(host) is False else "HEAD"
        head_gone: int | None = None
        hops: list[Hop] = []
        seen = {url}
        conditional: dict[str, str] = {}
        if request.etag:
            conditional["If-None-Match"] = request.etag
        if request.last_modified:
            conditional["If-Modified-Since"] = request.last_modified
        while True:
            refused = url_allowed(url, self.config.allowed_ports)
            if refused is None and self.config.proxy:
                refused = await self._refused_behind_proxy(url)
            if refused is not None:
                return Attempt(
                    request.url, failure=Failure.BLOCKED, detail=refused, hops=tuple(hops)
                )
            if hops:  # a redirect target: allowed, so its host can be read
                host = host_of(url)
            try:
                response, body = await self._exchange(
                    method, url, host, conditional if not hops else {}, request.keep
                )
            except CheckError as exc:
                return Attempt(
                    request.url, failure=exc.failure, detail=exc.detail, hops=tuple(hops)
                )
            status = response.status_code
            if head_gone is not None:  # GET after HEAD said gone: did they agree?
                self._head_agrees[host] = status in (404, 410)
                head_gone = None
            location = response.headers.get("location")
            if status in REDIRECTS and location:
                hops.append(Hop(url, status))
                try:
                    # A user name and password in the target would be kept (a permanent
                    # redirect's target becomes the entry's link) and published: dropped.
                    url = without_userinfo(http_url(urljoin(url, location.strip())))
                except ValueError as exc:
                    detail = f"unusable redirect ({exc})"
                    return Attempt(request.url, status, Failure.PROTOCOL, detail, tuple(hops))
                if url in seen:
                    return Attempt(
                        request.url, status, Failure.REDIRECTS, "redirect loop", tuple(hops)
                    )
                if len(hops) > self.config.max_redirects:
                    detail = f"more than {self.config.max_redirects} redirects"
                    return Attempt(request.url, status, Failure.REDIRECTS, detail, tuple(hops))
                seen.add(url)
                continue
            gone = status in (404, 410)
            trusted = gone and not request.confirm and self._head_agrees.get(host) is True
            if method == "HEAD" and not (200 <= status < 300 or status == 304) and not trusted:
                # HEAD refused or inconclusive: ask properly. A 404/410 is taken from HEAD
                # only from a host whose HEAD and GET agreed on one before, and never on a
                # check that could confirm a URL dead.
                method = "GET"
                head_gone = status if gone else None
                if status not in (429, 503):
                    continue
            headers = response.headers
            asked = headers.get("retry-after")
            detail = "" if status < 400 else f"HTTP {status}"
            kept = body if status == 200 and body is not None else None
            if request.keep and status == 200 and body is None:
                detail = f"body larger than {request.keep} bytes"
            return Attempt(
                request.url,
                status=status,
                hops=tuple(hops),
                final_url=url,
                etag=_validator(headers.get("etag")),
                last_modified=_validator(headers.get("last-modified")),
                retry_after=retry_after(asked, datetime.now(UTC)) if asked else None,
                detail=detail,
                body=kept,
            )

    async def _refused_behind_proxy(self, url: str) -> str | None:
        """With a proxy the proxy connects; still refuse what resolves to a non-public address."""
        host = host_of(url)
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = await self._backend.resolve(host, 80)
            except CheckError:
                return None  # the proxy may know names we do not
        if not all(
            address_allowed(ipaddress.ip_address(a), self._backend.allow) for a in addresses
        ):
            return f"{host} is a non-public address"
        return None

    async def _exchange(
        self, method: str, url: str, host: str, headers: dict[str, str], keep: int = 0
    ) -> tuple[httpx.Response, bytes | None]:
        """One request straight through the origin's transport, and the body when `keep`
        asks for it and it fits (None otherwise).

        No client: a checker needs no cookies, auth or redirect handling of its
        own, and skipping them saves CPU on every request.
        """
        try:
            request = httpx.Request(
                method,
                url,
                headers={**self._headers, **headers},
                extensions={"timeout": self._timeouts},
            )
            response = await self._transport(url, host).handle_async_request(request)
            try:
                # Reading to the end (empty for HEAD) lets the connection be reused;
                # past the bound, leaving early closes it.
                read = 0
                limit = keep + 1 if keep else self.config.max_body_bytes
                chunks: list[bytes] = []
                stream = response.stream
                assert isinstance(stream, httpx.AsyncByteStream)
                async for chunk in stream:
                    read += len(chunk)
                    if keep:
                        chunks.append(chunk)
                    if read >= limit:
                        break
            finally:
                await response.aclose()
            body = b"".join(chunks) if keep and read <= keep else None
            return response, body
        except CheckError:
            raise
        except httpx.TimeoutException as exc:
            raise ConnectFailed(f"timed out ({type(exc).__name__})", Failure.TIMEOUT) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ConnectFailed(f"invalid URL ({exc})", Failure.INVALID) from None
        except httpx.ConnectError as exc:
            if _is_tls(exc):
                raise ConnectFailed(f"TLS failed ({exc})", Failure.TLS) from None
            raise ConnectFailed(f"cannot connect ({exc})", Failure.UNREACHABLE) from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}", Failure.PROTOCOL) from None


def _validator(value: str | None) -> str | None:
    """An ETag or Last-Modified worth sending back: short, printable ASCII."""
    if value and len(value) <= 256 and value.isascii() and value.isprintable():
        return value
    return None


def _is_tls(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def default_user_agent(public_url: str) -> str:
    return f"aggregator/{__version__} (feed link checker; +{public_url})"


def user_agent(links: LinksConfig, public_url: str) -> str:
    """The configured User-Agent, or the default naming the project and the site."""
    return links.user_agent or default_user_agent(public_url)


def run_checks(
    config: LinksConfig,
    user_agent: str,
    requests: Sequence[Request],
    resolve: Resolver = system_resolver,
    progress: Callable[[Attempt], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    pauses: Mapping[str, float] | None = None,
) -> RunResult:
    """Check `requests` from synchronous code (a scheduler job, the CLI). `pauses`: host
    name or server → seconds it still asked to be left alone (`links.pauses_left`); the
    URLs of every name leading to such a server are deferred."""

    done: list[RunResult] = []

    async def main() -> None:
        checker = Checker(config, user_agent, resolve, progress, should_stop, pauses)
        # Kept out of the task's result: Python 3.11's runner writes its main task out
        # (result and all) when it puts the SIGINT handler back, at a cost per URL.
        done.append(await checker.run(requests))

    with _COLLECTOR.rarer(), asyncio.Runner(loop_factory=loops.new_event_loop) as runner:
        runner.run(main())
    return done[0]


GC_YOUNG_THRESHOLD = 5000
"""Allocations between two collections of the youngest objects while runs go on (Python's
default: 700)."""


class _Collector:
    """Python's cyclic garbage collector, made to pass less often while runs go on.

    A run allocates and frees a great many short-lived objects (requests, answers,
    parser states) and leaves next to no cycles, yet at the default thresholds the
    collector's passes over everything the run holds took about a twentieth of its
    CPU, to free a few hundred objects. The thresholds are the process's: they are
    restored when the last run ends (runs may overlap, in threads).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._saved = gc.get_threshold()

    @contextlib.contextmanager
    def rarer(self) -> Iterator[None]:
        with self._lock:
            if self._runs == 0:
                self._saved = gc.get_threshold()
                young, *older = self._saved
                if 0 < young < GC_YOUNG_THRESHOLD:  # 0: collection is off, left so
                    gc.set_threshold(GC_YOUNG_THRESHOLD, *older)
            self._runs += 1
        try:
            yield
        finally:
            with self._lock:
                self._runs -= 1
                if self._runs == 0:
                    gc.set_threshold(*self._saved)


_COLLECTOR = _Collector()
