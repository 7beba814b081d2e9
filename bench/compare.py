"""This tree against another one (an earlier commit), figure by figure, alternating in one run.

    python -m bench.compare --baseline ../aggregator-before [--count 10000] [--rounds 3]

`--baseline` is a checkout with its own `.venv` (`git worktree add ../before REV && make -C
../before install-run`). Both sides run as the user runs them, through their `aggregator`
executable, on the same corpus copy, one after the other in each round, so that both see
the same machine noise:

1. a cold `aggregator build` (empty output directory, no state file);
2. a warm `aggregator build` right after it (nothing changed: a scan, and every feed
   rendered again and found unchanged);
3. `aggregator run`: from start to a healthy `/healthz` (parse, store, render everything);
4. the same service's rescan with nothing changed, as `/healthz` reports it
   (`last_scan.seconds`, the median of the scans that follow the first);
5. a new seed → listed in its served feed, with `scan.watch: true`.

Prints a Markdown table for docs/benchmarks.md, each figure beside the baseline's.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from bench.common import ROOT, corpus
from bench.service_bench import NEW_SEED, free_port

Figures = dict[str, list[float]]


def cold_then_warm(aggregator: str, seeds: Path, work: Path) -> tuple[float, float]:
    """Seconds of a cold build, then of a warm one on the same output and state."""
    out, state = work / "out", work / "state"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    command = [aggregator, "build", "--seeds", str(seeds), "--out", str(out)]
    command += ["--state", str(state / "aggregator.sqlite3")]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def health(base: str) -> tuple[int, dict[str, object]]:
    try:
        answer = httpx.get(base + "/healthz", timeout=2)
    except httpx.TransportError:
        return 0, {}
    body: dict[str, object] = answer.json()
    return answer.status_code, body


def service_figures(
    aggregator: str, seeds: Path, work: Path, rescans: int
) -> tuple[float, float, float]:
    """(cold start to healthy, median rescan with nothing changed, new seed → served)."""
    shutil.rmtree(work / "public", ignore_errors=True)
    shutil.rmtree(work / "state", ignore_errors=True)
    port = free_port()
    config = work / "service.yaml"
    settings = {
        "seeds": {"dir": str(seeds)},
        "output": {"dir": str(work / "public")},
        "state": {"path": str(work / "state" / "aggregator.sqlite3")},
        "server": {"port": port},
        "scan": {"interval": 1, "jitter": 0, "watch": True},
        "links": {"enabled": False},
        "thumbnails": {"enabled": False},
        "logging": {"level": "warning"},
    }
    config.write_text(yaml.safe_dump(settings))
    base = f"http://127.0.0.1:{port}"
    with (work / "service.log").open("ab") as log:
        process = subprocess.Popen(
            [aggregator, "run", "--config", str(config)], stdout=log, stderr=log
        )
        try:
            start = time.monotonic()
            while health(base)[0] != 200:
                if process.poll() is not None or time.monotonic() - start > 900:
                    raise RuntimeError(f"{aggregator}: the service did not become healthy")
                time.sleep(0.02)
            cold = time.monotonic() - start
            scans: list[float] = []
            seen = -1
            while len(scans) < rescans + 1:
                _, body = health(base)
                count = body.get("scans")
                last = body.get("last_scan")
                if isinstance(count, int) and count != seen and isinstance(last, dict):
                    if seen >= 0:
                        scans.append(float(last["seconds"]))
                    seen = count
                time.sleep(0.05)
            title = f"Compared seed {time.time_ns()}"
            path = seeds / f"zz-compare-{time.time_ns()}.txt"
            start = time.monotonic()
            path.write_text(NEW_SEED.format(title=title, slug=path.stem))
            try:
                while title not in httpx.get(base + "/feeds/ai.atom", timeout=5).text:
                    if time.monotonic() - start > 120:
                        raise RuntimeError("the new seed never appeared")
                    time.sleep(0.01)
                fresh = time.monotonic() - start
            finally:
                path.unlink()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    return cold, statistics.median(scans[1:]), fresh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout with a .venv")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rescans", type=int, default=5)
    parser.add_argument("--skip-service", action="store_true")
    args = parser.parse_args()
    sides = {
        "this tree": str(ROOT / ".venv" / "bin" / "aggregator"),
        "baseline": str(args.baseline.resolve() / ".venv" / "bin" / "aggregator"),
    }
    source = corpus(args.count)
    names = ["cold build", "warm build (nothing changed)"]
    if not args.skip_service:
        names += ["service start → healthy", "rescan, nothing changed", "new seed → served"]
    figures: dict[str, Figures] = {side: {name: [] for name in names} for side in sides}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        seeds = work / "seeds"
        shutil.copytree(source, seeds, ignore=shutil.ignore_patterns(".complete"))
        for number in range(args.rounds):
            order = list(sides.items())
            if number % 2:
                order.reverse()  # neither side always goes first
            for side, aggregator in order:
                found = figures[side]
                cold, warm = cold_then_warm(aggregator, seeds, work)
                found["cold build"].append(cold)
                found["warm build (nothing changed)"].append(warm)
                if not args.skip_service:
                    start, rescan, fresh = service_figures(aggregator, seeds, work, args.rescans)
                    found["service start → healthy"].append(start)
                    found["rescan, nothing changed"].append(rescan)
                    found["new seed → served"].append(fresh)
    print(f"{args.count:,} seeds, {args.rounds} rounds, medians (all rounds in brackets)\n")
    print("| figure | this tree | baseline | ratio |")
    print("|---|---|---|---|")
    for name in names:
        ours, theirs = figures["this tree"][name], figures["baseline"][name]
        mine, base = statistics.median(ours), statistics.median(theirs)
        print(
            f"| {name} | {mine:.3f} s ({', '.join(f'{v:.3f}' for v in ours)}) | "
            f"{base:.3f} s ({', '.join(f'{v:.3f}' for v in theirs)}) | {mine / base:.3f} |"
        )


if __name__ == "__main__":
    main()
