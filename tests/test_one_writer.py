"""One writer per state file and output directory: real services, real commands beside them."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import seed_text
from tests.feedcheck import check_feed, entry_titles
from tests.service import RunningService


def aggregator(
    *args: str, cwd: Path, user: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(user or []), sys.executable, "-m", "aggregator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def add_seed(seeds: Path, name: str, title: str) -> None:
    (seeds / f"{name}.md").write_text(
        seed_text(title=title, topics=["AI"], originalUrl=f"https://w.example/{name}")
    )


def snapshot(out: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    svc = RunningService(tmp_path / "first")
    add_seed(svc.seeds, "one", "One")
    with svc:
        svc.start()
        yield svc


def test_a_second_service_on_the_same_state_or_output_refuses_at_once(
    service: RunningService, tmp_path: Path
) -> None:
    pid = service.process.pid if service.process else 0
    same_state = RunningService(tmp_path / "second", state={"path": str(service.state)})
    same_out = RunningService(tmp_path / "third", output={"dir": str(service.out)})
    for other, held in ((same_state, service.state), (same_out, service.out)):
        with other:
            other.start(wait=False)
            assert other.process is not None
            assert other.process.wait(20) == 1
            lines = other.log().strip().splitlines()
            assert len(lines) == 1, lines
            assert str(held) in lines[0] and f"pid {pid}" in lines[0], lines[0]
    # The first one goes on, alone: a new seed shows in its feed.
    add_seed(service.seeds, "two", "Two")
    service.wait_next_scan()
    assert sorted(entry_titles(check_feed(service.get("/feeds/ai.atom").content))) == [
        "One",
        "Two",
    ]


def test_the_locks_die_with_their_holder_and_add_nothing_to_the_output(
    service: RunningService,
) -> None:
    service.wait_next_scan()
    assert not [p for p in service.out.rglob("*") if "lock" in p.name]  # nothing extra served
    service.kill()  # kill -9: no chance to clean up
    service.start()  # the kernel dropped the locks with the process
    assert service.stop() == 0


def test_one_off_commands_beside_the_service_refuse_and_write_nothing(tmp_path: Path) -> None:
    # No site.public_url: the service advertises its own address, and a command with
    # another server.port (the default 8080 here) would advertise another.
    with RunningService(tmp_path, site={"public_url": None}, links={"enabled": False}) as svc:
        add_seed(svc.seeds, "one", "One")
        svc.start()
        pid = svc.process.pid if svc.process else 0
        assert svc.log().count("site.public_url is not set") == 1
        before = snapshot(svc.out)
        assert before
        paths = ["--seeds", str(svc.seeds), "--out", str(svc.out), "--state", str(svc.state)]
        for command in (["build"], ["links", "check"], ["thumbnails"]):
            done = aggregator(*command, *paths, cwd=tmp_path)
            assert done.returncode == 1, done
            message = done.stderr.strip()
            assert len(message.splitlines()) == 1, message
            assert str(svc.state) in message and f"pid {pid}" in message
            assert "stop the service" in message
        assert snapshot(svc.out) == before
        # Reading the state beside the service still works.
        shown = aggregator(
            "links", "show", "https://w.example/one", "--state", str(svc.state), cwd=tmp_path
        )
        assert "has not been checked" in shown.stdout, shown
        assert svc.stop() == 0
        # Once the service is gone, the same command runs.
        assert aggregator("build", *paths, cwd=tmp_path).returncode == 0


def test_no_other_spelling_of_the_state_file_and_no_removed_file_gets_round_the_lock(
    service: RunningService, tmp_path: Path
) -> None:
    """The lock is on the state file itself: a symbolic or hard link to it is the same
    file, and removing whatever lies beside it (an old `.lock`, say) unlocks nothing."""
    pid = service.process.pid if service.process else 0
    for leftover in service.state.parent.iterdir():
        if leftover != service.state and not leftover.name.startswith(service.state.name + "-"):
            leftover.unlink()  # anything but the state file and SQLite's -wal/-shm
    symbolic = tmp_path / "symbolic.sqlite3"
    symbolic.symlink_to(service.state)
    hard = service.state.parent / "hard.sqlite3"
    os.link(service.state, hard)
    for n, spelling in enumerate((service.state, symbolic, hard)):
        out = tmp_path / f"out{n}"
        done = aggregator(
            "build",
            "--seeds",
            str(service.seeds),
            "--out",
            str(out),
            "--state",
            str(spelling),
            cwd=tmp_path,
        )
        assert done.returncode == 1, done
        assert f"pid {pid}" in done.stderr and "in use" in done.stderr, done.stderr
        assert not out.exists() or not any(out.iterdir())


def test_a_set_public_url_brings_no_start_up_note(tmp_path: Path) -> None:
    with RunningService(tmp_path, site={"public_url": "https://feeds.example.org/"}) as svc:
        svc.start()
        assert svc.stop() == 0
        assert "public_url is not set" not in svc.log()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_state_file_deleted_or_replaced_under_the_service_is_reported(
    service: RunningService, tmp_path: Path, how: str
) -> None:
    copy = tmp_path / "copy.sqlite3"
    if how == "replaced":
        with sqlite3.connect(service.state) as db, sqlite3.connect(copy) as backup:
            db.backup(backup)
        os.replace(copy, service.state)
    else:
        service.state.unlink()
    health = service.wait_for(lambda h: h["status"] == "error")
    assert f"state file was {how}" in health["last_error"]
    assert "restart the service" in health["last_error"]
    assert service.health()[0] == 503
    assert f"state file was {how}" in service.log()
    # A restart opens the file now at that path.
    assert service.stop() == 0
    service.start()
    add_seed(service.seeds, "two", "Two")
    service.wait_next_scan()
    assert len(entry_titles(check_feed(service.get("/feeds/ai.atom").content))) == 2


@pytest.fixture
def unprivileged() -> Iterator[tuple[Path, list[str]]]:
    """A directory and a command prefix to run as a user file modes apply to (not root)."""
    root = Path(tempfile.mkdtemp(prefix="aggregator-ro-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file modes do not apply")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        probe = subprocess.run([*prefix, sys.executable, "-c", "import aggregator"], check=False)
        if probe.returncode != 0:
            pytest.skip("running as root, and user 65534 cannot run this Python")
    try:
        yield root, prefix
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_read_only_state_file_made_writable_again_is_usable(
    unprivileged: tuple[Path, list[str]],
) -> None:
    root, user = unprivileged
    (root / "seeds").mkdir()
    add_seed(root / "seeds", "one", "One")
    state = root / "state" / "s.sqlite3"
    args = ["build", "--seeds", "seeds", "--out", "public", "--state", "state/s.sqlite3"]
    if user:
        os.chown(root, 65534, 65534)
        os.chown(root / "seeds", 65534, 65534)
    assert aggregator(*args, cwd=root, user=user).returncode == 0

    def read_only_then_writable() -> None:
        state.chmod(0o444)
        refused = aggregator(*args, cwd=root, user=user)
        assert refused.returncode == 1
        message = refused.stderr.strip()
        assert "state/s.sqlite3" in message and "read-only" in message, message
        for advice in ("move the file away", "delete", "remove", "rebuild"):
            assert advice not in message
        state.chmod(0o644)
        again = aggregator(*args, cwd=root, user=user)
        assert again.returncode == 0, again.stderr

    read_only_then_writable()
    # A reader that opened the file while it was read-only (another tool, an older
    # version) leaves read-only -wal and -shm files behind; they are repaired.
    state.chmod(0o444)
    reader = "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('SELECT 1 FROM seeds')"
    subprocess.run([*user, sys.executable, "-c", reader, str(state)], check=True, timeout=30)
    assert stat.S_IMODE(Path(f"{state}-shm").stat().st_mode) == 0o444
    state.chmod(0o644)
    again = aggregator(*args, cwd=root, user=user)
    assert again.returncode == 0, again.stderr
    for suffix in ("-wal", "-shm"):
        sidecar = Path(f"{state}{suffix}")
        assert not sidecar.exists() or stat.S_IMODE(sidecar.stat().st_mode) == 0o644
    read_only_then_writable()
