"""Several instances on one PostgreSQL state, each figure beside its reference, in one run.

    .venv/bin/python -m bench.cluster_bench [--count 10000] [--rounds 3] [--rescans 5]
        [--seconds 8] [--server postgresql://postgres@127.0.0.1:5432/test]

Creates a scratch database on the PostgreSQL server (dropped at the end) and a copy of a
corpus from ../shared/bench/make_corpus.py; every instance and build shares one
`site.public_url`, so that their outputs can be compared byte for byte. Sides alternate
in each round, so that both see the same machine noise:

1. a cold `aggregator build` into PostgreSQL (a fresh database) beside the same into a fresh
   SQLite file (aim ≤ 1.3×); the two output directories must be identical;
2. the running service's rescan with nothing changed, as `/healthz` reports it
   (`last_scan.seconds`, the median of the scans after the first), on PostgreSQL beside
   SQLite (aim ≤ 1 s at 100k seeds);
3. two instances on the database (`scan.watch: true`): a new seed is written, the leader
   serves it (reference: file written → leader serves it), then the follower (aim ≤ 1 s
   after the leader);
4. failover: kill -9 the leader, write a new seed → the survivor serves it (aim ≤ 10 s at
   the default lease of 5 s), beside 3's new seed → leader serves it without a failover;
   the killed instance is started again (it follows) before the next round;
5. the served feed under `wrk -t2 -c64`, full 200s and 304s, of one instance on
   PostgreSQL beside nginx serving the same directory and beside an instance on SQLite.

Needs a PostgreSQL server (user with CREATE DATABASE), and wrk and nginx for 5 (Debian
packages `wrk`, `nginx-light`; 5 is left out without them). Prints Markdown tables for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import httpx
import psycopg
import yaml

from bench.common import AGGREGATOR, corpus
from bench.compare import health
from bench.server_bench import Run
from bench.service_bench import NEW_SEED, free_port, nginx

SERVER = "postgresql://postgres@127.0.0.1:5432/test"
PUBLIC_URL = "http://feeds.bench.example/"
"""Every build and instance publishes under this URL (the bytes are comparable)."""
FEED = "/feeds/ai.atom"
"""The feed a new seed (`NEW_SEED`, topic AI) appears in."""
START_TIMEOUT = 1800.0


class Scratch:
    """A database on the server, created empty again by `fresh()`, dropped by `drop()`."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.name = f"aggbench_{secrets.token_hex(4)}"
        self.url = server.rsplit("/", 1)[0] + f"/{self.name}"

    def _run(self, statement: str) -> None:
        with psycopg.connect(self.server, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)

    def fresh(self) -> str:
        self.drop()
        self._run(f'CREATE DATABASE "{self.name}"')
        return self.url

    def drop(self) -> None:
        self._run(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def write_config(path: Path, seeds: Path, out: Path, state: str, **extra: object) -> Path:
    """An instance's (or a build's) config file; `state` is a SQLite path or a URL."""
    settings: dict[str, object] = {
        "seeds": {"dir": str(seeds)},
        "output": {"dir": str(out)},
        "state": {"url": state} if state.startswith("postgresql://") else {"path": state},
        "site": {"public_url": PUBLIC_URL},
        "links": {"enabled": False},
        "thumbnails": {"enabled": False},
        "logging": {"level": "warning"},
        **extra,
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def cold_build(config: Path, out: Path) -> float:
    """Seconds of `aggregator build` into an empty output directory (the state is new)."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(
        [AGGREGATOR, "build", "--config", str(config)], check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


class Instance:
    """One `aggregator run`, on its config; `start()` again after `kill()` or `stop()`."""

    def __init__(self, name: str, work: Path, seeds: Path, state: str, **scan: object) -> None:
        self.name = name
        self.port = free_port()
        self.out = work / name / "public"
        self.out.mkdir(parents=True, exist_ok=True)
        self.config = write_config(
            work / name / "aggregator.yaml",
            seeds,
            self.out,
            state,
            server={"port": self.port},
            scan={"interval": 3600, "jitter": 0, **scan},
        )
        self.log = work / name / "service.log"
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    started: ClassVar[list[Instance]] = []
    """Every instance started, stopped at the end whatever happens."""

    def start(self) -> None:
        Instance.started.append(self)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [AGGREGATOR, "run", "--config", str(self.config)], stdout=log, stderr=log
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def health(self) -> dict[str, object]:
        return health(self.base)[1]

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> float:
        assert self.process is not None
        start = time.monotonic()
        while health(self.base)[0] != 200:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.log})")
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{self.name} did not become healthy ({self.log})")
            time.sleep(0.05)
        return time.monotonic() - start

    def role(self) -> str:
        return str(self.health().get("role", "alone"))

    def serves(self, title: str) -> bool:
        try:
            return title in httpx.get(self.base + FEED, timeout=5).text
        except httpx.TransportError:
            return False

    def rescans(self, count: int) -> list[float]:
        """`last_scan.seconds` of the next `count` + 1 scans, the first left out."""
        scans: list[float] = []
        seen = -1
        deadline = time.monotonic() + 60 + 30 * count
        while len(scans) < count + 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the scans did not come ({self.log})")
            body = self.health()
            number, last = body.get("scans"), body.get("last_scan")
            if isinstance(number, int) and number != seen and isinstance(last, dict):
                if seen >= 0:
                    scans.append(float(last["seconds"]))
                seen = number
            time.sleep(0.05)
        return scans[1:]

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


def write_seed(seeds: Path, label: str) -> tuple[str, float]:
    """A new seed in the topic AI: its title, and when it was written (monotonic)."""
    title = f"Cluster seed {label} {time.time_ns()}"
    path = seeds / f"zz-cluster-{label}-{time.time_ns()}.txt"
    start = time.monotonic()
    path.write_text(NEW_SEED.format(title=title, slug=path.stem))
    return title, start


def served_after(instances: list[Instance], title: str, start: float) -> list[float]:
    """Seconds from `start` until each instance serves `title` (each polled on its own
    thread)."""
    found: list[float] = [float("nan")] * len(instances)

    def poll(number: int, instance: Instance) -> None:
        while time.monotonic() - start < 120:
            if instance.serves(title):
                found[number] = time.monotonic() - start
                return
            time.sleep(0.005)

    threads = [
        threading.Thread(target=poll, args=(n, i), daemon=True) for n, i in enumerate(instances)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    missing = [i.name for i, seconds in zip(instances, found, strict=True) if math.isnan(seconds)]
    if missing:
        raise RuntimeError(f"{title!r} never served by {', '.join(missing)}")
    return found


def same_tree(one: Path, other: Path) -> str:
    """`identical`, or how many files `diff -rq` lists, and the first three."""
    done = subprocess.run(["diff", "-rq", str(one), str(other)], capture_output=True, text=True)
    if done.returncode == 0:
        return "identical"
    lines = done.stdout.splitlines()
    return f"{len(lines)} differences, e.g. {lines[:3]}"


def cell(values: list[float], unit: str = "s", digits: int = 2) -> str:
    middle = statistics.median(values)
    every = ", ".join(f"{v:.{digits}f}" for v in values)
    return (
        f"{middle:.{digits}f} {unit} ({every})"
        if len(values) > 1
        else f"{middle:.{digits}f} {unit}"
    )


def ratio(ours: list[float], theirs: list[float]) -> str:
    return f"{statistics.median(ours) / statistics.median(theirs):.2f}×"


def alternate(rounds: int, sides: list[Callable[[], None]]) -> None:
    """Run every side once per round, in turn, the order reversed every other round."""
    for number in range(rounds):
        for side in sides if number % 2 == 0 else list(reversed(sides)):
            side()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rescans", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8, help="of each wrk run")
    parser.add_argument("--server", default=SERVER, help="a PostgreSQL server URL")
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    source = corpus(args.count)
    scratch = Scratch(args.server)
    rows: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        work.chmod(0o755)  # nginx's workers read an output directory in here
        seeds = work / "seeds"
        shutil.copytree(source, seeds, ignore=shutil.ignore_patterns(".complete"))
        sqlite_file = work / "sqlite" / "state.sqlite3"
        try:
            # 1. Cold builds.
            builds: dict[str, list[float]] = {"postgres": [], "sqlite": []}
            out = {"postgres": work / "postgres" / "public", "sqlite": work / "sqlite" / "public"}
            configs = {
                "postgres": write_config(
                    work / "build-pg.yaml", seeds, out["postgres"], scratch.url
                ),
                "sqlite": write_config(
                    work / "build-sq.yaml", seeds, out["sqlite"], str(sqlite_file)
                ),
            }
            for path in out.values():
                path.parent.mkdir(parents=True, exist_ok=True)

            def build_postgres() -> None:
                scratch.fresh()
                builds["postgres"].append(cold_build(configs["postgres"], out["postgres"]))

            def build_sqlite() -> None:
                for stale in sqlite_file.parent.glob("state.sqlite3*"):
                    stale.unlink()
                builds["sqlite"].append(cold_build(configs["sqlite"], out["sqlite"]))

            alternate(args.rounds, [build_postgres, build_sqlite])
            rows.append(
                f"| cold `aggregator build` | {cell(builds['postgres'])} | SQLite "
                f"{cell(builds['sqlite'])} | {ratio(builds['postgres'], builds['sqlite'])} "
                "(aim ≤ 1.3×) |"
            )
            notes.append(f"outputs of the two builds: {same_tree(out['postgres'], out['sqlite'])}")

            # 2. Rescans with nothing changed, the service on the states just built.
            rescans: dict[str, list[float]] = {"postgres": [], "sqlite": []}
            scanning = {
                "postgres": Instance("pg-a", work, seeds, scratch.url, interval=1),
                "sqlite": Instance("sq", work, seeds, str(sqlite_file), interval=1),
            }
            for name, instance in scanning.items():
                shutil.rmtree(instance.out)
                shutil.copytree(out[name], instance.out)

            def rescan(name: str) -> Callable[[], None]:
                def side() -> None:
                    instance = scanning[name]
                    instance.start()
                    try:
                        instance.wait_healthy()
                        rescans[name] += instance.rescans(args.rescans)
                    finally:
                        instance.stop()

                return side

            alternate(args.rounds, [rescan("postgres"), rescan("sqlite")])
            rows.append(
                f"| rescan, nothing changed (the service; {args.rescans} scans a round, median) | "
                f"{cell(rescans['postgres'], digits=3)} | SQLite "
                f"{cell(rescans['sqlite'], digits=3)} | "
                f"{ratio(rescans['postgres'], rescans['sqlite'])} (aim ≤ 1 s at 100k) |"
            )

            # 3 and 4. Two instances: a new seed via the leader to the follower; failover.
            pair = [
                Instance("pg-a", work, seeds, scratch.url, watch=True),
                Instance("pg-b", work, seeds, scratch.url, watch=True),
            ]
            first = pair[0]
            first.start()
            started = first.wait_healthy()
            pair[1].start()
            joined = pair[1].wait_healthy()
            notes.append(
                f"two instances: the first healthy (leading) {started:.1f} s after its start, "
                f"the second (following, mirrors from nothing) {joined:.1f} s after its start"
            )
            to_leader: list[float] = []
            to_follower: list[float] = []
            failover: list[float] = []
            mirrored: list[str] = []
            for number in range(args.rounds):
                roles = {i.role(): i for i in pair}
                leader, follower = roles["leader"], roles["follower"]
                title, start = write_seed(seeds, f"r{number}")
                on_leader, on_follower = served_after([leader, follower], title, start)
                to_leader.append(on_leader)
                to_follower.append(on_follower - on_leader)
                time.sleep(1)  # no render left running on the leader
                mirrored.append(same_tree(leader.out, follower.out))
                leader.kill()
                title, start = write_seed(seeds, f"f{number}")
                failover.append(served_after([follower], title, start)[0])
                leader.start()
                leader.wait_healthy()
            rows.append(
                f"| new seed → served by the follower, after the leader served it | "
                f"{cell(to_follower, digits=3)} | file written → served by the leader "
                f"{cell(to_leader, digits=3)} | aim ≤ 1 s |"
            )
            rows.append(
                f"| kill -9 the leader, new seed → served by the survivor (lease 5 s) | "
                f"{cell(failover)} | new seed → served, no failover {cell(to_leader, digits=3)} |"
                " aim ≤ 10 s |"
            )
            notes.append(f"leader's and follower's output directories: {', '.join(mirrored)}")
            roles = {i.role(): i for i in pair}
            roles["follower"].stop()
            leader = roles["leader"]

            # 5. Served feed: the instance on PostgreSQL, nginx on its directory, SQLite.
            if not args.skip_http and shutil.which("wrk") and shutil.which("nginx"):
                alone = Instance("sq-http", work, seeds, str(sqlite_file))
                shutil.rmtree(alone.out)
                shutil.copytree(out["sqlite"], alone.out)
                alone.start()
                alone.wait_healthy()
                biggest = max((leader.out / "feeds").glob("*.atom"), key=lambda p: p.stat().st_size)
                feed = f"/feeds/{biggest.name}"
                ngx, ngx_port = nginx(leader.out, work)
                try:
                    targets = {
                        "postgres": (leader.base + feed, leader.pid),
                        "nginx": (f"http://127.0.0.1:{ngx_port}{feed}", ngx.pid),
                        "sqlite": (alone.base + feed, alone.pid),
                    }
                    tags = {n: httpx.get(u).headers["etag"] for n, (u, _) in targets.items()}
                    rates: dict[tuple[str, str], list[float]] = {}
                    for number in range(args.rounds):
                        order = list(targets) if number % 2 == 0 else list(reversed(targets))
                        for kind in ("200", "304"):
                            for name in order:
                                url, pid = targets[name]
                                run = Run(
                                    url, pid, args.seconds, tags[name] if kind == "304" else None
                                )
                                if run.errors:
                                    raise RuntimeError(f"{name}: {run.errors} errors under load")
                                rates.setdefault((kind, name), []).append(run.rate)
                finally:
                    ngx.send_signal(signal.SIGQUIT)
                    ngx.wait(10)
                    alone.stop()
                size = biggest.stat().st_size // 1024
                for kind, label in (("200", f"full 200s ({size} KB feed)"), ("304", "304s")):
                    ours = rates[(kind, "postgres")]
                    rows.append(
                        f"| served feed, {label}, `wrk -t2 -c64`, instance on PostgreSQL | "
                        f"{cell(ours, '/s', 0)} | nginx {cell(rates[(kind, 'nginx')], '/s', 0)}; "
                        f"instance on SQLite {cell(rates[(kind, 'sqlite')], '/s', 0)} | "
                        f"{ratio(ours, rates[(kind, 'nginx')])} nginx, "
                        f"{ratio(ours, rates[(kind, 'sqlite')])} SQLite |"
                    )
            leader.stop()
        finally:
            for instance in Instance.started:
                instance.stop()
            scratch.drop()
    print(
        f"{args.count:,} seeds, {args.rounds} rounds, {os.cpu_count()} CPUs; medians "
        "(every round in brackets)\n"
    )
    print("| figure | on PostgreSQL | reference | ratio / aim |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    print()
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
