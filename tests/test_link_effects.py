"""What link verdicts do to the feeds, through `aggregator links check` against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.apps import check_links
from tests.conftest import NOW, Site
from tests.feedcheck import ATOM, check_feed
from tests.hostile_http import HostileServer


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as running:
        yield running


def links(server: HostileServer, **extra: Any) -> dict[str, Any]:
    settings = {
        "links.allow_networks": ("127.0.0.0/8",),
        "links.allowed_ports": (server.port,),
        "links.host_interval": 0,
        "links.dead_after": 2,
        "links.dead_min_hours": 1,
        "links.timeout": 3,
    }
    settings.update({f"links.{k}": v for k, v in extra.items()})
    return settings


def shown(site: Site) -> dict[str, tuple[str, str]]:
    """title → (alternate link, updated) in the all feed."""
    root = check_feed(site.feed("all"))
    result = {}
    for entry in root.findall(f"{ATOM}entry"):
        link = next(
            x.get("href", "")
            for x in entry.findall(f"{ATOM}link")
            if x.get("rel", "alternate") == "alternate"
        )
        result[entry.findtext(f"{ATOM}title") or ""] = (
            link,
            entry.findtext(f"{ATOM}updated") or "",
        )
    return result


def add(site: Site, server: HostileServer, name: str, original: str, web: str | None) -> None:
    site.add(
        f"{name}.md",
        title=name,
        originalUrl=server.url(original),
        webUrl=server.url(web) if web else None,
    )


def run(site: Site, server: HostileServer, hours: float = 0, **extra: Any) -> None:
    config = site.config(**links(server, **extra))
    check_links(config, NOW + timedelta(hours=hours), everything=True)


def test_confirmed_dead_falls_back_then_leaves_and_unknown_changes_nothing(
    site: Site, server: HostileServer
) -> None:
    add(site, server, "fallback", "/status/404", "/ok/web")
    add(site, server, "gone", "/status/410", None)
    add(site, server, "flaky", "/status/503", None)
    add(site, server, "fine", "/ok/fine", None)
    site.build()
    before = shown(site)
    run(site, server, 0)
    assert shown(site) == before  # one dead answer is not a verdict
    run(site, server, 2)  # the second, an hour and more later: confirmed
    after = shown(site)
    assert after["fallback"][0] == server.url("/ok/web")
    assert after["fallback"][1] > before["fallback"][1]  # its link changed: updated moves
    assert "gone" not in after  # every URL dead: the entry leaves
    assert after["flaky"] == before["flaky"] and after["fine"] == before["fine"]


def test_drop_and_keep_modes(site: Site, server: HostileServer) -> None:
    add(site, server, "dead-original", "/status/404", "/ok/web")
    site.build()
    for hours in (0, 2):
        run(site, server, hours, on_dead="keep")
    assert shown(site)["dead-original"][0] == server.url("/status/404")
    run(site, server, 4, on_dead="drop")
    assert "dead-original" not in shown(site)


def test_a_permanent_redirect_updates_the_link_and_the_id_stays(
    site: Site, server: HostileServer
) -> None:
    add(site, server, "moved", "/moved/story-about-things", None)
    site.build()
    entry_id = check_feed(site.feed("all")).findtext(f"{ATOM}entry/{ATOM}id")
    run(site, server, 0)
    assert shown(site)["moved"][0] == server.url("/ok/story-about-things")
    assert check_feed(site.feed("all")).findtext(f"{ATOM}entry/{ATOM}id") == entry_id
    run(site, server, 1, follow_permanent_redirects=False)
    assert shown(site)["moved"][0] == server.url("/moved/story-about-things")


def test_links_check_json_lists_every_url_and_show_prints_its_history(
    site: Site, server: HostileServer
) -> None:
    add(site, server, "a", "/ok/a", "/status/404")
    # Another host name: a 429 with Retry-After pauses its host, and the pause must
    # not catch the 404 on 127.0.0.1 before it is checked.
    site.add(
        "b.md",
        title="b",
        originalUrl=server.url("/retry-seconds", host="localhost"),
        webUrl=None,
    )
    config = site.root / "c.yaml"
    config.write_text(
        "links:\n"
        f"  allow_networks: [127.0.0.0/8]\n  allowed_ports: [{server.port}]\n"
        "  host_interval: 0\n  timeout: 3\n"
    )
    common = [
        "--config",
        str(config),
        "--seeds",
        str(site.seeds),
        "--out",
        str(site.out),
        "--state",
        str(site.state),
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aggregator",
            "links",
            "check",
            "--all",
            "--format",
            "json",
            *common,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    urls = {row["url"]: row["outcome"] for row in report["checked"]}
    assert urls == {
        server.url("/ok/a"): "alive",
        server.url("/status/404"): "dead",
        server.url("/retry-seconds", host="localhost"): "unknown",
    }
    assert report["deferred"] == []
    assert report["by_host"]["127.0.0.1"] == {"alive": 1, "dead": 1}
    assert report["by_host"]["localhost"] == {"unknown": 1}
    show = subprocess.run(
        [
            sys.executable,
            "-m",
            "aggregator",
            "links",
            "show",
            server.url("/status/404"),
            "--config",
            str(config),
            "--state",
            str(site.state),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert show.returncode == 0 and "verdict: unknown" in show.stdout and "dead" in show.stdout


def test_a_failing_url_is_confirmed_only_by_get(site: Site, server: HostileServer) -> None:
    for n in range(3):
        add(site, server, f"gone{n}", f"/status/404/{n}", None)
    site.build()
    run(site, server, 0, per_host=1)
    first = [m for m, p, _ in server.requests if p.startswith("/status/404/")]
    assert first.count("GET") == 1  # once HEAD and GET agreed, HEAD alone says "gone"
    server.requests.clear()
    run(site, server, 30, per_host=1)
    again = [m for m, p, _ in server.requests if p.startswith("/status/404/")]
    assert again == ["HEAD", "GET"] * 3  # each one failing already: only a GET confirms


def test_a_host_that_asked_to_wait_is_left_alone_in_later_runs(
    site: Site, server: HostileServer
) -> None:
    add(site, server, "busy", "/retry-seconds/a", None)
    site.build()
    run(site, server, 0)
    assert [p for _, p, _ in server.requests] == ["/retry-seconds/a"]
    add(site, server, "later", "/ok/later", None)
    site.build(now=NOW + timedelta(seconds=30))
    check_links(site.config(**links(server)), NOW + timedelta(seconds=60), everything=True)
    assert [p for _, p, _ in server.requests] == ["/retry-seconds/a"]  # 120 s are not over
    check_links(site.config(**links(server)), NOW + timedelta(seconds=130), everything=True)
    assert "/ok/later" in [p for _, p, _ in server.requests]


def test_a_pause_asked_under_one_spelling_holds_in_later_runs_for_every_spelling(
    site: Site, server: HostileServer
) -> None:
    add(site, server, "busy", "/retry-once/a", None)
    site.build()
    run(site, server, 0)
    assert [p for _, p, _ in server.requests] == ["/retry-once/a"]
    spellings = ("127.1", "2130706433", "localhost")  # the same server as 127.0.0.1
    for n, host in enumerate(spellings):
        site.add(f"later{n}.md", title=f"later{n}", originalUrl=server.url(f"/ok/{n}", host))
    site.build(now=NOW + timedelta(seconds=30))
    check_links(site.config(**links(server)), NOW + timedelta(seconds=60), everything=True)
    assert [p for _, p, _ in server.requests] == ["/retry-once/a"]  # 120 s are not over
    check_links(site.config(**links(server)), NOW + timedelta(seconds=130), everything=True)
    asked = sorted(p for _, p, _ in server.requests[1:])
    assert asked == [f"/ok/{n}" for n in range(len(spellings))] + ["/retry-once/a"]


def test_credentials_in_seed_urls_reach_no_feed_page_log_or_checked_host(
    site: Site, server: HostileServer
) -> None:
    secret_url = server.url("/ok/secret").replace("://", "://bob:s3cret@")
    site.add(
        "creds.md",
        title="With credentials",
        originalUrl=secret_url,
        webUrl=None,
        images=[{"url": "https://bob:s3cret@img.example/1.jpg"}],
        related=[{"title": "R", "originalUrl": "https://bob:s3cret@r.example/r"}],
    )
    config = site.root / "aggregator.yaml"
    config.write_text(
        json.dumps(
            {
                "seeds": {"dir": str(site.seeds)},
                "output": {"dir": str(site.out)},
                "state": {"path": str(site.state)},
                "feeds": {"formats": ["atom", "json", "rss"]},
                "build": {"workers": 1},
            }
        )
    )
    built = subprocess.run(
        [sys.executable, "-m", "aggregator", "build", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    warnings = [line for line in built.stderr.splitlines() if "password removed" in line]
    assert len(warnings) == 3 and all("creds.md" in line for line in warnings)
    assert "s3cret" not in built.stdout + built.stderr
    run(site, server, 0)
    assert [path for _, path, _ in server.requests] == ["/ok/secret"]
    assert not any("authorization" in {k.lower() for k in h} for _, _, h in server.requests)
    files = [p for p in (*site.out.rglob("*"), *site.state.parent.iterdir()) if p.is_file()]
    assert len(files) > 5
    for path in files:
        assert b"s3cret" not in path.read_bytes() and b"bob" not in path.read_bytes(), path
    assert shown(site)["With credentials"][0] == server.url("/ok/secret")


def test_a_permanent_redirect_to_a_url_with_credentials_publishes_none(
    site: Site, server: HostileServer
) -> None:
    add(site, server, "moved", "/moved-with-password/story-about-things", None)
    config = site.root / "aggregator.yaml"
    config.write_text(
        json.dumps(
            {
                "seeds": {"dir": str(site.seeds)},
                "output": {"dir": str(site.out)},
                "state": {"path": str(site.state)},
                "feeds": {"formats": ["atom", "json", "rss"]},
                "build": {"workers": 1},
                "links": {
                    "allow_networks": ["127.0.0.0/8"],
                    "allowed_ports": [server.port],
                    "host_interval": 0,
                    "timeout": 3,
                },
            }
        )
    )
    common = ["--config", str(config)]
    commands = [
        ["build"],
        ["links", "check", "--all"],
        ["links", "check", "--all", "--format", "json"],
        ["links", "show", server.url("/moved-with-password/story-about-things")],
    ]
    for command in commands:
        done = subprocess.run(
            [sys.executable, "-m", "aggregator", *command, *common],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "s3cret" not in done.stdout + done.stderr, command
    assert "/ok/story-about-things" in done.stdout  # `links show` names where it moved
    assert shown(site)["moved"][0] == server.url("/ok/story-about-things")
    files = [p for p in (*site.out.rglob("*"), *site.state.parent.iterdir()) if p.is_file()]
    assert len(files) > 5
    for path in files:
        assert b"s3cret" not in path.read_bytes(), path
