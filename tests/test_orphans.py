"""Parse workers and their fork server end with the service, even after `kill -9`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from tests.conftest import seed_text
from tests.service import RunningService


def children() -> dict[int, list[int]]:
    """Parent pid → pids of its children, from /proc."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        found.setdefault(parent, []).append(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    tree, found, todo = children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie has ended: it only waits to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_9_during_a_parallel_build(svc: RunningService) -> dict[int, str]:
    """Start `svc` on enough seeds to parse in worker processes, `kill -9` it once the
    fork server and both workers are up, wait up to 10 s for them to end, and return
    those still alive (pid → command line)."""
    for n in range(1500):  # enough to parse in worker processes
        (svc.seeds / f"s{n:05d}.md").write_text(
            seed_text(title=f"Story {n}", originalUrl=f"https://o.example/{n}")
        )
    svc.start(wait=False)
    assert svc.process is not None
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    # The fork server and both workers (and multiprocessing's resource tracker).
    while len(seen) < 3 and time.monotonic() < deadline:
        seen |= descendants(svc.process.pid)
        time.sleep(0.01)
    assert len(seen) >= 3, svc.log()
    svc.kill()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in seen) and time.monotonic() < deadline:
        time.sleep(0.1)  # the tracker writes (or would) before it ends
    return {pid: command(pid) for pid in seen if alive(pid)}


def test_kill_9_of_the_service_takes_its_workers_and_fork_server_along(tmp_path: Path) -> None:
    with RunningService(tmp_path, build={"workers": 2}) as svc:
        left = kill_9_during_a_parallel_build(svc)
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        assert left == {}


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def test_a_json_log_stays_json_after_kill_9_during_a_parallel_build(tmp_path: Path) -> None:
    """Multiprocessing's resource tracker, left behind by `kill -9`, cleans up the pool's
    semaphores; it must not write its plain-text warnings into the service's JSON log."""
    with RunningService(tmp_path, build={"workers": 2}, logging={"format": "json"}) as svc:
        assert kill_9_during_a_parallel_build(svc) == {}
        log = svc.log()
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines, "the service logged nothing before it was killed"
    for line in lines:
        event = json.loads(line)
        assert isinstance(event, dict) and "level" in event, line
