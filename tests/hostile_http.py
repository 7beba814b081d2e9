"""A real HTTP server on 127.0.0.1 that misbehaves on request, for link-checker tests.

The path picks the behavior: /ok, /status/404, /redirect/301/<n> (n hops to /ok),
/head-404 (HEAD 404, GET 200), /loop, /to-front/... (302 to /), /retry-seconds,
/retry-once (429 the first time), /retry-date, /head-405, /silent (never answers),
/trickle (a byte a second), /endless (body never ends), /reset, /huge-headers,
/to-loopback (302 to http://127.0.0.1:<port>/ok), /moved-with-password/... (301 to the
same path under /ok/, with a user name and password in the URL). Every request is recorded.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    server: HostileServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer(self) -> None:
        self.server.requests.append((self.command, self.path, dict(self.headers.items())))
        path = self.path
        if path.startswith("/ok"):
            etag = '"v1"'
            if self.headers.get("If-None-Match") == etag:
                self._send(304, ETag=etag)
            else:
                self._send(200, b"fine", ETag=etag, Content_Type="text/html")
        elif path.startswith("/status/"):
            self._send(int(path.split("/")[2]), b"status")
        elif path.startswith("/redirect/"):
            _, _, code, left = path.split("/")[:4]
            target = "/ok" if int(left) <= 1 else f"/redirect/{code}/{int(left) - 1}"
            self._send(int(code), Location=target)
        elif path.startswith("/moved/"):
            self._send(301, Location="/ok/" + path.removeprefix("/moved/"))
        elif path.startswith("/moved-with-password/"):
            rest = path.removeprefix("/moved-with-password/")
            self._send(301, Location=f"http://bob:s3cret@127.0.0.1:{self.server.port}/ok/{rest}")
        elif path.startswith("/odd-etag"):
            self.send_response(200)
            self.send_header("ETag", '"caf\xe9"')
            self.send_header("Retry-After", "\xb2")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/to-emoji"):
            self._send(302, Location="http://xn--ls8h.la/")
        elif path.startswith("/to-bad-chars"):
            self.send_response(301)
            self.send_header("Location", "/new\xef\xbf\xbe")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/loop"):
            self._send(302, Location="/loop")
        elif path.startswith("/news/"):
            self._send(301, Location="/")
        elif path == "/":
            self._send(200, b"front page")
        elif path.startswith("/retry-once"):  # busy the first time, fine afterwards
            first = [p for _, p, _ in self.server.requests].count(path) == 1
            if first:
                self._send(429, Retry_After="120")
            else:
                self._send(200, b"fine")
        elif path.startswith("/retry-seconds"):
            self._send(429, Retry_After="120")
        elif path.startswith("/retry-date"):
            self._send(503, Retry_After=formatdate(time.time() + 90, usegmt=True))
        elif path.startswith("/head-404"):  # a server whose HEAD handling is broken
            self._send(404 if self.command == "HEAD" else 200, b"the page")
        elif path.startswith("/head-405"):
            if self.command == "HEAD":
                self._send(405, Allow="GET")
            else:
                self._send(200, b"only GET")
        elif path.startswith("/silent"):
            time.sleep(30)
        elif path.startswith("/trickle"):  # the answer itself, a byte a second
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello":
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(1)
        elif path.startswith("/endless"):
            self.send_response(200)
            self.end_headers()  # no length: the body runs until the connection closes
            chunk = b"y" * 65536
            for _ in range(100_000):
                self.wfile.write(chunk)
        elif path.startswith("/reset"):  # close with linger 0: the peer gets a RST
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            os.close(self.connection.detach())
            self.close_connection = True
        elif path.startswith("/huge-headers"):
            self.send_response(200)
            for n in range(4000):
                self.send_header(f"X-Filler-{n}", "z" * 100)
            self.end_headers()
        elif path.startswith("/to-loopback"):
            self._send(302, Location=f"http://127.0.0.1:{self.server.port}/ok")
        else:
            self._send(404, b"no such page")


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the misbehaving handlers break their own connections on purpose

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.port: int = self.server_address[1]
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()
        self.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"
