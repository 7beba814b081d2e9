"""Shared fixtures: real seed files in temp dirs, real builds, real output files."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from socketserver import BaseServer
from typing import Any, TypeVar

import pytest
import yaml

from aggregator.app import BuildReport, make_app
from aggregator.config import Config, load_config

NOW = datetime(2026, 11, 1, tzinfo=UTC)
"""The clock every test build runs at."""


S = TypeVar("S", bound=BaseServer)


@contextlib.contextmanager
def running(server: S) -> Iterator[S]:
    """`server` answering on a thread of its own for the block; shut down and closed after."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def seed_text(**fields: Any) -> str:
    """A seed document: a valid article unless fields override (None removes a field)."""
    doc: dict[str, Any] = {
        "category": "news",
        "title": "A headline",
        "excerpt": "What happened, in a sentence.",
        "publishedDateTime": "2024-05-01T10:00:00Z",
        "originalUrl": "https://news.example/2024/a-headline",
        "webUrl": "https://news.example/2024/a-headline",
        "type": "article",
        "quality": 50,
        "published": True,
        "provider": {"name": "Example News", "domain": "news.example"},
        "topics": ["AI"],
        "secured": "c2VjcmV0LWJsb2ItbmV2ZXItc2hvd24=",
    }
    doc.update(fields)
    doc = {k: v for k, v in doc.items() if v is not None}
    return "---\n" + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False) + "---\n"


class Site:
    """A seed directory and an output directory, and a way to build one into the other."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seeds = root / "seeds"
        self.out = root / "public"
        self.state = root / "state" / "aggregator.sqlite3"
        self.seeds.mkdir(parents=True)

    def add(self, name: str, content: str | bytes | None = None, **fields: Any) -> Path:
        path = self.seeds / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            content = seed_text(**fields)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    def config(self, **overrides: Any) -> Config:
        flat = {
            "seeds.dir": self.seeds,
            "output.dir": self.out,
            "state.path": self.state,
            "build.workers": 1,
        }
        flat.update(overrides)
        return load_config(None, overrides=flat, environ={})

    def build(self, now: datetime = NOW, overrides: dict[str, Any] | None = None) -> BuildReport:
        with make_app(self.config(**(overrides or {}))) as app:
            return app.build(now)

    def feed(self, slug: str) -> bytes:
        return (self.out / "feeds" / f"{slug}.atom").read_bytes()

    def feeds(self) -> dict[str, bytes]:
        return {p.stem: p.read_bytes() for p in sorted((self.out / "feeds").glob("*.atom"))}


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


SESSION_MARK = "AGGREGATOR_TEST_SESSION"
"""Set in the environment of this test run, and so of every process it starts."""
LEFTOVER_GRACE = 5.0
"""Seconds processes that are ending get before they count as left behind."""


def pytest_configure(config: pytest.Config) -> None:
    os.environ[SESSION_MARK] = f"{os.getpid()}-{uuid.uuid4().hex}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a process it started is still alive (a service or its workers):
    each would hold memory, ports and state-file locks after the suite is over."""
    deadline = time.monotonic() + LEFTOVER_GRACE
    left = _left_behind()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _left_behind()
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  {pid}: {cmd}" for pid, cmd in sorted(left.items())]
    message = "processes started by the tests are still running:\n" + "\n".join(lines)
    if reporter is not None:
        reporter.write_line(message, red=True)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _left_behind() -> dict[int, str]:
    """pid → command line of the running processes that carry this run's mark, except
    pytest itself and its own multiprocessing helpers (they end with it)."""
    mark = f"{SESSION_MARK}={os.environ.get(SESSION_MARK, '')}".encode()
    me = os.getpid()
    found: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                if mark not in handle.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                cmd = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if fields[0] != b"Z":
            found[int(entry.name)] = (int(fields[1]), cmd)
    helpers = {
        pid for pid, (parent, cmd) in found.items() if parent == me and "multiprocessing" in cmd
    }
    mine = set(helpers)
    changed = True
    while changed:
        more = {pid for pid, (parent, _) in found.items() if parent in mine} - mine
        mine |= more
        changed = bool(more)
    return {pid: cmd for pid, (_, cmd) in found.items() if pid not in mine}
