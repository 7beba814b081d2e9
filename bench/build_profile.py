"""Where a cold build's time goes: the parse workers' steps per seed, and the main process's phases.

    .venv/bin/python -m bench.build_profile [--count 10000] [--seeds DIR] [--sample 3000]

Two parts, each on a quiet machine as far as possible:

1. Per seed, in one process, each step a parse worker takes, timed alone over a sample of
   the corpus (CPU time, the median of three passes): reading the file, cutting out the
   front matter, YAML (`yamlsafe.load`), validating into an `Article`, making the stored
   record, and pickling the result across to the main process and back.
2. A cold `aggregator build` in this process with its phases wrapped in timers (wall and
   CPU of the main process): start-up imports, the walk, the parse-and-store loop (the
   workers parse, this process stores), the refresh and the render; and the CPU of the
   worker processes.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import corpus


def steps(seeds: Path, sample: int) -> dict[str, float]:
    """Median CPU µs per seed of each step a parse worker takes."""
    from aggregator import yamlsafe
    from aggregator.parse import SeedLoader, _article, front_matter
    from aggregator.plan import to_record
    from aggregator.scan import SeedFile
    from aggregator.urls import entry_id
    from aggregator.worker import load_seed

    paths = sorted(p for p in seeds.iterdir() if p.is_file() and not p.name.startswith("."))
    paths = paths[:sample]
    files = []
    for path in paths:
        info = path.stat()
        files.append(
            SeedFile(str(path), path.name, info.st_size, info.st_mtime_ns, info.st_dev, info.st_ino)
        )
    datas = [p.read_bytes() for p in paths]
    texts = [front_matter(d) for d in datas]
    docs: list[Any] = [yamlsafe.load(t, SeedLoader) for t in texts]
    articles = [_article(d, p.name, lambda _: None) for d, p in zip(docs, paths, strict=True)]
    loaded = [load_seed(f, 1 << 20) for f in files]

    def fresh_records() -> None:
        entry_id.cache_clear()  # each worker sees each URL about once
        for article in articles:
            to_record(article)

    def libyaml_only() -> None:
        yamlsafe._fast_here = False
        try:
            for text in texts:
                yamlsafe.load(text, SeedLoader)
        finally:
            yamlsafe._fast_here = True

    yamlsafe.read_fast_here()  # as the parse workers do
    parts: dict[str, Callable[[], object]] = {
        "read the file": lambda: [p.read_bytes() for p in paths],
        "cut out the front matter": lambda: [front_matter(d) for d in datas],
        "YAML (yamlsafe.load, as the workers read)": lambda: [
            yamlsafe.load(t, SeedLoader) for t in texts
        ],
        "(YAML with libyaml only, for reference)": libyaml_only,
        "validate into an Article": lambda: [
            _article(d, p.name, lambda _: None) for d, p in zip(docs, paths, strict=True)
        ],
        "make the stored record": fresh_records,
        "pickle across and back": lambda: pickle.loads(pickle.dumps(loaded, protocol=5)),
        "all of load_seed (the YAML as the workers read it)": lambda: [
            load_seed(f, 1 << 20) for f in files
        ],
    }
    found: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(3):
        for name, part in parts.items():
            entry_id.cache_clear()
            start = time.process_time()
            part()
            found[name].append((time.process_time() - start) / len(paths) * 1e6)
    return {name: statistics.median(values) for name, values in found.items()}


def phases(seeds: Path) -> tuple[dict[str, tuple[float, float]], float]:
    """A cold build here, its phases timed: {phase: (wall s, CPU s)}, and the workers' CPU s."""
    start = time.perf_counter()
    began = time.process_time()
    import aggregator.app as app
    import aggregator.cli as cli
    import aggregator.ingest as ingest

    timed: dict[str, tuple[float, float]] = {
        "start-up imports": (time.perf_counter() - start, time.process_time() - began)
    }

    def wrap(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timer(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                timed[label] = (time.perf_counter() - wall, time.process_time() - cpu)

        setattr(owner, name, timer)

    wrap(ingest, "scan", "walk the seed directory")
    wrap(ingest, "refresh", "refresh (stories, entries, ledger)")
    wrap(ingest.Ingest, "scan", "scan: walk, parse and store, refresh")
    wrap(app.App, "_render", "render and write")
    with tempfile.TemporaryDirectory() as scratch:
        command = ["build", "--seeds", str(seeds), "--out", f"{scratch}/out"]
        command += ["--state", f"{scratch}/state.sqlite3"]
        stdout = sys.stdout
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - restored below
            cli.main(command)
        except SystemExit:
            pass
        finally:
            sys.stdout.close()
            sys.stdout = stdout
    timed["the whole build"] = (time.perf_counter() - start, time.process_time() - began)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return timed, children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seeds", type=Path, help="a seed directory (default: a corpus)")
    parser.add_argument("--sample", type=int, default=3000)
    args = parser.parse_args()
    seeds = args.seeds or corpus(args.count)
    count = sum(1 for p in seeds.iterdir() if p.is_file() and not p.name.startswith("."))
    timed, workers = phases(seeds)
    per = steps(seeds, args.sample)
    print(f"| step of a parse worker, per seed ({args.sample:,} seeds) | CPU µs |")
    print("|---|---|")
    for name, value in per.items():
        print(f"| {name} | {value:.0f} |")
    scan_wall, scan_cpu = timed.pop("scan: walk, parse and store, refresh")
    walk, refresh = timed["walk the seed directory"], timed["refresh (stories, entries, ledger)"]
    timed["parse (workers) and store (here)"] = (
        scan_wall - walk[0] - refresh[0],
        scan_cpu - walk[1] - refresh[1],
    )
    order = [
        "start-up imports",
        "walk the seed directory",
        "parse (workers) and store (here)",
        "refresh (stories, entries, ledger)",
        "render and write",
        "the whole build",
    ]
    print(f"\n| phase of a cold build of {count:,} seeds (main process) | wall s | CPU s |")
    print("|---|---|---|")
    for name in order:
        wall, cpu = timed[name]
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    print(f"| the parse workers, together | | {workers:.2f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
