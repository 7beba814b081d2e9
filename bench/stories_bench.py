"""A cold build with stories merged, beside the same build with merging off, in one run.

    .venv/bin/python -m bench.stories_bench [--count 100000] [--rounds 3] [--share 0.3]

Takes the corpus of ../shared/bench/make_corpus.py (cached under the system temp dir) and
writes a copy (cached too) in which a share of the seeds (`--share`, 30 % by default)
also lists, among its related articles, the article of the seed published just before
it, so that stories of several seeds form as they do in real coverage. Then alternates,
in one run, cold `aggregator build`s of that copy (a fresh process, an empty output
directory and no state file) with `stories.merge` off (the reference) and on (aim: at
most 1.2× the reference), so that both see the same machine noise. Prints a Markdown
table for docs/benchmarks.md, with the number of entries each side gave.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import AGGREGATOR, corpus

SEED = 20261130


def storied(count: int, share: float) -> Path:
    """The corpus of `count` seeds with stories linked in (see the module's docstring)."""
    target = Path(tempfile.gettempdir()) / f"aggregator-stories-{count}-{share}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    source = corpus(count)
    documents = []
    for path in sorted(source.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        end = text.index("\n---", 3)
        data = yaml.load(text[4:end], Loader=yaml.CSafeLoader)
        documents.append((path.name, data, text[end:]))
    order = sorted(range(len(documents)), key=lambda i: str(documents[i][1]["publishedDateTime"]))
    rng = random.Random(SEED)
    for before, after in itertools.pairwise(order):
        if rng.random() < share:
            earlier = documents[before][1]
            documents[after][1].setdefault("related", []).append(
                {
                    "title": earlier["title"],
                    "webUrl": earlier.get("originalUrl") or earlier["webUrl"],
                    "publishedDateTime": earlier["publishedDateTime"],
                    "provider": earlier.get("provider"),
                }
            )
    for name, data, rest in documents:
        front = yaml.dump(data, Dumper=yaml.CSafeDumper, allow_unicode=True, sort_keys=False)
        (target / name).write_text(f"---\n{front}{rest}", encoding="utf-8")
    (target / ".complete").touch()
    return target


def cold_build(seeds: Path, scratch: Path, merge: bool) -> tuple[float, int]:
    """Seconds a cold build takes, and how many entries it gave."""
    out, state = scratch / "out", scratch / "state"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    command = [AGGREGATOR, "build", "--seeds", str(seeds)]
    command += ["--out", str(out), "--state", str(state / "aggregator.sqlite3")]
    env = {**os.environ, "AGGREGATOR_STORIES__MERGE": "true" if merge else "false"}
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    took = time.perf_counter() - start
    with sqlite3.connect(state / "aggregator.sqlite3") as db:
        (entries,) = db.execute("SELECT COUNT(*) FROM entries").fetchone()
    return took, int(entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--share", type=float, default=0.3)
    args = parser.parse_args()
    seeds = storied(args.count, args.share)
    off: list[float] = []
    on: list[float] = []
    entries = {False: 0, True: 0}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for merge in (False, True) if round_ % 2 == 0 else (True, False):
                took, entries[merge] = cold_build(seeds, Path(scratch), merge)
                (on if merge else off).append(took)
    ref, total = statistics.median(off), statistics.median(on)
    print("| corpus | merging off: entries, cold build | merging on: entries, cold build | ratio |")
    print("|---|---|---|---|")
    print(
        f"| {args.count:,} seeds ({args.share:.0%} naming the one before), {os.cpu_count()} CPUs"
        f" | {entries[False]:,}, {ref:.2f} s | {entries[True]:,}, {total:.2f} s"
        f" | {total / ref:.2f}× |"
    )
    print(f"\nrounds: off {[round(t, 2) for t in off]}, on {[round(t, 2) for t in on]}")


if __name__ == "__main__":
    main()
