"""The `aggregator` command as a user runs it: a real subprocess, real directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from aggregator import __version__
from tests.conftest import seed_text
from tests.feedcheck import check_feed


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_version_and_help(tmp_path: Path) -> None:
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"aggregator {__version__}"
    help_ = run("build", "--help", cwd=tmp_path)
    assert help_.returncode == 0
    for flag in ("--config", "--seeds", "--out", "--strict"):
        assert flag in help_.stdout


def test_build_summarises_and_strict_fails_on_a_rejected_seed(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "ok.md").write_text(seed_text(title="Fine"))
    (seeds / "broken.md").write_text("---\ntitle: [\n---\n")
    plain = run("build", "--seeds", "seeds", "--out", "out", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "2 files (2 read, 0 gone), 1 entries, 1 rejected" in plain.stdout
    assert "broken.md: front matter is not valid YAML" in plain.stdout
    check_feed((tmp_path / "out" / "feeds" / "ai.atom").read_bytes())
    strict = run("build", "--seeds", "seeds", "--out", "out", "--strict", cwd=tmp_path)
    assert strict.returncode == 1
    assert "0 files written" in strict.stdout  # nothing changed since the first build


def test_config_errors_name_the_key_and_the_value(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("feeds:\n  max_entries: -3\n")
    bad_file = run("build", "--config", str(config), cwd=tmp_path)
    assert bad_file.returncode == 2
    assert "feeds.max_entries" in bad_file.stderr and "-3" in bad_file.stderr
    assert str(config) in bad_file.stderr
    bad_env = run("build", cwd=tmp_path, env={"AGGREGATOR_FEEDS__MAX_ENTRIES": "lots"})
    assert bad_env.returncode == 2
    assert "AGGREGATOR_FEEDS__MAX_ENTRIES" in bad_env.stderr and "lots" in bad_env.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text("feeds:\n  max_entires: 10\n")
    unknown = run("build", "--config", str(typo), cwd=tmp_path)
    assert (
        unknown.returncode == 2
        and "feeds.max_entires: unknown key; did you mean feeds.max_entries?" in unknown.stderr
    )


def test_a_missing_seed_directory_is_an_error_and_leaves_the_output_alone(tmp_path: Path) -> None:
    out = tmp_path / "out" / "feeds"
    out.mkdir(parents=True)
    (out / "keep.atom").write_text("last good")
    result = run("build", "--seeds", "nowhere", "--out", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert "nowhere: cannot read the seed directory" in result.stderr
    assert (out / "keep.atom").read_text() == "last good"


def test_config_check_says_ok_or_lists_every_error(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("scan:\n  interval: 30\n")
    ok = run("config", "check", "--config", str(good), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [f"aggregator: config ok: {good}"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("scan:\n  intervall: 5\nfeeds:\n  max_entries: 0\n")
    failed = run("config", "check", "--config", str(bad), cwd=tmp_path)
    assert failed.returncode == 2
    lines = failed.stderr.splitlines()
    assert f"{bad}: scan.intervall: unknown key; did you mean scan.interval? (got 5)" in lines
    assert f"{bad}: feeds.max_entries: Expected `int` >= 1 (got 0)" in lines
    assert lines[-1] == "aggregator: config check failed: 2 errors"
    assert not (tmp_path / "public").exists()  # validated, not run


def test_config_show_prints_the_effective_settings_and_their_sources(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("scan:\n  interval: 30\n")
    shown = run(
        "config",
        "show",
        "--config",
        str(config),
        "--port",
        "9000",
        cwd=tmp_path,
        env={"AGGREGATOR_FEEDS__MAX_ENTRIES": "20"},
    )
    assert shown.returncode == 0, shown.stderr
    settings = yaml.safe_load(shown.stdout)
    assert settings["scan"]["interval"] == 30
    assert settings["server"]["port"] == 9000
    assert settings["feeds"]["max_entries"] == 20
    lines = [" ".join(line.split()) for line in shown.stdout.splitlines()]
    assert "interval: 30.0 # file" in lines
    assert "port: 9000 # flag --port" in lines
    assert "max_entries: 20 # environment AGGREGATOR_FEEDS__MAX_ENTRIES" in lines
    assert "max_related: 5 # default" in lines


def test_run_refuses_a_misspelled_key_and_suggests_the_right_one(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("scan:\n  intervall: 5\n")
    refused = run("run", "--config", str(config), "--port", "1", cwd=tmp_path)
    assert refused.returncode == 2
    assert (
        f"aggregator: config error: {config}: scan.intervall: unknown key; "
        "did you mean scan.interval? (got 5)"
    ) in refused.stderr.splitlines()


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "ok.md").write_text(seed_text(title="Fine"))
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -1` after its line: nobody reads any more
    try:
        result = subprocess.run(
            [sys.executable, "-m", "aggregator", "build", "--seeds", "seeds", "--out", "out"],
            cwd=tmp_path,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
    assert result.stderr == ""
    assert result.returncode != 0
    check_feed((tmp_path / "out" / "feeds" / "ai.atom").read_bytes())  # the work was done


def test_a_full_standard_output_is_one_line_and_status_1(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "ok.md").write_text(seed_text(title="Fine"))
    with open("/dev/full", "w") as full:  # like `aggregator build > /dev/full`
        result = subprocess.run(
            [sys.executable, "-m", "aggregator", "build", "--seeds", "seeds", "--out", "out"],
            cwd=tmp_path,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "aggregator: cannot write to standard output: No space left on device"
    ]
    check_feed((tmp_path / "out" / "feeds" / "ai.atom").read_bytes())  # the work was done


INTERRUPTED_BUILD = """
import os, signal, sys
from aggregator import cli, ingest
real = ingest.refresh
def refresh(*args, **kwargs):  # Ctrl-C arrives once the seeds are stored
    os.kill(os.getpid(), signal.SIGINT)
    return real(*args, **kwargs)
ingest.refresh = refresh
sys.exit(cli.main(sys.argv[1:]))
"""


def test_ctrl_c_is_one_line_and_the_next_build_finishes(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "ok.md").write_text(seed_text(title="Fine"))
    command = ["build", "--seeds", "seeds", "--out", "out", "--state", "state/a.sqlite3"]
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_BUILD, *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 130
    assert result.stderr == "aggregator: interrupted; run it again to finish\n"
    assert not (tmp_path / "out" / "feeds" / "ai.atom").exists()
    again = run(*command, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    check_feed((tmp_path / "out" / "feeds" / "ai.atom").read_bytes())
