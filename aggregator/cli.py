"""The `aggregator` command line: parse arguments, run a command, print its summary.

    aggregator build         bring the feeds up to date once
    aggregator run           the service: scheduled rescans, served feeds
    aggregator healthcheck   ask a running service for /healthz

Exit status: 0 on success; 1 when a directory or the state file is unusable,
with `--strict` when a seed is rejected, or when the health check fails; 2 for
usage and config errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aggregator import __version__
from aggregator.config import Config, load_config
from aggregator.errors import AggregatorError, ConfigError
from aggregator.pipeline import BuildReport, Progress, build
from aggregator.text import printable

PROGRESS_MIN_FILES = 500
"""A progress bar appears (on a terminal) for seed directories at least this large."""
MAX_LISTED = 20


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="config file (YAML); default: $AGGREGATOR_CONFIG, else built-in defaults",
    )
    command.add_argument("--seeds", type=Path, metavar="DIR", help="seed directory")
    command.add_argument("--out", type=Path, metavar="DIR", help="output directory")
    command.add_argument("--state", type=Path, metavar="PATH", help="state file (SQLite)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggregator",
        description="Turn a directory of seed documents into one Atom feed per topic.",
    )
    parser.add_argument("--version", action="version", version=f"aggregator {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    build_cmd = commands.add_parser(
        "build",
        help="bring the feeds up to date once and exit",
        description="Read new and changed seed documents and write the feeds, index.html "
        "and feeds.opml.",
    )
    _common(build_cmd)
    build_cmd.add_argument(
        "--strict", action="store_true", help="exit 1 when any seed file is rejected"
    )

    run_cmd = commands.add_parser(
        "run",
        help="run the service: rescan on a schedule and serve the feeds",
        description="Rescan the seed directory every scan.interval seconds, keep the feeds "
        "up to date and serve them over HTTP. SIGTERM/SIGINT stop it, SIGHUP reloads the config.",
    )
    _common(run_cmd)
    run_cmd.add_argument("--host", metavar="HOST", help="address to listen on")
    run_cmd.add_argument("--port", type=int, metavar="PORT", help="port to listen on")

    health_cmd = commands.add_parser(
        "healthcheck",
        help="ask a running service whether it is healthy (exit 0 when it is)",
        description="GET /healthz of the service configured by --config (or --url).",
    )
    health_cmd.add_argument("--config", type=Path, metavar="PATH", help="config file (YAML)")
    health_cmd.add_argument("--url", metavar="URL", help="the health URL to ask")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    overrides = {
        "seeds.dir": getattr(args, "seeds", None),
        "output.dir": getattr(args, "out", None),
        "state.path": getattr(args, "state", None),
        "server.host": getattr(args, "host", None),
        "server.port": getattr(args, "port", None),
    }

    def load() -> Config:
        return load_config(args.config, overrides=overrides)

    try:
        config = load()
    except ConfigError as exc:
        print(f"aggregator: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "healthcheck":
        return healthcheck(args.url or _health_url(config))
    if args.command == "run":
        from aggregator import logs
        from aggregator.daemon import Service

        logs.configure(config.logging.format, config.logging.level)
        try:
            return Service(load).run()
        except AggregatorError as exc:
            print(f"aggregator: {exc}", file=sys.stderr)
            return 1
    try:
        report = build(config, datetime.now(UTC), _progress_bar())
    except AggregatorError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return 1
    print_report(report, config.seeds.dir, config.output.dir)
    return 1 if args.strict and report.rejected else 0


def _health_url(config: Config) -> str:
    host = config.server.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - listening everywhere: ask locally
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}/healthz"


def healthcheck(url: str) -> int:
    """Print the service's health status; 0 when it answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own URL
            body = json.loads(response.read() or b"{}")
            print(f"{body.get('status', 'ok')}: {url}")
            return 0
    except urllib.error.HTTPError as exc:
        try:
            status = json.loads(exc.read() or b"{}").get("status", exc.code)
        except ValueError:
            status = exc.code
        print(f"unhealthy ({status}): {url}", file=sys.stderr)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"unreachable: {url} ({exc})", file=sys.stderr)
    return 1


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
