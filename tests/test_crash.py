"""kill -9 at random moments: the output is always whole, and the next start recovers."""

from __future__ import annotations

import random
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import seed_text
from tests.feedcheck import check_feed, entry_ids
from tests.service import RunningService

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
