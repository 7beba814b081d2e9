"""kill -9 at random moments: the output is always whole, and the next start recovers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import seed_text
from tests.feedcheck import check_feed, entry_ids
from tests.service import RunningService
from tests.test_orphans import descendants

TOPICS = ["AI", "Space", "Energy", "Health", "Policy", "Robotics", "Climate", "Chips"]


def add_seeds(seeds: Path, start: int, count: int) -> None:
    for n in range(start, start + count):
        (seeds / f"s{n:05d}.md").write_text(
            seed_text(
                title=f"Story {n}",
                excerpt=f"Excerpt {n} " * 8,
                originalUrl=f"https://crash.example/{n}",
                topics=[TOPICS[n % len(TOPICS)], TOPICS[(n * 7) % len(TOPICS)]],
                publishedDateTime=f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
            )
        )


def assert_output_whole(out: Path) -> None:
    for path in out.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue  # temp files are hidden, never served, and cleared later
        data = path.read_bytes()
        if path.suffix == ".atom":
            check_feed(data)
        elif path.suffix == ".opml":
            ET.fromstring(data)
        elif path.suffix == ".html":
            assert data.rstrip().endswith(b"</html>"), path


def test_kill_9_during_large_builds_never_leaves_a_broken_file(tmp_path: Path) -> None:
    rng = random.Random(4287)
    with RunningService(tmp_path, build={"workers": 2}) as svc:
        total = 0
        for _round in range(5):
            add_seeds(svc.seeds, total, 600)
            total += 600
            svc.start(wait=False)
            time.sleep(rng.uniform(0.3, 2.0))
            svc.kill()
            assert_output_whole(svc.out)
        svc.start()
        health = svc.wait_for(lambda h: h["articles"] == total, timeout=60)
        assert health["rejected"] == 0
        assert_output_whole(svc.out)
        all_ids = entry_ids(check_feed(svc.get("/feeds/all.atom").content))
        assert len(all_ids) == 50
        assert svc.stop() == 0


def test_a_worker_killed_during_a_build_ends_it_with_one_line_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """`kill -9` of a parse worker (as the OOM killer would) ends `aggregator build` with
    one line saying what happened, not a traceback; the next build finishes the work."""
    seeds, out, state = tmp_path / "seeds", tmp_path / "out", tmp_path / "state.sqlite3"
    seeds.mkdir()
    add_seeds(seeds, 0, 3000)
    command = [sys.executable, "-m", "aggregator", "build", "--seeds", str(seeds)]
    command += ["--out", str(out), "--state", str(state)]
    build = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        workers: set[int] = set()
        while not workers and build.poll() is None and time.monotonic() < deadline:
            workers = descendants(build.pid)
            time.sleep(0.01)
        assert workers, "the build started no worker processes"
        os.kill(min(workers), signal.SIGKILL)
        _, errors = build.communicate(timeout=60)
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
    assert build.returncode == 1, errors
    assert errors.strip().splitlines() == [
        "aggregator: a worker process ended abruptly (killed, or out of memory?); "
        "what the build finished is kept: run it again"
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert "3000 entries" in done.stdout
    assert_output_whole(out)
