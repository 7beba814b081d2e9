"""The `aggregator` command line: parse arguments, run a command, print its summary.

    aggregator build         bring the feeds up to date once
    aggregator run           the service: scheduled rescans, served feeds
    aggregator healthcheck   ask a running service for /healthz
    aggregator state copy    copy the whole state between SQLite and PostgreSQL

Exit status: 0 on success; 1 when a directory or the state file is unusable,
with `--strict` when a seed is rejected, or when the health check fails; 2 for
usage and config errors.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import json
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from aggregator import __version__
from aggregator.app import App, BuildReport, make_app
from aggregator.config import Config, explain_config, load_config, server_url, settings_lines
from aggregator.errors import AggregatorError, ConfigError, InUseError
from aggregator.ingest import Progress
from aggregator.text import printable

PROGRESS_MIN_FILES = 500
"""A progress bar appears (on a terminal) for seed directories at least this large."""
MAX_LISTED = 20
FLAG_NAMES = {
    "seeds.dir": "--seeds",
    "output.dir": "--out",
    "state.path": "--state",
    "state.url": "--state",
    "server.host": "--host",
    "server.port": "--port",
}
"""The settings command-line flags set (`config show` names the flag)."""
EXIT_BROKEN_PIPE = 141
"""What a shell reports for a tool stopped by SIGPIPE, as `... | head` does to others."""
EXIT_INTERRUPTED = 130
"""What a shell reports for a tool stopped by SIGINT (Ctrl-C)."""
STDOUT_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})
"""Errors of a standard output that cannot be written to (`> /dev/full`): one line, exit 1."""


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="config file (YAML); default: $AGGREGATOR_CONFIG, else built-in defaults",
    )
    command.add_argument("--seeds", type=Path, metavar="DIR", help="seed directory")
    command.add_argument("--out", type=Path, metavar="DIR", help="output directory")
    command.add_argument(
        "--state",
        metavar="PATH|URL",
        help="state: a SQLite file, or a postgresql:// URL shared by several instances",
    )


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

    links_cmd = commands.add_parser(
        "links",
        help="check the articles' URLs, or show what is known of one",
        description="Link checking: `links check` checks URLs now, `links show URL` prints "
        "the history of one URL.",
    )
    links_sub = links_cmd.add_subparsers(dest="links_command", metavar="ACTION", required=True)
    check_cmd = links_sub.add_parser(
        "check", help="check due URLs (or all) now and update the feeds"
    )
    _common(check_cmd)
    which = check_cmd.add_mutually_exclusive_group()
    which.add_argument("--due", action="store_true", help="only URLs that are due (default)")
    which.add_argument("--all", action="store_true", help="every known URL")
    check_cmd.add_argument("--limit", type=int, metavar="N", help="check at most N URLs")
    check_cmd.add_argument("--format", choices=("table", "json"), default="table")
    show_cmd = links_sub.add_parser("show", help="print what is known of one URL")
    show_cmd.add_argument("url", metavar="URL")
    show_cmd.add_argument("--config", type=Path, metavar="PATH", help="config file (YAML)")
    show_cmd.add_argument(
        "--state", metavar="PATH|URL", help="state: a SQLite file or a postgresql:// URL"
    )

    thumbs_cmd = commands.add_parser(
        "thumbnails",
        help="fetch the images topic pages want thumbnails of, once, and update the pages",
        description="What the service does every thumbnails.interval seconds, for sites built "
        "with `aggregator build`: fetch images (through the link checker's safety rules), "
        "write small copies to thumbs/ and update the topic pages.",
    )
    _common(thumbs_cmd)

    config_cmd = commands.add_parser(
        "config",
        help="check the configuration, or show the effective settings",
        description="`config check` validates the settings without running (exit 0, or 2 "
        "with every error); `config show` prints the effective settings and where each "
        "came from (default, file, environment, flag).",
    )
    config_sub = config_cmd.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    for action, help_ in (
        ("check", "validate the settings without running: exit 0, or 2 with every error"),
        ("show", "print the effective settings (YAML) and where each came from"),
    ):
        action_cmd = config_sub.add_parser(action, help=help_)
        _common(action_cmd)
        action_cmd.add_argument("--host", metavar="HOST", help="address to listen on")
        action_cmd.add_argument("--port", type=int, metavar="PORT", help="port to listen on")

    state_cmd = commands.add_parser(
        "state",
        help="copy the state between SQLite and PostgreSQL",
        description="`state copy` copies the whole state (every table, the ledger included) "
        "from one SQLite file or PostgreSQL database to another, and verifies the copy.",
    )
    state_sub = state_cmd.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    copy_cmd = state_sub.add_parser(
        "copy",
        help="copy the whole state, in one transaction, and verify it table by table",
        description="Copy every table of the state at --from into --to (created or migrated "
        "first), in one transaction, then compare row counts and digests table by table. "
        "Stop the services using --to first.",
    )
    copy_cmd.add_argument(
        "--from", dest="source", required=True, metavar="PATH|URL", help="the state to copy"
    )
    copy_cmd.add_argument(
        "--to", dest="target", required=True, metavar="PATH|URL", help="where to copy it"
    )
    copy_cmd.add_argument(
        "--force", action="store_true", help="replace the state the target holds, if any"
    )

    health_cmd = commands.add_parser(
        "healthcheck",
        help="ask a running service whether it is healthy (exit 0 when it is)",
        description="GET /healthz of the service configured by --config (or --url).",
    )
    health_cmd.add_argument("--config", type=Path, metavar="PATH", help="config file (YAML)")
    health_cmd.add_argument("--url", metavar="URL", help="the health URL to ask")
    return parser


def entry() -> NoReturn:
    """The `aggregator` console command (and `python -m aggregator`): `main`, then the
    process ends at once with its exit status.

    When `main` returns, every command has closed the state, the output files and its
    pools and flushed what it printed: the interpreter's teardown (module by module,
    every object freed, exit handlers with nothing left to do) would only add to what a
    command run from cron costs, as much as a tenth of a build that changed nothing.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)  # the interpreter's own exit reports it, as it always did
    os._exit(code)


BUILD_YOUNG_OBJECTS = 10_000
"""During a build, the cycle collector looks at the youngest objects after this many
allocations (Python's default: 700), and at older ones ten times as seldom as that."""


@contextlib.contextmanager
def _batch_collection() -> Iterator[None]:
    """A block that makes many lasting objects (a build: the seeds' stats, the stories,
    the rows it writes) and few reference cycles. What was there before it (the modules,
    the config) is moved out of the cycle collector's reach, and the collector runs less
    often: at 100,000 seeds its passes took 0.40 s of the building process's time with
    Python's defaults, 0.11 s so. The thresholds are put back at the end."""
    saved = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(BUILD_YOUNG_OBJECTS, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()


def _broken_pool(error: BaseException) -> bool:
    """Whether `error` says a worker process of a pool ended abruptly (`kill -9`, the OOM
    killer). A command that started no pool has not imported the pools' module."""
    pools = sys.modules.get("concurrent.futures.process")
    return pools is not None and isinstance(error, pools.BrokenProcessPool)


def main(argv: Sequence[str] | None = None) -> int:
    """The `aggregator` command; a reader that stops early (`... | head`) ends it quietly."""
    try:
        code = _main(argv)
        sys.stdout.flush()
    except KeyboardInterrupt:
        # Ctrl-C: every step that finished is kept (stored seeds, written files) and the
        # one under way was rolled back; a run of the command again goes on from there.
        print("aggregator: interrupted; run it again to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Nobody reads any more: point stdout at /dev/null so the flush at exit cannot
        # fail again and print a traceback (the recipe of Python's signal docs).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        # Output files and the state file report their own errors; what escapes with one
        # of these is standard output that cannot take the summary (`> /dev/full`, a full
        # disk): say so in one line, and keep the flush at exit from failing again.
        if exc.errno not in STDOUT_WRITE_ERRORS or exc.filename is not None:
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        print(f"aggregator: cannot write to standard output: {exc.strerror}", file=sys.stderr)
        return 1
    return code


def _state_flag(given: str | None) -> dict[str, Any]:
    """The settings `--state` gives: `state.url` for a URL, else `state.path` (and no URL,
    whatever a config file or the environment says: the flag wins)."""
    if given is None:
        return {}
    if "://" in given:  # checked as a URL (another scheme is refused, not taken for a path)
        return {"state.url": given}
    return {"state.path": Path(given), "state.url": ""}  # the flag wins over a file's URL


def _main(argv: Sequence[str] | None) -> int:
    args = make_parser().parse_args(argv)
    overrides = {
        "seeds.dir": getattr(args, "seeds", None),
        "output.dir": getattr(args, "out", None),
        **_state_flag(getattr(args, "state", None)),
        "server.host": getattr(args, "host", None),
        "server.port": getattr(args, "port", None),
    }

    def load() -> Config:
        return load_config(args.config, overrides=overrides)

    if args.command == "config":
        return config_command(args.config_command, args.config, overrides)
    if args.command == "state":
        return state_copy_command(args.source, args.target, args.force)
    try:
        config = load()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"aggregator: config error: {problem}", file=sys.stderr)
        return 2
    if args.command == "healthcheck":
        return healthcheck(args.url or _health_url(config))
    if args.command == "links":
        try:
            if args.links_command == "show":
                return show_link(config, args.url)  # reads only: works beside the service
            with _sole_writer(config):
                return check_links_command(config, args.all, args.limit, args.format)
        except InUseError as exc:
            return _in_use(exc)
        except AggregatorError as exc:
            print(f"aggregator: {exc}", file=sys.stderr)
            return 1
    if args.command == "thumbnails":
        try:
            with _sole_writer(config):
                return thumbnails_command(config)
        except InUseError as exc:
            return _in_use(exc)
        except AggregatorError as exc:
            print(f"aggregator: {exc}", file=sys.stderr)
            return 1
    if args.command == "run":
        from aggregator import logs
        from aggregator.daemon import Service

        logs.configure(config.logging.format, config.logging.level)
        try:
            code = Service(config, load).run()
        except InUseError as exc:
            print(f"aggregator: {exc}: not starting a second service on it", file=sys.stderr)
            return 1
        except AggregatorError as exc:
            print(f"aggregator: {exc}", file=sys.stderr)
            return 1
        # Everything is closed and flushed; do not wait at exit for threads stuck in
        # a system call (a DNS lookup of the link checker can take tens of seconds).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    try:
        with _sole_writer(config), _leading_app(config) as app, _batch_collection():
            report = app.build(datetime.now(UTC), _progress_bar())
    except InUseError as exc:
        return _in_use(exc)
    except AggregatorError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not _broken_pool(exc):
            raise
        print(
            "aggregator: a worker process ended abruptly (killed, or out of memory?); "
            "what the build finished is kept: run it again",
            file=sys.stderr,
        )
        return 1
    print_report(report, config.seeds.dir, config.output.dir)
    return 1 if args.strict and report.rejected else 0


def config_command(action: str, path: Path | None, overrides: dict[str, Any]) -> int:
    """`config check` (ok, or every error one a line; exit 2) and `config show`."""
    try:
        explained = explain_config(path, overrides=overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(
            f"aggregator: config {action} failed: {count} error{'s' * (count != 1)}",
            file=sys.stderr,
        )
        return 2
    if action == "show":
        print("\n".join(settings_lines(explained, FLAG_NAMES)))
        return 0
    print(f"aggregator: config ok: {explained.file or 'built-in defaults'}")
    return 0


def state_copy_command(source: str, target: str, force: bool) -> int:
    """`state copy`: copy the whole state, print one line per table and a total."""
    from aggregator.store.copy import SameStateError, copy_state

    try:
        report = copy_state(source, target, force)
    except SameStateError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return 2
    except InUseError as exc:
        print(f"aggregator: {exc}: stop the service before copying into it", file=sys.stderr)
        return 1
    except AggregatorError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return 1
    for table in report.tables:
        print(f"{table.table:<14} {table.rows:>10} rows  {table.digest[:16]}")
    replaced = " (its previous state replaced)" if report.replaced else ""
    print(
        f"copied {report.rows} rows in {len(report.tables)} tables from {report.source} "
        f"to {report.target}{replaced}; verified: row counts and digests match"
    )
    return 0


def _sole_writer(config: Config) -> contextlib.AbstractContextManager[None]:
    """The locks of the state file and output directory, for a one-off command that writes.

    Beside a running service, such a command would write the service's output with
    its own settings (its own public URL among them): it is refused instead.
    """
    from aggregator.locks import writing

    return writing(config.state.lock_file, config.output.dir)


@contextlib.contextmanager
def _leading_app(config: Config) -> Iterator[App]:
    """The app of a one-off command that writes. On a shared state it leads for the
    command's length (refused with `InUseError` while an instance of the service leads)."""
    with make_app(config, leading=not config.state.shared) as app:
        if app.shared is None:
            yield app
            return
        from aggregator.cluster import instance_name, lead_once

        name = f"{instance_name()} (one-off command)"
        with lead_once(app.shared, config.cluster.lease, name) as term:
            app.lead(term)
            yield app


def _in_use(exc: InUseError) -> int:
    print(
        f"aggregator: {exc}: stop the service first, or let it do this work "
        "(it rescans, checks links and fetches thumbnails on its own)",
        file=sys.stderr,
    )
    return 1


def check_links_command(config: Config, everything: bool, limit: int | None, fmt: str) -> int:
    """`links check`: check now, print each URL (table or JSON) and a summary."""
    from aggregator.links import classify

    bar: Any = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="url", desc="checking links", leave=False)
    now = datetime.now(UTC)
    with _leading_app(config) as app:
        app.rescan(now)
        run = app.check_links(now, everything, limit, (lambda _: bar.update()) if bar else None)
    result, report = run.result, run.report
    if bar is not None:
        bar.close()
    verdicts = {state.url: state for state in report.states}
    rows = []
    for attempt in result.attempts:
        state = verdicts.get(attempt.url)
        rows.append(
            {
                "url": attempt.url,
                "outcome": classify(attempt).value,
                "verdict": state.status.value if state else None,
                "code": attempt.status,
                "final_url": attempt.final_url,
                "redirects": [[h.url, h.status] for h in attempt.hops],
                "error": attempt.detail or None,
                "host": attempt.host,
            }
        )
    by_outcome: dict[str, int] = {}
    by_host: dict[str, dict[str, int]] = {}
    for row in rows:
        outcome = str(row["outcome"])
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
        tally = by_host.setdefault(str(row["host"]), {})
        tally[outcome] = tally.get(outcome, 0) + 1
    if fmt == "json":
        summary = {
            "checked": rows,
            "by_outcome": by_outcome,
            "by_host": by_host,
            "deferred": sorted(result.deferred),
            "network_down": report.network_down,
            "feeds_changed": report.changed,
        }
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    print(f"{'seen':<8} {'code':>4}  {'verdict':<8} url")
    for row in rows:
        code = row["code"] if row["code"] is not None else "-"
        note = row["error"] or (f"→ {row['final_url']}" if row["redirects"] else "")
        verdict = row["verdict"] or "-"
        url = printable(str(row["url"]), 100)
        print(f"{row['outcome']:<8} {code!s:>4}  {verdict:<8} {url}  {note}")
    verdict_counts: dict[str, int] = {}
    for state in report.states:
        verdict_counts[state.status.value] = verdict_counts.get(state.status.value, 0) + 1
    print(
        f"checked {len(rows)} URLs: seen "
        + ", ".join(f"{n} {k}" for k, n in sorted(by_outcome.items()))
        + "; verdicts (what feeds go by) "
        + ", ".join(f"{n} {k}" for k, n in sorted(verdict_counts.items()))
        + (f"; {len(result.deferred)} deferred (host asked to wait)" if result.deferred else "")
    )
    busiest = sorted(by_host.items(), key=lambda item: -sum(item[1].values()))[:10]
    for name, counts in busiest:
        print(f"  {name}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if report.network_down:
        print("most hosts failed the same way: the network looks down, nothing was declared dead")
    print(f"{report.changed} URLs changed what the feeds show")
    return 0


def thumbnails_command(config: Config) -> int:
    """`thumbnails`: fetch the images that are due, print what failed and a summary."""
    if not config.thumbnails.enabled:
        print("aggregator: thumbnails are off (thumbnails.enabled: false)", file=sys.stderr)
        return 2
    try:
        now = datetime.now(UTC)
        with _leading_app(config) as app:
            app.rescan(now)
            report = app.fetch_thumbnails(now)
    except AggregatorError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return 1
    for url, why in report.failed[:MAX_LISTED]:
        print(f"  {printable(url, 100)}: {printable(why, 200)}")
    if len(report.failed) > MAX_LISTED:
        print(f"  ... and {len(report.failed) - MAX_LISTED} more")
    print(f"{report.made} thumbnails made, {len(report.failed)} images failed (tried again later)")
    return 0


def show_link(config: Config, url: str) -> int:
    """`links show URL`: the stored state and recent history of one URL."""
    state = None
    for spelling in dict.fromkeys([url, url.strip(), _normalized(url)]):  # as typed first
        state = App.stored_link(config, spelling) if spelling else None
        if state is not None:
            break
    if state is None:
        print(f"aggregator: {printable(url)} has not been checked (or is not an article URL)")
        return 1
    print(f"{state.url}\n  verdict: {state.status.value}  (last status {state.code})")
    if state.final_url and state.final_url != state.url:
        kind = "permanent" if state.permanent else "temporary"
        print(f"  redirects ({kind}): " + " → ".join(f"{h.url} [{h.status}]" for h in state.hops))
        print(f"  final URL: {state.final_url}")

    def when(moment: datetime | None) -> str:
        return moment.isoformat(timespec="seconds") if moment else "-"

    print(
        f"  first checked {when(state.first_checked)}, last {when(state.last_checked)},"
        f" next {when(state.next_check)}"
    )
    if state.etag or state.last_modified:
        print(f"  validators: ETag {state.etag or '-'}, Last-Modified {state.last_modified or '-'}")
    if state.failures:
        print(f"  {state.failures} consecutive dead answers since {when(state.failing_since)}")
    if state.last_error:
        print(f"  last error: {state.last_error}")
    for at, outcome, code in state.history:
        print(f"  {at}  {outcome:<8} {code if code is not None else '-'}")
    return 0


def _normalized(url: str) -> str | None:
    from aggregator.urls import normalize_url

    try:
        return normalize_url(url.strip())
    except ValueError:
        return None


def _health_url(config: Config) -> str:
    return server_url(config.server.host, config.server.port) + "healthz"


def healthcheck(url: str) -> int:
    """Print the service's health status; 0 when it answers 200."""
    import urllib.error  # here: no other command asks anything over HTTP
    import urllib.request

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
        f"{report.articles} entries, {len(report.rejected)} rejected, "
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
