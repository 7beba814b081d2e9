"""Operating the service: what /healthz and the logs tell an operator (a real `aggregator run`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.conftest import seed_text
from tests.service import RunningService


def json_events(log: str) -> list[dict[str, Any]]:
    """Every line of a JSON log, parsed (each line must be one JSON object)."""
    events = []
    for line in log.splitlines():
        if line.strip():
            event = json.loads(line)
            assert isinstance(event, dict), line
            events.append(event)
    return events


def test_healthz_names_rejected_files_and_json_logs_carry_their_fields(tmp_path: Path) -> None:
    from tests.hostile_http import HostileServer

    with HostileServer() as target:
        svc = RunningService(
            tmp_path,
            logging={"format": "json"},
            links={
                "interval": 1,
                "allow_networks": ["127.0.0.0/8"],
                "allowed_ports": [target.port],
                "host_interval": 0,
                "timeout": 3,
            },
            thumbnails={"enabled": False},
        )
        (svc.seeds / "good.md").write_text(
            seed_text(title="Fine", topics=["AI"], originalUrl=target.url("/ok/a"))
        )
        broken = [f"broken-{n:02}.md" for n in range(22)]
        for name in broken:
            (svc.seeds / name).write_text("---\ntitle: [\n---\n")
        with svc:
            svc.start()
            health = svc.wait_for(lambda h: h.get("last_links") is not None)
            assert svc.stop() == 0
        log = svc.log()

    assert health["rejected"] == 22
    named = health["rejected_files"]
    assert [item["file"] for item in named] == broken[:20]  # bounded, first by path
    assert all(item["reason"].startswith("front matter is not valid YAML") for item in named)

    events = json_events(log)
    rejected = {e["file"]: e["reason"] for e in events if ": rejected: " in e["message"]}
    assert set(rejected) == set(broken)
    assert all(reason.startswith("front matter is not valid YAML") for reason in rejected.values())
    scan = next(e for e in events if e["message"].startswith("scan:"))
    assert (scan["files"], scan["parsed"], scan["removed"]) == (23, 23, 0)
    assert scan["written"] >= 1 and isinstance(scan["seconds"], float)
    links = next(e for e in events if e["message"].startswith("link check:"))
    assert links["checked"] >= 1
    assert sum(links["verdicts"].values()) == links["checked"]
    assert {"changed", "network_down", "seconds"} <= set(links)


def test_a_first_start_without_seeds_says_nothing_is_served_and_what_to_do(
    tmp_path: Path,
) -> None:
    svc = RunningService(tmp_path)
    svc.seeds.rmdir()
    with svc:
        svc.start(wait=False)
        status_code = 0
        health = svc.wait_for(lambda h: h.get("scans", 0) >= 1)
        status_code, _ = svc.health()
        assert status_code == 503 and health["status"] == "error"
        first = [line for line in svc.log().splitlines() if "scan failed" in line]
        assert first, svc.log()
        assert "still served" not in first[0]
        assert "cannot read the seed directory" in first[0]
        assert "nothing is served yet" in first[0]
        assert "Create the seed directory, or point seeds.dir" in first[0]

        # Once there are feeds, a lost seed directory leaves them served, and says so.
        svc.seeds.mkdir()
        (svc.seeds / "a.md").write_text(seed_text(title="Fine"))
        svc.wait_healthy()
        shutil.rmtree(svc.seeds)
        svc.wait_for(lambda h: h["status"] == "error")
        later = [line for line in svc.log().splitlines() if "scan failed" in line]
        assert "the last good feeds are still served" in later[-1]
        assert svc.get("/feeds/ai.atom").status_code == 200
        assert svc.stop() == 0


def test_a_password_removed_from_a_seed_url_is_a_warning_logged_once(tmp_path: Path) -> None:
    svc = RunningService(
        tmp_path,
        logging={"format": "json", "level": "warning"},
        links={"enabled": False},
        thumbnails={"enabled": False},
    )
    (svc.seeds / "creds.md").write_text(
        seed_text(title="Creds", originalUrl="https://bob:s3cret@news.example/creds")
    )
    with svc:
        svc.start()
        svc.wait_next_scan()
        svc.wait_next_scan()  # a rescan with nothing changed says nothing again
        assert svc.stop() == 0
        log = svc.log()
    assert "s3cret" not in log
    said = [e for e in json_events(log) if "password removed" in e["message"]]
    assert len(said) == 1, said
    assert said[0]["level"] == "warning" and said[0]["file"] == "creds.md"
    assert said[0]["warning"].startswith("originalUrl: ")
