"""`aggregator run` end to end: a real process, real HTTP, real signals, real files."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.app import make_app
from aggregator.config import load_config
from tests.conftest import seed_text
from tests.feedcheck import ATOM, check_feed, entry_titles
from tests.service import RunningService


def summaries(data: bytes) -> dict[str, tuple[str, str, str]]:
    """title → (id, updated, summary) of every entry."""
    root = check_feed(data)
    return {
        e.findtext(f"{ATOM}title") or "": (
            e.findtext(f"{ATOM}id") or "",
            e.findtext(f"{ATOM}updated") or "",
            e.findtext(f"{ATOM}summary") or "",
        )
        for e in root.findall(f"{ATOM}entry")
    }


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    svc = RunningService(tmp_path)
    (svc.seeds / "ai.md").write_text(
        seed_text(title="AI one", topics=["AI"], originalUrl="https://s.example/1")
    )
    (svc.seeds / "space.md").write_text(
        seed_text(title="Space one", topics=["Space"], originalUrl="https://s.example/2")
    )
    svc.start()
    with svc:
        yield svc


def test_the_service_serves_and_follows_the_seed_directory(service: RunningService) -> None:
    first = service.get("/feeds/ai.atom")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert entry_titles(check_feed(first.content)) == ["AI one"]
    assert (
        service.get("/feeds/ai.atom", **{"If-None-Match": first.headers["etag"]}).status_code == 304
    )

    # A new seed appears in its topic feeds.
    (service.seeds / "ai2.md").write_text(
        seed_text(
            title="AI two",
            topics=["AI"],
            originalUrl="https://s.example/3",
            publishedDateTime="2024-06-01T00:00:00Z",
        )
    )
    service.wait_next_scan()
    assert entry_titles(check_feed(service.get("/feeds/ai.atom").content)) == ["AI two", "AI one"]
    space_etag = service.get("/feeds/space.atom").headers["etag"]

    # An edited excerpt changes that entry and its updated, nothing else.
    before = summaries(service.get("/feeds/all.atom").content)
    (service.seeds / "ai.md").write_text(
        seed_text(
            title="AI one", topics=["AI"], originalUrl="https://s.example/1", excerpt="Corrected."
        )
    )
    service.wait_next_scan()
    after = summaries(service.get("/feeds/all.atom").content)
    assert after["AI one"][0] == before["AI one"][0]
    assert after["AI one"][2] == "Corrected."
    assert after["AI one"][1] > before["AI one"][1]
    assert {k: v for k, v in after.items() if k != "AI one"} == {
        k: v for k, v in before.items() if k != "AI one"
    }
    unchanged = service.get("/feeds/space.atom", **{"If-None-Match": space_etag})
    assert unchanged.status_code == 304

    # A deleted seed disappears.
    (service.seeds / "ai2.md").unlink()
    service.wait_next_scan()
    assert entry_titles(check_feed(service.get("/feeds/ai.atom").content)) == ["AI one"]

    assert service.stop() == 0


def test_what_a_scan_writes_is_served_once_the_scan_is_done(service: RunningService) -> None:
    # The server keeps a file it was asked for in memory, and looks at it again a second
    # later at most, or at once when the service says it wrote: the feed is asked for all
    # the time, from a moment at random against the scans, so without that word a feed
    # written would go on being served stale for a moment at random in that second.
    asking, stop = threading.Event(), threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            if asking.wait(0.01):
                service.get("/feeds/ai.atom")
                time.sleep(0.005)

    thread = threading.Thread(target=keep_asking, daemon=True)
    thread.start()
    feed = service.out / "feeds" / "ai.atom"
    try:
        for n in range(3):
            asking.clear()
            time.sleep(1.1 + random.uniform(0, 1))  # what it kept is a second old: a new phase
            asking.set()
            title = f"AI {n}".encode()
            (service.seeds / f"ai{n}.md").write_text(
                seed_text(title=f"AI {n}", topics=["AI"], originalUrl=f"https://s.example/{n}/")
            )
            deadline = time.monotonic() + 20
            while title not in feed.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.001)
            written = time.monotonic()
            while service.get("/feeds/ai.atom").content != feed.read_bytes():
                assert time.monotonic() - written < 0.25, "the feed written is not served"
    finally:
        stop.set()
        thread.join(5)


def test_a_restart_serves_the_same_bytes_and_rewrites_nothing(service: RunningService) -> None:
    feeds = {
        p: (p.read_bytes(), p.stat().st_mtime_ns) for p in service.out.rglob("*") if p.is_file()
    }
    assert service.stop() == 0
    service.start()
    service.wait_next_scan()
    after = {
        p: (p.read_bytes(), p.stat().st_mtime_ns) for p in service.out.rglob("*") if p.is_file()
    }
    assert after == feeds
    _, health = service.health()
    assert health["last_scan"]["parsed"] == 0
    assert service.stop() == 0


def test_sighup_applies_a_new_config_and_keeps_the_old_when_it_is_invalid(
    service: RunningService,
) -> None:
    for n in range(3):
        (service.seeds / f"more{n}.md").write_text(
            seed_text(title=f"More {n}", topics=["AI"], originalUrl=f"https://s.example/m{n}")
        )
    service.wait_next_scan()
    assert len(entry_titles(check_feed(service.get("/feeds/ai.atom").content))) == 4
    service.settings["feeds"] = {"max_entries": 2}
    service.write_config()
    service.signal(signal.SIGHUP)
    service.wait_next_scan()
    assert len(entry_titles(check_feed(service.get("/feeds/ai.atom").content))) == 2

    service.config_path.write_text("feeds:\n  max_entries: many\n")
    service.signal(signal.SIGHUP)
    service.wait_next_scan()
    assert "config reload failed, keeping the running config" in service.log()
    assert "feeds.max_entries" in service.log()
    assert len(entry_titles(check_feed(service.get("/feeds/ai.atom").content))) == 2
    assert service.stop() == 0


def test_healthcheck_command_reports_the_service(service: RunningService) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "aggregator", "healthcheck", "--config", str(service.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert service.stop() == 0
    down = subprocess.run(
        [sys.executable, "-m", "aggregator", "healthcheck", "--config", str(service.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert down.returncode == 1 and "unreachable" in down.stderr


def wait_titles(svc: RunningService, path: str, expected: list[str], timeout: float = 5) -> float:
    """Seconds until the served feed at `path` lists exactly `expected` (404 counts as [])."""
    began = time.monotonic()
    titles: list[str] = []
    while time.monotonic() - began < timeout:
        response = svc.get(path)
        titles = entry_titles(check_feed(response.content)) if response.status_code == 200 else []
        if titles == expected:
            return time.monotonic() - began
        time.sleep(0.02)
    raise AssertionError(f"{path}: {titles} != {expected}\n{svc.log()}")


def test_watch_mode_follows_new_edited_and_deleted_seeds_at_once(tmp_path: Path) -> None:
    svc = RunningService(tmp_path, scan={"interval": 3600, "watch": True})
    with svc:
        svc.start()
        (svc.seeds / "new.md").write_text(seed_text(title="Fresh", topics=["Now"]))
        assert wait_titles(svc, "/feeds/now.atom", ["Fresh"]) < 2
        (svc.seeds / "new.md").write_text(seed_text(title="Fresher", topics=["Now"]))
        wait_titles(svc, "/feeds/now.atom", ["Fresher"])
        folder = svc.seeds / "batch"
        folder.mkdir()
        for n in range(3):
            (folder / f"{n}.md").write_text(
                seed_text(
                    title=f"Batch {n}",
                    topics=["Batch"],
                    originalUrl=f"https://w.example/{n}",
                    publishedDateTime=f"2024-01-0{n + 1}T00:00:00Z",
                )
            )
        wait_titles(svc, "/feeds/batch.atom", ["Batch 2", "Batch 1", "Batch 0"])
        shutil.move(folder, tmp_path / "elsewhere")
        wait_titles(svc, "/feeds/batch.atom", [])
        (svc.seeds / "new.md").unlink()
        wait_titles(svc, "/feeds/now.atom", [])
        assert svc.stop() == 0


def test_a_second_service_on_a_busy_port_exits_1_at_once(service: RunningService) -> None:
    started = time.monotonic()
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "aggregator",
            "run",
            "--config",
            str(service.config_path),
            "--state",
            str(service.root / "other.sqlite3"),
            "--out",
            str(service.root / "other-public"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert second.returncode == 1
    assert "cannot listen" in second.stderr
    assert time.monotonic() - started < 10
    assert service.stop() == 0


def test_the_service_checks_links_and_a_dead_original_gives_way(tmp_path: Path) -> None:
    from tests.hostile_http import HostileServer

    with HostileServer() as target:
        svc = RunningService(
            tmp_path,
            links={
                "interval": 1,
                "allow_networks": ["127.0.0.0/8"],
                "allowed_ports": [target.port],
                "host_interval": 0,
                "dead_after": 1,
                "dead_min_hours": 0,
                "timeout": 3,
            },
        )
        (svc.seeds / "a.md").write_text(
            seed_text(
                title="Moved on",
                topics=["AI"],
                originalUrl=target.url("/status/404"),
                webUrl=target.url("/ok/a"),
            )
        )
        (svc.seeds / "b.md").write_text(
            seed_text(
                title="Silent",
                topics=["AI"],
                originalUrl=target.url("/silent"),
                publishedDateTime="2023-01-01T00:00:00Z",
            )
        )
        with svc:
            svc.start()
            deadline = time.monotonic() + 20
            link = ""
            while time.monotonic() < deadline:
                root = check_feed(svc.get("/feeds/ai.atom").content)
                first = root.find(f"{ATOM}entry/{ATOM}link")
                link = first.get("href", "") if first is not None else ""
                if link == target.url("/ok/a"):
                    break
                time.sleep(0.2)
            assert link == target.url("/ok/a"), svc.log()
            _, health = svc.health()
            assert health["last_links"]["checked"] >= 1
            assert 'aggregator_links_checked_total{verdict="dead"}' in svc.get("/metrics").text
            # A stop while a check waits on a silent server still ends in time.
            started = time.monotonic()
            assert svc.stop() == 0
            assert time.monotonic() - started < 10


def test_a_long_link_check_does_not_hold_up_new_seeds(tmp_path: Path) -> None:
    from tests.hostile_http import HostileServer

    with HostileServer() as target:
        svc = RunningService(
            tmp_path,
            links={
                "allow_networks": ["127.0.0.0/8"],
                "allowed_ports": [target.port],
                "timeout": 25,  # /silent never answers: the link job is busy that long
            },
        )
        (svc.seeds / "a.md").write_text(
            seed_text(title="Silent", topics=["AI"], originalUrl=target.url("/silent"))
        )
        with svc:
            svc.start()
            deadline = time.monotonic() + 10
            while not any(p.startswith("/silent") for _, p, _ in target.requests):
                assert time.monotonic() < deadline, "the link job did not start"
                time.sleep(0.1)
            (svc.seeds / "b.md").write_text(
                seed_text(title="Fresh", topics=["AI"], originalUrl="https://n.example/fresh")
            )
            started = time.monotonic()
            while "Fresh" not in entry_titles(check_feed(svc.get("/feeds/ai.atom").content)):
                assert time.monotonic() - started < 5, "a rescan waited for the link check"
                time.sleep(0.1)


def test_a_future_article_is_published_by_the_service_when_it_falls_due(
    tmp_path: Path,
) -> None:
    """Held back while dated more than a day ahead, then published at that moment, though
    no seed changes and no rescan is due (the interval is long)."""
    svc = RunningService(tmp_path, scan={"interval": 600, "jitter": 0})
    (svc.seeds / "now.md").write_text(seed_text(title="Today", originalUrl="https://s.example/1"))
    lead = 8.0
    due = datetime.now(UTC) + timedelta(seconds=lead)
    (svc.seeds / "later.md").write_text(
        seed_text(
            title="Tomorrow",
            originalUrl="https://s.example/2",
            publishedDateTime=(due + timedelta(days=1)).isoformat(),
        )
    )
    with svc:
        svc.start()
        assert datetime.now(UTC) < due, "the service took too long to start for this test"
        assert entry_titles(check_feed(svc.get("/feeds/all.atom").content)) == ["Today"]
        deadline = time.monotonic() + lead + 10
        titles: list[str] = []
        while time.monotonic() < deadline:
            titles = entry_titles(check_feed(svc.get("/feeds/all.atom").content))
            if "Tomorrow" in titles:
                break
            time.sleep(0.2)
        assert titles == ["Tomorrow", "Today"]
        assert datetime.now(UTC) >= due  # not before its time
        assert svc.stop() == 0  # lets the render in progress (index, OPML) finish
        served = {p: p.read_bytes() for p in svc.out.rglob("*") if p.is_file()}
    shutil.rmtree(svc.out)
    config = load_config(svc.config_path, environ={})
    with make_app(config) as app:  # a cold build from the same seeds and state file
        app.build(datetime.now(UTC))
    assert {p: p.read_bytes() for p in svc.out.rglob("*") if p.is_file()} == served


def test_a_new_spelling_of_a_topic_renames_it_in_the_running_service(tmp_path: Path) -> None:
    """Only the spelling changes (`ai` → `AI`, the same topic and the same entries): the
    pages and the OPML name it as a cold build would."""
    svc = RunningService(tmp_path)
    seed = svc.seeds / "a.md"
    seed.write_text(seed_text(title="One", topics=["ai"], originalUrl="https://s.example/1"))
    with svc:
        svc.start()
        assert 'text="ai"' in svc.get("/feeds.opml").text
        seed.write_text(seed_text(title="One", topics=["AI"], originalUrl="https://s.example/1"))
        svc.wait_next_scan()
        assert 'text="AI"' in svc.get("/feeds.opml").text
        assert ">AI<" in svc.get("/topics/ai.html").text
