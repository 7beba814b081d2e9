"""The Makefile as the README uses it: what `make run` and `make test` would install and run.

`make -n` (a dry run of the real Makefile) prints the commands make would run, given the
marker files of earlier installs in a scratch virtualenv, without running them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent
INSTALL_PACKAGE = "pip install --quiet -e ."
INSTALL_DEV = "pip install --quiet -e '.[dev]'"


def dry_run(venv: Path, *args: str) -> list[str]:
    """The commands `make` would run for `args`, with the virtualenv at `venv`."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT), f"VENV={venv}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def installs(commands: list[str]) -> list[str]:
    return [c for c in commands if "pip install" in c or "-m venv" in c]


def test_make_run_installs_only_what_running_needs(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    commands = dry_run(venv, "run")
    assert any(c.endswith(INSTALL_PACKAGE) for c in commands)
    assert not any("[dev]" in c for c in commands)
    assert commands[-1] == f"{venv}/bin/aggregator run --config config/aggregator.yaml"
    assert dry_run(venv, "run", "PORT=9000")[-1].endswith(
        "aggregator run --config config/aggregator.yaml --port 9000"
    )


def test_each_install_happens_once_and_make_test_adds_the_dev_tools(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / ".installed").touch()  # after `make run`
    assert installs(dry_run(venv, "run")) == []
    after_run = installs(dry_run(venv, "test"))
    assert [c for c in after_run if c.endswith(INSTALL_DEV)] == after_run != []
    (venv / "bin" / ".installed-dev").touch()  # after `make test`
    assert installs(dry_run(venv, "test")) == []
    assert installs(dry_run(venv, "run")) == []
