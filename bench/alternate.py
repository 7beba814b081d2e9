"""Cold builds of this source tree and another one, taking turns in one run.

    .venv/bin/python -m bench.alternate --seeds DIR --baseline-src DIR [--rounds 12]

`--baseline-src` is a tree holding an `aggregator/` package of another commit
(`git archive REV aggregator | tar -x -C DIR`, then `python -m compileall DIR`): both
trees run on this checkout's interpreter and installed packages, each cold `aggregator
build` in a new process with an empty output directory and no state file, the two
trees taking turns (the first one of each round alternating), so that both see the
same moments of a machine whose speed wanders. Prints the median and smallest wall
time and the median CPU time (user + sys of the build's process tree) of each tree,
and whether the two last builds wrote the same files, byte for byte. Unlike
`bench.compare`, the baseline needs no virtual environment of its own: it compares
commits whose dependencies are the same without installing them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, installed_environment, measure


def build(source: Path, seeds: Path, work: Path) -> tuple[float, float]:
    """Wall and CPU seconds of a cold build of `seeds` by the package in `source`."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    code = (
        f"import sys; sys.path.insert(0, {str(source)!r}); from aggregator.cli import entry; "
        f"sys.argv = ['aggregator', 'build', '--seeds', {str(seeds)!r}, '--out', "
        f"{str(work / 'out')!r}, '--state', {str(work / 'state.sqlite3')!r}]; entry()"
    )
    command = [sys.executable, "-c", code]
    env = installed_environment()
    figures, status = measure(command, stdout=subprocess.DEVNULL, cwd=work, env=env)
    if status != 0:
        sys.exit(f"the build from {source} ended with status {status}")
    return figures.wall, figures.cpu


def same_files(one: Path, other: Path) -> bool:
    """Whether two output directories hold the same files with the same bytes."""
    first = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    second = sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    return first == second and all(
        (one / name).read_bytes() == (other / name).read_bytes() for name in first
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=Path, required=True)
    parser.add_argument("--baseline-src", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    trees = {"baseline": args.baseline_src.resolve(), "this tree": ROOT}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    scratch = Path(tempfile.mkdtemp(prefix="aggregator-alternate-"))
    try:
        for number in range(args.rounds):
            order = list(trees.items())
            if number % 2:
                order.reverse()
            for name, source in order:
                results[name].append(build(source, args.seeds, scratch / name))
        same = same_files(scratch / "baseline" / "out", scratch / "this tree" / "out")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.rounds} cold builds each of {args.seeds}, taking turns")
    print("| tree | wall, median | wall, smallest | CPU, median |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        walls = [wall for wall, _ in runs]
        cpus = [cpu for _, cpu in runs]
        print(
            f"| {name} | {statistics.median(walls):.3f} s | {min(walls):.3f} s "
            f"| {statistics.median(cpus):.3f} s |"
        )
    print("the two outputs, file for file and byte for byte:", "the same" if same else "DIFFER")


if __name__ == "__main__":
    main()
