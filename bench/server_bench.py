"""The served feed beside nginx, without and with 1,500 idle connections held open.

    .venv/bin/python -m bench.server_bench [--count 10000] [--rounds 3] [--seconds 8]
        [--baseline-src DIR] [--nginx-workers 1] [--no-idle]

A corpus from ../shared/bench/make_corpus.py is built once; `aggregator run`
serves it, nginx serves the same output directory, and `wrk -t2 -c64` asks
each for the largest topic feed, in turn: full 200s, then 304s (the server's
own ETag in If-None-Match). Then an attacker opens 1,500 connections to each
server that send nothing, and opens new ones as fast as servers close them,
and the same runs are repeated beside them (`--no-idle` leaves that half out).
nginx runs ONE worker process unless `--nginx-workers` says otherwise (0 means
`auto`, one per core): the service serves from one process, so one worker is
the like-for-like reference (issue 12 asks ≥ 0.6× of it for 304s and ≥ 0.7×
for 200s; `--rounds 5 --no-idle` gives just those two figures). Each round
asks every server in turn, and the table gives medians of the rounds: requests
per second, and the server's CPU time (user + system, from /proc) per request,
which other load on the machine changes far less than the rates.
`--baseline-src` runs a second `aggregator run` from another source tree (e.g.
`git archive` of an older commit's `aggregator/`) in the same rounds, so old
and new are compared in one run on one machine. Needs wrk and nginx (Debian
`wrk`, `nginx-light`). Aim: no slower than the previous server, beside nginx.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

from bench.common import AGGREGATOR, corpus, cpu_seconds
from bench.service_bench import free_port, nginx

IDLE = 1500


class Served:
    """One `aggregator run` on its own copy of the state and output."""

    def __init__(self, name: str, work: Path, seeds: Path, source: Path | None = None) -> None:
        self.name = name
        self.port = free_port()
        root = work / name
        root.mkdir()
        self.out = root / "public"
        config = root / "aggregator.yaml"
        settings = {
            "seeds": {"dir": str(seeds)},
            "output": {"dir": str(self.out)},
            "state": {"path": str(root / "state.sqlite3")},
            "server": {"port": self.port},
            "scan": {"interval": 3600, "jitter": 0},
            "links": {"enabled": False},
            "thumbnails": {"enabled": False},
            "logging": {"level": "warning"},
        }
        config.write_text(yaml.safe_dump(settings))
        env = dict(os.environ)
        command = [AGGREGATOR, "run", "--config", str(config)]
        if source is not None:
            env["PYTHONPATH"] = str(source)
            command = [sys.executable, "-m", "aggregator", "run", "--config", str(config)]
        log = (root / "service.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, env=env, cwd=root)
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become healthy")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


class IdleCrowd:
    """`count` connections to each port that never send a byte, reopened when closed."""

    def __init__(self, ports: list[int], count: int) -> None:
        self.ports = ports
        self.count = count
        self.reopened = 0
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        for port in ports:
            for _ in range(count):
                self._open(port)
        self._thread = threading.Thread(target=self._keep, daemon=True)
        self._thread.start()

    def _open(self, port: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, port)

    def _keep(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                self._selector.unregister(sock)
                sock.close()
                if not self._stop.is_set():
                    self._open(key.data)
                    self.reopened += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            assert isinstance(key.fileobj, socket.socket)
            key.fileobj.close()
        self._selector.close()


class Run:
    """One wrk run: requests per second, errors (not 2xx/3xx), server CPU µs per request."""

    def __init__(self, url: str, pid: int, seconds: int, etag: str | None = None) -> None:
        command = ["wrk", "-t2", "-c64", f"-d{seconds}s", url]
        if etag:
            command[1:1] = ["-H", f"If-None-Match: {etag}"]
        cpu = cpu_seconds(pid)
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        cpu = cpu_seconds(pid) - cpu
        rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
        count = re.search(r"(\d+) requests in", out)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        read = re.search(r"([\d.]+)([KMG]?B) read", out)
        assert rate and count and read, out
        self.rate = float(rate.group(1))
        scale = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[read.group(2)]
        self.bytes = float(read.group(1)) * scale / max(1, int(count.group(1)))
        """Bytes read per answer: a few hundred for 304s, the feed's size for 200s."""
        self.errors = int(errors.group(1)) if errors else 0
        self.cpu_us = cpu / max(1, int(count.group(1))) * 1e6


PLAIN = {"accept-encoding": "identity"}
"""wrk sends no Accept-Encoding: the ETag to send back is the plain representation's (httpx
asks for gzip by default, whose ETag would not match, and every "304" would be a full 200)."""


def etag_of(url: str) -> str:
    """The ETag `url` answers wrk's requests with; checked to turn them into 304s."""
    tag = httpx.get(url, headers=PLAIN).headers["etag"]
    again = httpx.get(url, headers={**PLAIN, "if-none-match": tag})
    assert again.status_code == 304, (url, tag, again.status_code)
    return tag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--nginx-workers", type=int, default=1, help="0: one per core")
    parser.add_argument("--no-idle", action="store_true", help="leave out the idle crowd")
    args = parser.parse_args()
    if not (shutil.which("wrk") and shutil.which("nginx")):
        raise SystemExit("needs wrk and nginx (apt-get install wrk nginx-light)")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the idle crowd needs sockets
    source = corpus(args.count)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        work.chmod(0o755)  # nginx's workers read the output directory in here
        seeds = work / "seeds"
        shutil.copytree(source, seeds, ignore=shutil.ignore_patterns(".complete"))
        servers = [Served("aggregator", work, seeds)]
        if args.baseline_src is not None:
            servers.append(Served("baseline", work, seeds, args.baseline_src.resolve()))
        for server in servers:
            server.wait_healthy()
        out = servers[0].out
        biggest = max((out / "feeds").glob("*.atom"), key=lambda p: p.stat().st_size)
        path = f"/feeds/{biggest.name}"
        ngx, ngx_port = nginx(out, work, args.nginx_workers or None)
        targets = {s.name: s.base + path for s in servers}
        targets["nginx"] = f"http://127.0.0.1:{ngx_port}{path}"
        tags = {name: etag_of(url) for name, url in targets.items()}
        pids = {s.name: s.process.pid for s in servers}
        pids["nginx"] = ngx.pid
        size = biggest.stat().st_size // 1024
        ports = [s.port for s in servers] + [ngx_port]
        results: dict[tuple[str, str, str], list[Run]] = {}
        crowd: IdleCrowd | None = None
        phases = ["no idle connections"] + ([] if args.no_idle else [f"{IDLE:,} idle connections"])
        for phase in phases:
            if crowd is None and phase != "no idle connections":
                crowd = IdleCrowd(ports, IDLE)
                time.sleep(1)
            for _ in range(args.rounds):
                for kind in ("200", "304"):
                    for name, url in targets.items():
                        etag = tags[name] if kind == "304" else None
                        results.setdefault((phase, kind, name), []).append(
                            Run(url, pids[name], args.seconds, etag)
                        )
        reopened = crowd.reopened if crowd is not None else 0
        if crowd is not None:
            crowd.close()
        ngx.send_signal(signal.SIGQUIT)
        ngx.wait(10)
        for server in servers:
            server.stop()
    print(f"feed {path} ({size} KB); load average after: {os.getloadavg()}")
    workers = args.nginx_workers or "auto"
    print(f"nginx worker_processes {workers}; {args.rounds} rounds of {args.seconds} s, medians")
    if not args.no_idle:
        print(f"idle connections reopened after a server closed them: {reopened:,}")
    print("| served feed | " + " | ".join(targets) + " | ratio to nginx |")
    print("|---|" + "---|" * (len(targets) + 1))
    for phase, kind, first in list(results)[:: len(targets)]:
        assert first == next(iter(targets))
        rates, cells = {}, []
        for name in targets:
            runs = results[(phase, kind, name)]
            rates[name] = statistics.median(r.rate for r in runs)
            cpu = statistics.median(r.cpu_us for r in runs)
            errors = sum(r.errors for r in runs)
            cell = f"{rates[name]:,.0f}/s, {cpu:.1f} µs CPU"
            cells.append(cell + (f" ({errors:,} errors)" if errors else ""))
        ratios = ", ".join(
            f"{name} {rates[name] / rates['nginx']:.2f}×" for name in targets if name != "nginx"
        )
        label = "full 200s" if kind == "200" else "304s"
        print(f"| {label}, {phase} | " + " | ".join(cells) + f" | {ratios} |")
    for (phase, kind, name), runs in results.items():
        rounds = ", ".join(f"{r.rate:,.0f}/s {r.cpu_us:.1f} µs {r.bytes:,.0f} B" for r in runs)
        print(f"  {kind} {phase}, {name}: {rounds}")


if __name__ == "__main__":
    main()
