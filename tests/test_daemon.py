"""The service's lifecycle in this process: start, serve, reload, stop.

What needs a process of its own (kill -9, exit codes, fork workers, SIGTERM timing)
stays in test_service.py and test_crash.py.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.daemon import Service
from aggregator.errors import InUseError
from tests.conftest import seed_text
from tests.feedcheck import check_feed, entry_titles
from tests.service import InProcessService

HEALTH_KEYS = [
    "status",
    "version",
    "started",
    "last_scan",
    "last_build",
    "last_links",
    "last_error",
    "scans",
    "seeds",
    "articles",
    "topics",
    "rejected",
    "rejected_files",
]


def seeded(root: Path, count: int = 2, **settings: object) -> InProcessService:
    svc = InProcessService(root, **settings)
    for n in range(count):
        (svc.seeds / f"a{n}.md").write_text(
            seed_text(title=f"Story {n}", topics=["AI"], originalUrl=f"https://r.example/{n}")
        )
    return svc


def test_a_stop_request_ends_the_service_with_status_0(tmp_path: Path) -> None:
    svc = seeded(tmp_path)
    seen: dict[str, object] = {}

    def drive(svc: InProcessService) -> None:
        status, health = svc.health()
        seen.update(health, code=status)

    assert svc.run(drive) == 0
    assert seen["code"] == 200 and seen["articles"] == 2 and seen["topics"] == 1
    assert [k for k in seen if k != "code"] == HEALTH_KEYS
    assert list(seen["last_scan"]) == [  # type: ignore[call-overload]
        "at",
        "ok",
        "seconds",
        "files",
        "parsed",
        "removed",
        "problems",
    ]
    assert list(seen["last_build"]) == ["at", "written", "unchanged", "removed"]  # type: ignore[call-overload]
    assert "stopped" in svc.log()
    assert (svc.out / "feeds" / "ai.atom").is_file()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_the_service(tmp_path: Path, sig: signal.Signals) -> None:
    svc = seeded(tmp_path)
    stopped = threading.Event()

    def drive(svc: InProcessService) -> None:
        svc.signal(sig)
        stopped.set()

    assert svc.run(drive) == 0
    assert stopped.is_set() and "stopping: finishing the write in progress" in svc.log()


def test_a_stop_requested_before_run_ends_run_at_once(tmp_path: Path) -> None:
    svc = seeded(tmp_path, server={"enabled": False})
    config = load_config(svc.config_path)
    service = Service(config, lambda: config)
    service.request_stop()
    started = time.monotonic()
    assert service.run() == 0
    assert time.monotonic() - started < 5


def test_a_second_service_on_the_same_state_is_refused(tmp_path: Path) -> None:
    svc = seeded(tmp_path)
    config = load_config(svc.config_path)
    refused: list[str] = []

    def drive(svc: InProcessService) -> None:
        with pytest.raises(InUseError) as caught:
            Service(config, lambda: config)
        refused.append(str(caught.value))

    assert svc.run(drive) == 0
    assert refused


def test_sighup_applies_a_new_config_at_the_next_scan(tmp_path: Path) -> None:
    svc = seeded(tmp_path, count=3)

    def drive(svc: InProcessService) -> None:
        assert len(entry_titles(check_feed(svc.get("/feeds/ai.atom").content))) == 3
        svc.settings["feeds"] = {"max_entries": 1}
        svc.write_config()
        svc.signal(signal.SIGHUP)
        svc.wait_for(lambda _: "config reloaded" in svc.log())
        svc.wait_next_scan()
        assert len(entry_titles(check_feed(svc.get("/feeds/ai.atom").content))) == 1

    assert svc.run(drive) == 0


def test_an_empty_config_file_is_refused_on_reload(tmp_path: Path) -> None:
    svc = seeded(tmp_path)

    def drive(svc: InProcessService) -> None:
        before = files(svc.out)
        for n, text in enumerate(["", "  \n\n", "# all commented out\n# seeds:\n"], 1):
            svc.config_path.write_text(text)
            svc.signal(signal.SIGHUP)
            svc.wait_for(lambda _, n=n: svc.log().count("config reload failed") >= n)
            svc.wait_next_scan()
        assert "the config file is empty" in svc.log()
        _, health = svc.health()
        assert health["status"] == "ok" and health["articles"] == 2
        assert files(svc.out) == before

    assert svc.run(drive) == 0


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("seeds", "dir", "elsewhere"),
        ("output", "dir", "other-public"),
        ("state", "path", "other.sqlite3"),
        ("site", "public_url", "https://moved.example/"),
        ("server", "port", 1),
    ],
)
def test_a_reload_that_needs_a_restart_is_refused_whole(
    tmp_path: Path, section: str, key: str, value: object
) -> None:
    svc = seeded(tmp_path)

    def drive(svc: InProcessService) -> None:
        before = files(svc.out)
        svc.settings[section][key] = value
        svc.settings["feeds"] = {"max_entries": 1}  # would apply, but the reload is refused
        svc.write_config()
        svc.signal(signal.SIGHUP)
        svc.wait_for(lambda _: "config reload refused" in svc.log())
        svc.wait_next_scan()
        assert f"{section}.{key} changed" in svc.log() and "restart" in svc.log()
        assert len(entry_titles(check_feed(svc.get("/feeds/ai.atom").content))) == 2
        assert files(svc.out) == before

    assert svc.run(drive) == 0


def test_a_new_seed_is_served_after_the_next_scan(tmp_path: Path) -> None:
    svc = seeded(tmp_path)

    def drive(svc: InProcessService) -> None:
        (svc.seeds / "new.md").write_text(
            seed_text(title="Fresh", topics=["Space"], originalUrl="https://r.example/new")
        )
        svc.service.rescan_now()
        health = svc.wait_for(lambda h: h["articles"] == 3)
        assert health["topics"] == 2
        assert entry_titles(check_feed(svc.get("/feeds/space.atom").content)) == ["Fresh"]

    assert svc.run(drive) == 0


def two_topics(root: Path) -> InProcessService:
    svc = InProcessService(root)
    (svc.seeds / "ai.md").write_text(
        seed_text(title="AI one", topics=["AI"], originalUrl="https://s.example/1")
    )
    (svc.seeds / "space.md").write_text(
        seed_text(title="Space one", topics=["Space"], originalUrl="https://s.example/2")
    )
    return svc


def test_a_missing_seed_directory_is_an_error_and_the_last_feeds_stay(tmp_path: Path) -> None:
    def drive(svc: InProcessService) -> None:
        good = svc.get("/feeds/ai.atom").content
        moved = svc.root / "moved-away"
        shutil.move(svc.seeds, moved)
        svc.wait_next_scan()
        status, health = svc.health()
        assert status == 503 and "cannot read the seed directory" in health["last_error"]
        assert svc.get("/feeds/ai.atom").content == good
        assert (svc.out / "feeds" / "space.atom").exists()
        shutil.move(moved, svc.seeds)
        svc.wait_next_scan()
        svc.wait_healthy()
        assert svc.get("/feeds/ai.atom").content == good

    assert two_topics(tmp_path).run(drive) == 0


def test_metrics_count_scans_and_requests(tmp_path: Path) -> None:
    def drive(svc: InProcessService) -> None:
        svc.get("/feeds/ai.atom")
        svc.get("/nope")
        text = svc.get("/metrics").text
        assert 'aggregator_scans_total{outcome="ok"}' in text
        assert 'aggregator_http_requests_total{status="404"} 1.0' in text
        assert "aggregator_seeds 2.0" in text

    assert two_topics(tmp_path).run(drive) == 0


def test_after_a_failed_write_the_next_scan_writes_everything_again(tmp_path: Path) -> None:
    def drive(svc: InProcessService) -> None:
        feed = svc.out / "feeds" / "ai.atom"
        feed.unlink()
        feed.mkdir()  # the write of ai.atom now fails
        (svc.seeds / "ai3.md").write_text(
            seed_text(
                title="AI three",
                topics=["AI"],
                originalUrl="https://s.example/ai3",
                publishedDateTime="2025-01-01T00:00:00Z",
            )
        )
        svc.wait_next_scan()
        status, health = svc.health()
        assert status == 503 and "ai.atom" in health["last_error"]
        feed.rmdir()
        svc.wait_next_scan()
        svc.wait_healthy()
        titles = entry_titles(check_feed(svc.get("/feeds/ai.atom").content))
        assert titles == ["AI three", "AI one"]

    assert two_topics(tmp_path).run(drive) == 0


def test_files_deleted_from_the_output_are_written_again(tmp_path: Path) -> None:
    def drive(svc: InProcessService) -> None:
        shutil.rmtree(svc.out / "feeds")
        svc.wait_next_scan()
        assert entry_titles(check_feed(svc.get("/feeds/ai.atom").content)) == ["AI one"]

    assert two_topics(tmp_path).run(drive) == 0


def files(out: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_a_busy_port_ends_run_with_status_1_and_frees_the_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    svc = seeded(tmp_path)
    config = load_config(svc.config_path)
    with socket.socket() as taken:
        taken.bind((config.server.host, config.server.port))
        taken.listen()
        with caplog.at_level(logging.INFO, logger="aggregator"):
            assert Service(config, lambda: config).run() == 1
    assert f"cannot listen on {config.server.host}:{config.server.port}: " in caplog.text
    assert "serving " not in caplog.text
    again = Service(config, lambda: config)  # the state and output are free again
    again.request_stop()
    assert again.run() == 0
