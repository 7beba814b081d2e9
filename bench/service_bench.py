"""Service figures on a large corpus, each beside its reference, in one run.

    .venv/bin/python -m bench.service_bench [--count 100000] [--rounds 5]

1. Rescan with nothing changed (`Ingest.scan`) beside a bare `os.scandir` +
   `stat` walk of the same tree. Aim: ≤ 1.0 s and ≤ 5× the walk.
2. Peak RSS of `aggregator run` (main process plus parse workers) during its
   cold start on the corpus. Aim: ≤ 300 MB.
3. A new seed → visible in its served topic feed, with `scan.watch` (aim ≤ 1 s)
   and without (aim ≤ interval + 1 s).
4. The served feed under `wrk -t2 -c64` with keep-alive: full 200s and 304s per
   second, beside nginx serving the same file with one worker process (as the
   service serves from one). Aim: ≥ 0.1× nginx for both.
Needs wrk and nginx (Debian packages `wrk`, `nginx-light`) for 4.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

from aggregator.config import load_config
from aggregator.ingest import Ingest
from aggregator.store import open_store
from bench.common import AGGREGATOR, corpus, tree_rss_kib

NEW_SEED = """---
title: "{title}"
excerpt: "A seed written by the benchmark."
publishedDateTime: 2026-11-20T00:00:00Z
originalUrl: "https://bench.example/{slug}"
topics: [AI]
---
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bare_walk(root: Path) -> float:
    start = time.perf_counter()
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                info = entry.stat()
                if entry.is_dir():
                    stack.append(entry.path)
                del info
    return time.perf_counter() - start


class Service:
    def __init__(self, work: Path, seeds: Path, **scan: object) -> None:
        self.port = free_port()
        self.config = work / f"service-{self.port}.yaml"
        settings = {
            "seeds": {"dir": str(seeds)},
            "output": {"dir": str(work / "public")},
            "state": {"path": str(work / "state.sqlite3")},
            "server": {"port": self.port},
            "scan": {"interval": 60, "jitter": 0, **scan},
            "logging": {"level": "warning"},
        }
        self.config.write_text(yaml.safe_dump(settings))
        self.log = (work / "service.log").open("ab")
        self.process = subprocess.Popen(
            [AGGREGATOR, "run", "--config", str(self.config)], stdout=self.log, stderr=self.log
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, sample: list[int] | None = None, timeout: float = 600) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if sample is not None:
                sample.append(tree_rss_kib(self.process.pid))
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - start
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("service did not become healthy")

    def stop(self) -> float:
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        assert code == 0, code
        return time.monotonic() - start


def new_seed_latency(service: Service, seeds: Path, label: str) -> float:
    title = f"Benchmark seed {label} {time.time_ns()}"
    path = seeds / f"zz-bench-{label}-{time.time_ns()}.txt"
    start = time.monotonic()
    path.write_text(NEW_SEED.format(title=title, slug=path.stem))
    try:
        while time.monotonic() - start < 120:
            if title in httpx.get(service.base + "/feeds/ai.atom", timeout=5).text:
                return time.monotonic() - start
            time.sleep(0.01)
        raise RuntimeError("new seed never appeared")
    finally:
        path.unlink()


def wrk(url: str, etag: str | None = None) -> float:
    command = ["wrk", "-t2", "-c64", "-d8s", url]
    if etag:
        command[1:1] = ["-H", f"If-None-Match: {etag}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert match, out
    assert non2xx is None, f"{url}: errors under load\n{out}"
    if etag is not None:  # the load is 304s, not full answers
        check = {"If-None-Match": etag, "Accept-Encoding": "identity"}  # wrk's request
        assert httpx.get(url, headers=check).status_code == 304
    return float(match.group(1))


def nginx(root: Path, work: Path, workers: int | None = 1) -> tuple[subprocess.Popen[bytes], int]:
    """nginx serving `root` on a free port of 127.0.0.1, and that port.

    One worker process by default, as `aggregator run` serves from one process; None
    means `worker_processes auto` (one per core).
    """
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        f"""worker_processes {workers or "auto"};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/atom+xml atom; }}
    client_body_temp_path {work}/nginx-tmp;
    proxy_temp_path {work}/nginx-tmp;
    fastcgi_temp_path {work}/nginx-tmp;
    uwsgi_temp_path {work}/nginx-tmp;
    scgi_temp_path {work}/nginx-tmp;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""
    )
    (work / "nginx-tmp").mkdir(exist_ok=True)
    process = subprocess.Popen(["nginx", "-c", str(conf)])
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    source = corpus(args.count)
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        work.chmod(0o755)  # nginx's workers read the output directory in here
        seeds = work / "seeds"
        shutil.copytree(source, seeds, ignore=shutil.ignore_patterns(".complete"))

        # 2. Cold start and its peak RSS.
        rss: list[int] = []
        service = Service(work, seeds, watch=True)
        cold = service.wait_healthy(sample=rss)
        rows.append(f"| cold start of `aggregator run` | {cold:.1f} s | — | — |")
        rows.append(
            f"| peak RSS during the cold start (all processes, summed) | {max(rss) / 1024:.0f} MB |"
            " — | aim ≤ 300 MB |"
        )
        # 3a. New seed with watch.
        watched = [new_seed_latency(service, seeds, f"w{n}") for n in range(args.rounds)]
        rows.append(
            f"| new seed → in its served feed, `scan.watch: true` | "
            f"{statistics.median(watched):.2f} s (max {max(watched):.2f}) | — | aim ≤ 1 s |"
        )
        steady = tree_rss_kib(service.process.pid)
        rows.append(f"| RSS when idle after the cold start | {steady / 1024:.0f} MB | — | — |")

        # 4. HTTP against nginx, alternating.
        if not args.skip_http and shutil.which("wrk") and shutil.which("nginx"):
            out = work / "public"
            biggest = max((out / "feeds").glob("*.atom"), key=lambda p: p.stat().st_size)
            path = f"/feeds/{biggest.name}"
            ngx, ngx_port = nginx(out, work)
            ours_url, ngx_url = service.base + path, f"http://127.0.0.1:{ngx_port}{path}"
            plain = {"accept-encoding": "identity"}  # as wrk asks: its 304s need this ETag
            ours_tag = httpx.get(ours_url, headers=plain).headers["etag"]
            ngx_tag = httpx.get(ngx_url, headers=plain).headers["etag"]
            full: dict[str, list[float]] = {"ours": [], "nginx": []}
            cond: dict[str, list[float]] = {"ours": [], "nginx": []}
            for _ in range(2):
                full["ours"].append(wrk(ours_url))
                full["nginx"].append(wrk(ngx_url))
                cond["ours"].append(wrk(ours_url, ours_tag))
                cond["nginx"].append(wrk(ngx_url, ngx_tag))
            ngx.send_signal(signal.SIGQUIT)
            ngx.wait(10)
            size = biggest.stat().st_size // 1024
            for name, series in ((f"full 200s ({size} KB feed)", full), ("304s", cond)):
                ours, theirs = statistics.median(series["ours"]), statistics.median(series["nginx"])
                rows.append(
                    f"| served feed, {name}, `wrk -t2 -c64` | {ours:,.0f}/s | "
                    f"nginx {theirs:,.0f}/s | {ours / theirs:.2f}× (aim ≥ 0.1×) |"
                )
        stop = service.stop()
        rows.append(f"| SIGTERM → exit 0 | {stop:.2f} s | — | aim ≤ 10 s |")

        # 1. Rescan with nothing changed, beside the bare walk, alternating.
        config = load_config(
            None,
            overrides={
                "seeds.dir": seeds,
                "output.dir": work / "public",
                "state.path": work / "state.sqlite3",
            },
            environ={},
        )
        store = open_store(config.state.path)
        pipeline = Ingest(config, store)
        pipeline.prepare()
        first = time.perf_counter()
        pipeline.scan(datetime.now(UTC))  # loads the stat cache the service keeps between scans
        first = time.perf_counter() - first
        walks, scans = [], []
        for _ in range(args.rounds):
            walks.append(bare_walk(seeds))
            start = time.perf_counter()
            report = pipeline.scan(datetime.now(UTC))
            scans.append(time.perf_counter() - start)
            assert report.parsed == 0 and report.entries_changed == 0, report
        store.close()
        walk, rescan = statistics.median(walks), statistics.median(scans)
        rows.insert(
            0,
            f"| rescan, nothing changed ({args.count:,} seeds) | {rescan:.2f} s | "
            f"bare scandir+stat walk {walk:.2f} s | {rescan / walk:.1f}× (aim ≤ 1.0 s, ≤ 5×) |",
        )
        rows.insert(
            1,
            f"| first rescan after a start (loads the stat cache) | {first:.2f} s | — | — |",
        )

        # 3b. New seed without watch: the periodic rescan finds it.
        service = Service(work, seeds, watch=False, interval=5)
        service.wait_healthy()
        unwatched = [new_seed_latency(service, seeds, f"p{n}") for n in range(3)]
        service.stop()
        rows.insert(
            -1,
            f"| new seed → in its served feed, `scan.interval: 5`, no watch | "
            f"{statistics.median(unwatched):.2f} s (max {max(unwatched):.2f}) | — | "
            "aim ≤ interval + 1 s |",
        )
    print("| figure | aggregator | reference | ratio / aim |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
