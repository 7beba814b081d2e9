"""The service's rescan with nothing changed, timed in one process, for any checkout.

    <checkout>/.venv/bin/python bench/rescan_probe.py WORKDIR [--count 100000] [--times 10]

Builds nothing itself: WORKDIR holds `out/` and `state.sqlite3` from an `aggregator build`
of the corpus (`make_corpus.py --count N`, cached under the temp dir by `bench.common`).
Opens the state as the service does, rescans once (which loads the stat cache and renders
everything), then times `--times` rescans that find nothing changed, output check included,
and prints the median and every time. It runs on this tree's `App` or, in checkouts from
before it, on the `Pipeline` of the time, so that the same figure can be taken on both
sides of a change, alternating (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aggregator.config import Config, load_config


def rescan_once(config: Config, now: datetime) -> Callable[[], None]:
    """Returns a function doing one rescan that must find nothing changed."""
    try:
        from aggregator.app import make_app
    except ImportError:  # a checkout from before the app: its pipeline
        return _pipeline_rescan(config, now)
    app = make_app(config)
    app.rescan(now)

    def once() -> None:
        assert app.rescan(now).scan.parsed == 0

    return once


def _pipeline_rescan(config: Config, now: datetime) -> Callable[[], None]:
    import importlib

    pipeline_module = importlib.import_module("aggregator.pipeline")
    state = importlib.import_module("aggregator.state")
    output = importlib.import_module("aggregator.output")
    store, out = state.Store(config.state.path), output.OutputDir(config.output.dir)
    pipeline = pipeline_module.Pipeline(config, store, out)
    pipeline.scan(now)
    pipeline.render(now)

    def once() -> None:
        assert pipeline.scan(now).parsed == 0
        pipeline.output_intact()

    return once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("work", type=Path)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--times", type=int, default=10)
    args = parser.parse_args()
    seeds = Path(tempfile.gettempdir()) / f"aggregator-corpus-{args.count}"
    config = load_config(
        None,
        overrides={
            "seeds.dir": seeds,
            "output.dir": args.work / "out",
            "state.path": args.work / "state.sqlite3",
        },
        environ={},
    )
    once = rescan_once(config, datetime.now(UTC))
    times = []
    for _ in range(args.times):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    print(f"{statistics.median(times):.4f} s median;", " ".join(f"{t:.3f}" for t in times))


if __name__ == "__main__":
    main()
