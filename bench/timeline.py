"""Where a cold build's cores wait: its steps on a timeline, with the CPU of each process.

    .venv/bin/python -m bench.timeline --seeds DIR [--rounds 3]

Each round runs a cold `aggregator build` of DIR (empty output directory, no state file)
in a new process whose steps are wrapped in timers: the interpreter up, the imports, the
config, the state opened, the workers forked, the walk, the first and the last seed
parsed, the parse's last seeds stored, the stories widened, the refresh, the render and
the close. For each step it prints (medians over the rounds) when the step ended,
counted from the launch of the process, its wall time, the CPU time the building process
and its workers spent in it, and the core-seconds the machine left idle meanwhile (from
/proc/stat, so anything else running counts against it). A step whose idle time is large
is one where a core waits: what is left to overlap.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import TICKS, cpu_seconds, installed_environment

LAUNCHED = "BENCH_TIMELINE_LAUNCHED"
"""The environment variable giving the child the time it was launched at, and the machine's
idle core-seconds then (`_idle`), separated by a space."""


def _workers_cpu() -> float:
    """User + system seconds of the building process's live worker processes."""
    import multiprocessing

    return sum(cpu_seconds(p.pid) for p in multiprocessing.active_children() if p.pid)


def _idle() -> float:
    """Idle and I/O-wait core-seconds of the machine since boot (/proc/stat's first line:
    user, nice, system, idle, iowait, ...)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    return (int(fields[3]) + int(fields[4])) / TICKS


def child(argv: list[str]) -> None:
    """Run `aggregator build argv` here with its steps timed; print the marks as JSON."""
    launched, idle_then = (float(part) for part in os.environ[LAUNCHED].split())
    marks: list[tuple[str, float, float, float, float]] = [("launch", 0.0, 0.0, 0.0, idle_then)]
    workers = [0.0]

    def mark(label: str) -> None:
        workers[0] = max(workers[0], _workers_cpu())  # none once the pool is shut down
        marks.append((label, time.time() - launched, time.process_time(), workers[0], _idle()))

    mark("the interpreter up (and this script's imports)")
    import aggregator.app as app
    import aggregator.cli as cli
    import aggregator.ingest as ingest
    import aggregator.refresh as refresh

    mark("imports")

    def after(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            try:
                return inner(*args, **kwargs)
            finally:
                mark(label)

        setattr(owner, name, timed)

    after(cli, "load_config", "the config")
    after(app.App, "__init__", "the state opened")
    after(ingest, "start_workers", "the workers forked")
    after(ingest, "scan", "the walk")
    after(ingest.Ingest, "_store", "the last seeds stored")
    after(refresh, "_widen", "the stories widened")
    after(ingest, "refresh", "the refresh")
    after(app.App, "_render", "the render")
    after(app.App, "close", "the state closed")
    loaded: Callable[..., Iterator[Any]] = ingest.load_seeds

    def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:
        first = True
        for result in loaded(*args, **kwargs):
            if first:
                mark("the first seed parsed")
                first = False
            yield result
        mark("the last seed parsed")

    ingest.load_seeds = counted
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        code = cli.main(["build", *argv])
    if code != 0:
        sys.exit(f"the build ended with status {code}")
    print(json.dumps(marks))


def one_round(seeds: Path, work: Path) -> list[tuple[str, float, float, float, float]]:
    """The marks of one cold build of `seeds` in a new process."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    command = [sys.executable, "-m", "bench.timeline", "--child", "--"]
    command += ["--seeds", str(seeds), "--out", str(work / "out")]
    command += ["--state", str(work / "state.sqlite3")]
    env = installed_environment()
    env[LAUNCHED] = f"{time.time()!r} {_idle()!r}"
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the build failed:\n{done.stderr[-2000:]}")
    marks: list[tuple[str, float, float, float, float]] = [
        tuple(m) for m in json.loads(done.stdout.splitlines()[-1])
    ]
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seeds", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child([a for a in args.rest if a != "--"])
        return
    if args.seeds is None:
        parser.error("--seeds is required")
    idle_before = _idle()
    time.sleep(1.0)
    quiet = _idle() - idle_before
    rounds: list[list[tuple[str, float, float, float, float]]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            rounds.append(one_round(args.seeds, Path(scratch) / "work"))
    labels = [m[0] for m in rounds[0]]
    if any([m[0] for m in r] != labels for r in rounds):
        sys.exit("the rounds took different steps")
    print(
        f"| step of a cold build of {args.seeds} (medians of {args.rounds}) "
        "| ends at, s | wall, s | building process CPU, s | workers' CPU, s "
        "| idle core-seconds |"
    )
    print("|---|---|---|---|---|---|")
    totals = [0.0, 0.0, 0.0, 0.0]
    for index, label in enumerate(labels[1:], 1):  # labels[0]: the launch
        figures = []
        for r in rounds:
            _, at, cpu, workers, idle = r[index]
            _, at0, cpu0, workers0, idle0 = r[index - 1]
            figures.append((at, at - at0, cpu - cpu0, workers - workers0, idle - idle0))
        at, wall, cpu, workers, idle = (statistics.median(f[i] for f in figures) for i in range(5))
        for i, value in enumerate((wall, cpu, workers, idle)):
            totals[i] += value
        print(f"| {label} | {at:.3f} | {wall:.3f} | {cpu:.3f} | {workers:.3f} | {idle:.2f} |")
    wall, cpu, workers, idle = totals
    print(f"| (sum of the medians) | | {wall:.3f} | {cpu:.3f} | {workers:.3f} | {idle:.2f} |")
    cores = os.cpu_count() or 1
    other = wall * cores - cpu - workers - idle
    print(
        f"\n{wall * cores:.2f} core-seconds in all: the build's processes {cpu + workers:.2f}, "
        f"idle {idle:.2f}, the rest ({other:.2f}) other processes and the kernel's own threads"
    )
    print(f"idle core-seconds in one second before the rounds: {quiet:.2f} of {cores}")


if __name__ == "__main__":
    main()
