"""`aggregator build` with nothing changed, beside a bare `scandir` + `stat` walk (issue 12).

    python -m bench.nochange_bench --seeds DIR --scratch DIR [--rounds 5] [--parts]

The first build of `--seeds` into `--scratch` (its `out/` and `state.sqlite3`) is made
once, when the scratch directory holds none. Then, in one run, alternating, each round
times a new `aggregator build` process (nothing changed: as cron would run it) and a new
`python3` process walking the same directory with `os.scandir` and `stat`ing every file
(the reference), interpreter start-up included on both sides. Prints medians of wall
time and of CPU time (user + system, of the process and its children) and the table row
for docs/benchmarks.md.

`--parts` also times the parts of a no-change build, in rounds, each in a new process:
interpreter start-up (`python -c pass`), the imports of `aggregator.cli` (and which
modules cost most, from `-X importtime`), then, inside one build, each step (config,
opening the state, the stat table, the walk, the refresh, the render or the check that
lets the output stand, the report's queries) and the exit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.common import AGGREGATOR, installed_environment

WALK = """
import os, sys
def walk(path):
    count = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                count += walk(entry.path)
            else:
                entry.stat(follow_symlinks=False)
                count += 1
    return count
walk(sys.argv[1])
"""
"""The reference: a recursive `os.scandir` walk that `stat`s every file."""

PARTS = """
import json, os, sys, time
marks = {"start-up before the first import": time.process_time()}
def timed(owner, name, label):
    inner = getattr(owner, name, None)
    if inner is None:  # not in this version (a baseline's)
        return
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            marks[label] = marks.get(label, 0.0) + time.process_time() - start
    setattr(owner, name, wrapper)
begin = time.process_time()
import aggregator.cli as cli
marks["imports"] = time.process_time() - begin
import aggregator.app as app, aggregator.ingest as ingest, aggregator.config as config
from aggregator.output import OutputDir
from aggregator.store.sqlite import SqliteStore
from aggregator.store.sqlite.seeds import SqliteSeeds
timed(cli, "load_config", "config")
timed(SqliteStore, "__init__", "open state")
timed(ingest.Ingest, "prepare", "prepare")
timed(SqliteSeeds, "seed_stats", "stat table")
timed(ingest, "scan", "walk")
timed(ingest, "refresh", "refresh")
timed(app.App, "_render", "render")
timed(OutputDir, "fingerprint", "output fingerprint")
timed(app, "code_fingerprint", "code fingerprint")
timed(app.App, "tally", "report queries")
timed(SqliteSeeds, "rejected", "report queries")
timed(SqliteSeeds, "duplicates", "report queries")
timed(ingest.Ingest, "scan", "scan")
start = time.process_time()
code = cli.main(sys.argv[2:])
marks["main"] = time.process_time() - start
sys.stdout.flush()
print(json.dumps({"marks": marks, "end": time.process_time()}), file=sys.stderr)
sys.stderr.flush()
if sys.argv[1] == "os._exit":
    os._exit(code)
sys.exit(code)
"""
"""A build with each step timed (wrapped where the build calls it)."""


ORDER = (
    "interpreter start-up (python -c pass)",
    "start-up before the first import",
    "imports",
    "config",
    "open state",
    "prepare",
    "code fingerprint",
    "scan",
    "walk",
    "stat table",
    "refresh",
    "output fingerprint",
    "render",
    "report queries",
    "main",
    "exit (os._exit, as `entry`)",
    "teardown at exit (sys.exit)",
    "whole process",
)
"""The parts, in the order a build meets them (`scan` holds `walk`, `stat table` and
`refresh`; `main` holds everything from `config` on)."""


def run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Runs `command`; returns its wall time, CPU time (user + system, its children
    included) and standard error."""
    before = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {done.stderr.decode(errors='replace')}")
    return wall, _children_cpu() - before, done.stderr.decode(errors="replace")


def _children_cpu() -> float:
    """User + system time of the children that ended so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build_command(seeds: Path, scratch: Path, aggregator: str = AGGREGATOR) -> list[str]:
    return [
        aggregator,
        "build",
        "--seeds",
        str(seeds),
        "--out",
        str(scratch / "out"),
        "--state",
        str(scratch / "state.sqlite3"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=Path, required=True, help="the corpus (left as it is)")
    parser.add_argument("--scratch", type=Path, required=True, help="output and state go here")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parts", action="store_true", help="also time each part")
    parser.add_argument(
        "--baseline",
        nargs=2,
        metavar=("AGGREGATOR", "SCRATCH"),
        help="also time the `aggregator` command of another install (an earlier commit) "
        "on its own scratch directory, in the same rounds",
    )
    args = parser.parse_args()
    env = installed_environment()
    command = build_command(args.seeds, args.scratch)
    commands = [command]
    if args.baseline:
        commands.append(build_command(args.seeds, Path(args.baseline[1]), args.baseline[0]))
    for each in commands:
        if not Path(each[-1]).exists():
            print("first build (reads every seed) ...", file=sys.stderr)
            subprocess.run(each, check=True, stdout=subprocess.DEVNULL, env=env)
        subprocess.run(each, check=True, stdout=subprocess.DEVNULL, env=env)  # warm, compile
    walk = [sys.executable, "-c", WALK, str(args.seeds)]
    builds: list[tuple[float, float]] = []
    refs: list[tuple[float, float]] = []
    baselines: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        refs.append(run(walk, env)[:2])
        builds.append(run(command, env)[:2])
        if args.baseline:
            baselines.append(run(commands[1], env)[:2])
    ref_wall, ref_cpu = (statistics.median(x[i] for x in refs) for i in (0, 1))
    wall, cpu = (statistics.median(x[i] for x in builds) for i in (0, 1))
    files = sum(1 for _ in os.scandir(args.seeds))
    print(
        "| corpus | bare scandir+stat walk (new process) | no-change `aggregator build` | ratio |"
    )
    print("|---|---|---|---|")
    print(
        f"| {files:,} seeds, wall | {ref_wall:.2f} s | {wall:.2f} s | {wall / ref_wall:.1f}× |\n"
        f"| {files:,} seeds, CPU (user+sys) | {ref_cpu:.2f} s | {cpu:.2f} s | "
        f"{cpu / ref_cpu:.1f}× |"
    )
    print(
        f"\nrounds (wall/CPU s): walk {[(round(w, 2), round(c, 2)) for w, c in refs]}, "
        f"build {[(round(w, 2), round(c, 2)) for w, c in builds]}"
    )
    if baselines:
        base_wall, base_cpu = (statistics.median(x[i] for x in baselines) for i in (0, 1))
        print(
            f"baseline {args.baseline[0]}: wall {base_wall:.2f} s "
            f"({base_wall / ref_wall:.1f}×), CPU {base_cpu:.2f} s ({base_cpu / ref_cpu:.1f}×); "
            f"rounds {[(round(w, 2), round(c, 2)) for w, c in baselines]}"
        )
    if args.parts:
        parts(command, args.rounds, env)


def parts(command: list[str], rounds: int, env: dict[str, str]) -> None:
    """Prints the median CPU time (user + system) of each part of a no-change build (see
    the module doc): wall times on a shared machine say more about the neighbours. (`-P`:
    the package of the install timed, not one in the working directory.)"""
    python = str(Path(AGGREGATOR).parent / "python")
    found: dict[str, list[float]] = {}
    imports: Counter[str] = Counter()
    for _ in range(rounds):
        found.setdefault("interpreter start-up (python -c pass)", []).append(
            run([python, "-P", "-c", "pass"], env)[1]
        )
        _, _, text = run([python, "-P", "-X", "importtime", "-c", "import aggregator.cli"], env)
        for match in re.finditer(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", text):
            imports[match[2].split(".")[0]] += int(match[1])
        for ending in ("os._exit", "sys.exit"):
            _, cpu, text = run([python, "-P", "-c", PARTS, ending, *command[1:]], env)
            report = json.loads(text.strip().splitlines()[-1])
            if ending == "sys.exit":  # the interpreter's teardown, which `entry` skips
                found.setdefault("teardown at exit (sys.exit)", []).append(cpu - report["end"])
                continue
            for label, seconds in report["marks"].items():
                found.setdefault(label, []).append(seconds)
            found.setdefault("exit (os._exit, as `entry`)", []).append(cpu - report["end"])
            found.setdefault("whole process", []).append(cpu)
    print("\n| part (CPU, user + system) | median |\n|---|---|")
    for label in ORDER:
        values = found.get(label)
        shown = f"{statistics.median(values) * 1000:.0f} ms" if values else "not called"
        if values and len(values) < rounds:
            shown += f" (called in {len(values)} of {rounds} rounds)"
        print(f"| {label} | {shown} |")
    print("\nimports by top-level package (self time, wall, median of the rounds):")
    for name, micros in imports.most_common(12):
        print(f"  {name:<24} {micros / rounds / 1000:6.1f} ms")


if __name__ == "__main__":
    main()
