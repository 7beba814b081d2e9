"""A loopback HTTP/1.1 server that waits before each answer: a stand-in for network latency.

    python -m bench.delay_server --port 8765 --hosts 200 --delay 0.1

Listens on 127.0.0.2 … 127.0.0.(hosts+1). The first path segment says what to
answer, as ../shared/bench/make_corpus.py --url-base lays URLs out:
ok → 200, redirect → 301 to the same path under /ok, notfound → 404, gone → 410.
"""

from __future__ import annotations

import argparse
import asyncio

ANSWERS = {"ok": b"200 OK", "notfound": b"404 Not Found", "gone": b"410 Gone"}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0]
            method, path = request_line.split(b" ")[:2]
            kind = path.split(b"/")[1].decode() if path.count(b"/") > 1 else "ok"
            await asyncio.sleep(delay)
            body = b"" if method == b"HEAD" else b"<html><body>article</body></html>"
            if kind == "redirect":
                target = b"/ok/" + path.split(b"/", 2)[2]
                status, extra = b"301 Moved Permanently", b"Location: " + target + b"\r\n"
            else:
                status, extra = ANSWERS.get(kind, b"200 OK"), b""
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\n"
                + extra
                + b"Content-Type: text/html\r\nContent-Length: 33\r\n\r\n"
                + body
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int, hosts: int, delay: float) -> None:
    servers = [
        await asyncio.start_server(
            lambda r, w: handle(r, w, delay), f"127.0.0.{2 + n}", port, backlog=1024
        )
        for n in range(hosts)
    ]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.1)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.hosts, args.delay))
