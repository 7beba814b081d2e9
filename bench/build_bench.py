"""Cold `aggregator build` of a generated corpus, beside the bare YAML parse of the same files.

    python bench/build_bench.py [--count 10000] [--rounds 3]

Writes the corpus with ../shared/bench/make_corpus.py (cached under the system
temp dir), then alternates, in one run, the reference (`yaml.CSafeLoader`
parsing every file's front matter in one process) with a cold
`aggregator build` (a fresh process, an empty output directory and no state file), so both
see the same machine noise. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import AGGREGATOR, corpus


def parse_only(seeds: Path) -> float:
    """The reference: read each file and parse its front matter with yaml.CSafeLoader."""
    files = sorted(p for p in seeds.iterdir() if p.suffix == ".txt")
    start = time.perf_counter()
    for path in files:
        text = path.read_text(encoding="utf-8")
        end = text.index("\n---", 3)
        yaml.load(text[4:end], Loader=yaml.CSafeLoader)
    return time.perf_counter() - start


def cold_build(seeds: Path, scratch: Path) -> float:
    out, state = scratch / "out", scratch / "state"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    command = [AGGREGATOR, "build", "--seeds", str(seeds)]
    command += ["--out", str(out), "--state", str(state / "aggregator.sqlite3")]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    seeds = corpus(args.count)
    parse_only(seeds)  # warm the page cache for both sides
    refs, builds = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            refs.append(parse_only(seeds))
            builds.append(cold_build(seeds, Path(scratch)))
    ref, total = statistics.median(refs), statistics.median(builds)
    print("| corpus | `yaml.CSafeLoader` alone (1 process) | cold `aggregator build` | ratio |")
    print("|---|---|---|---|")
    print(
        f"| {args.count:,} seeds, {os.cpu_count()} CPUs | {ref:.2f} s | {total:.2f} s | "
        f"{total / ref:.2f}× |"
    )
    print(f"\nrounds: parse {[round(r, 2) for r in refs]}, build {[round(b, 2) for b in builds]}")


if __name__ == "__main__":
    main()
