"""The `aggregator` command line: parse arguments, run a command, print its summary.

Exit status: 0 on success; 1 when the seed or output directory is unusable,
or with `--strict` when a seed was rejected; 2 for usage and config errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aggregator import __version__
from aggregator.config import load_config
from aggregator.errors import AggregatorError, ConfigError
from aggregator.pipeline import BuildReport, Progress, build
from aggregator.text import printable

PROGRESS_MIN_FILES = 500
"""A progress bar appears (on a terminal) for seed directories at least this large."""
MAX_LISTED = 20


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggregator",
        description="Turn a directory of seed documents into one Atom feed per topic.",
    )
    parser.add_argument("--version", action="version", version=f"aggregator {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    build_cmd = commands.add_parser(
        "build",
        help="build every feed once and exit",
        description="Read every seed document and write the feeds, index.html and feeds.opml.",
    )
    build_cmd.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="config file (YAML); default: $AGGREGATOR_CONFIG, else built-in defaults",
    )
    build_cmd.add_argument("--seeds", type=Path, metavar="DIR", help="seed directory")
    build_cmd.add_argument("--out", type=Path, metavar="DIR", help="output directory")
    build_cmd.add_argument("--state", type=Path, metavar="PATH", help="state file (SQLite)")
    build_cmd.add_argument(
        "--strict", action="store_true", help="exit 1 when any seed file was rejected"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        config = load_config(
            args.config,
            overrides={"seeds.dir": args.seeds, "output.dir": args.out, "state.path": args.state},
        )
    except ConfigError as exc:
        print(f"aggregator: config error: {exc}", file=sys.stderr)
        return 2
    try:
        report = build(config, datetime.now(UTC), _progress_bar())
    except AggregatorError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return 1
    print_report(report, config.seeds.dir, config.output.dir)
    return 1 if args.strict and report.rejected else 0


def _progress_bar() -> Progress | None:
    if not sys.stderr.isatty():
        return None
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if total < PROGRESS_MIN_FILES:
            return
        if "bar" not in state:
            from tqdm import tqdm

            state["bar"] = tqdm(total=total, unit="file", desc="reading seeds", leave=False)
        bar = state["bar"]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def print_report(report: BuildReport, seeds: Path, out: Path) -> None:
    """Warnings to stderr, one line each; the summary, with every rejected file, to stdout."""

    def name(source: str) -> str:
        return printable(str(seeds / source))

    scanned, rendered = report.scan, report.render
    for source, warning in scanned.warnings:
        print(f"{name(source)}: warning: {warning}", file=sys.stderr)
    for problem in scanned.problems:
        print(f"{seeds}/{problem} (feeds of seeds there were kept)", file=sys.stderr)
    print(
        f"seeds: {scanned.files} files ({scanned.parsed} read, {scanned.removed} gone), "
        f"{report.articles} articles, {len(report.rejected)} rejected, "
        f"{len(report.duplicates)} duplicates merged"
    )
    print(
        f"feeds: {report.topics} topics; {len(rendered.written)} files written, "
        f"{rendered.unchanged} unchanged, {len(rendered.removed)} removed in {out}/"
    )
    for source, kept in report.duplicates[:MAX_LISTED]:
        print(f"  duplicate: {name(source)} is the same article as {name(kept)}")
    if report.rejected:
        print(f"rejected ({len(report.rejected)}):")
        for source, reason in report.rejected[:MAX_LISTED]:
            print(f"  {name(source)}: {reason}")
        if len(report.rejected) > MAX_LISTED:
            print(f"  … and {len(report.rejected) - MAX_LISTED} more")
