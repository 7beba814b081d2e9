"""SIGHUP and the config file: what a reload may change, and what it must refuse.

The reloads a process of its own proves nothing more for are in test_daemon.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import seed_text
from tests.service import RunningService


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    """A service whose directories are not the defaults (./seeds, ./public, ./state)."""
    svc = RunningService(tmp_path)
    svc.seeds = tmp_path / "articles"
    svc.seeds.mkdir()
    svc.settings["seeds"]["dir"] = str(svc.seeds)
    svc.write_config()
    for n in range(2):
        (svc.seeds / f"a{n}.md").write_text(
            seed_text(title=f"Story {n}", topics=["AI"], originalUrl=f"https://r.example/{n}")
        )
    with svc:
        svc.start()
        yield svc


def wait_for_log(svc: RunningService, text: str, count: int = 1, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while svc.log().count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{svc.log()}"
        time.sleep(0.05)


def test_sighup_while_the_config_is_a_fifo_never_blocks_the_service(
    service: RunningService,
) -> None:
    service.config_path.unlink()
    os.mkfifo(service.config_path)
    service.signal(signal.SIGHUP)
    wait_for_log(service, "not a regular file")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        # Liveness, with a wide margin: the server answers at once when nothing blocks it.
        response = httpx.get(service.base + "/healthz", timeout=1)
        assert response.status_code == 200
        time.sleep(0.1)
    assert service.stop(timeout=10) == 0


def test_an_empty_config_file_is_a_usage_error_at_start_up(tmp_path: Path) -> None:
    config = tmp_path / "empty.yaml"
    config.write_text("# nothing here yet\n")
    for command in (["run"], ["build"]):
        done = subprocess.run(
            [sys.executable, "-m", "aggregator", *command, "--config", str(config)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done
        assert done.stderr.strip().splitlines() == [
            f"aggregator: config error: {config}: the config file is empty (no settings); "
            "write the settings in it, or `{}` for all defaults"
        ]
    assert not (tmp_path / "public").exists() and not (tmp_path / "state").exists()
