"""Several instances behind nginx, as contrib/nginx-cluster.conf and contrib/compose.yaml set
them up: two real `aggregator run` processes on one PostgreSQL database, balanced by a real
nginx. Readers get the same bytes and ETag from either, a 304 for it from either, and no
error when the leader is killed: nginx tries the other instance, which takes over.

Needs nginx (see tests/test_contrib.py) and PostgreSQL (see tests/postgres.py); skipped
without them, unless AGGREGATOR_REQUIRE_NGINX / AGGREGATOR_REQUIRE_POSTGRES say they must run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aggregator import reporting
from aggregator.config import load_config
from tests.conftest import seed_text
from tests.postgres import Scratch
from tests.service import RunningService, free_port
from tests.test_contrib import MIME_TYPES, NGINX, ROOT, needs_nginx

FEED = "/feeds/ai.atom"
REQUESTS = 8
"""Requests per round through nginx: round robin sends each instance several."""


def cluster_site_conf(port: int, upstreams: list[int]) -> str:
    """contrib/nginx-cluster.conf as a user would adapt it: this port, these instances."""
    text = (ROOT / "contrib" / "nginx-cluster.conf").read_text(encoding="utf-8")
    replacements = [
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("server aggregator-1:8080 ", f"server 127.0.0.1:{upstreams[0]} "),
        ("server aggregator-2:8080 ", f"server 127.0.0.1:{upstreams[1]} "),
    ]
    for old, new in replacements:
        assert old in text, f"contrib/nginx-cluster.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


def run_nginx(work: Path, port: int, upstreams: list[int]) -> subprocess.Popen[str]:
    """nginx in the foreground with everything it writes in `work`; checked with -t first."""
    assert NGINX is not None
    work.mkdir()
    (work / "site.conf").write_text(cluster_site_conf(port, upstreams), encoding="utf-8")
    mime = f"include {MIME_TYPES};" if MIME_TYPES.exists() else ""
    temp = " ".join(
        f"{kind}_temp_path {work};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""  # workers as nobody: no way into tmp_path
    (work / "nginx.conf").write_text(
        f"{user} daemon off; pid {work}/nginx.pid; error_log {work}/error.log warn;\n"
        f"events {{}}\nhttp {{ {mime} log_format upstream '$request $status $upstream_addr';\n"
        f"access_log {work}/access.log upstream; {temp}\n"
        f"include {work}/site.conf; }}\n",
        encoding="utf-8",
    )
    command = [NGINX, "-c", str(work / "nginx.conf"), "-p", str(work)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "[warn]" not in checked.stderr and "[emerg]" not in checked.stderr, checked.stderr
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def database() -> Iterator[str]:
    """A PostgreSQL database of its own (the instances' election is per database)."""
    scratch = Scratch()
    try:
        yield scratch.database()
    finally:
        scratch.drop()


def instance(root: Path, seeds: Path, database: str, public_url: str) -> RunningService:
    return RunningService(
        root,
        seeds={"dir": str(seeds)},
        state={"url": database},
        site={"public_url": public_url},
        thumbnails={"enabled": False},
        links={"enabled": False},
    )


def role(service: RunningService) -> str:
    _, health = service.health()
    found: str = health["role"]
    return found


def through(url: str, count: int, **headers: str) -> list[httpx.Response]:
    """`count` GETs of the feed through nginx, each on a new connection."""
    return [httpx.get(url + FEED, headers=headers, timeout=10) for _ in range(count)]


@needs_nginx
def test_readers_keep_getting_the_feed_through_nginx_when_the_leader_dies(
    tmp_path: Path, database: str
) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for n in range(3):
        (seeds / f"s{n}.md").write_text(
            seed_text(title=f"Story {n}", originalUrl=f"https://a.example/{n}"), encoding="utf-8"
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (
        instance(tmp_path / "one", seeds, database, url + "/") as one,
        instance(tmp_path / "two", seeds, database, url + "/") as two,
    ):
        one.start()  # leads: the first to ask
        two.start()  # healthy once it has mirrored what the leader published
        assert (role(one), role(two)) == ("leader", "follower")
        nginx = run_nginx(tmp_path / "nginx", port, [one.port, two.port])
        with nginx:
            try:
                deadline = time.monotonic() + 10
                while True:
                    try:
                        httpx.get(url + "/healthz", timeout=1)
                        break
                    except httpx.TransportError:
                        assert nginx.poll() is None, (tmp_path / "nginx/error.log").read_text()
                        assert time.monotonic() < deadline, "nginx did not start"
                        time.sleep(0.05)
                check_failover(url, one, two, seeds, tmp_path / "nginx" / "access.log")
            finally:
                nginx.terminate()
                nginx.wait(10)


def answered_by(access_log: Path) -> list[str]:
    """The upstream address(es) nginx logged for each feed request so far, in order."""
    lines = access_log.read_text(encoding="utf-8").splitlines()
    return [line.split(" ", 4)[4] for line in lines if line.startswith(f"GET {FEED} ")]


def check_failover(
    url: str, leader: RunningService, follower: RunningService, seeds: Path, access_log: Path
) -> None:
    direct = [s.get(FEED) for s in (leader, follower)]
    assert [r.status_code for r in direct] == [200, 200]
    assert direct[0].content == direct[1].content
    etag = direct[0].headers["etag"]
    assert direct[1].headers["etag"] == etag
    assert direct[1].headers["last-modified"] == direct[0].headers["last-modified"]
    assert f'<link href="{url}/feeds/ai.atom" rel="self"'.encode() in direct[0].content

    answers = through(url, REQUESTS)
    assert [r.status_code for r in answers] == [200] * REQUESTS
    both = {f"127.0.0.1:{leader.port}", f"127.0.0.1:{follower.port}"}
    assert set(answered_by(access_log)) == both  # round robin: each answered some
    assert {r.headers["etag"] for r in answers} == {etag}
    assert {r.content for r in answers} == {direct[0].content}
    assert {r.headers["last-modified"] for r in answers} == {direct[0].headers["last-modified"]}
    for name in ("cache-control", "content-security-policy", "x-content-type-options", "vary"):
        assert {r.headers.get(name) for r in answers} == {direct[0].headers.get(name)}, name
    unchanged = through(url, REQUESTS, **{"if-none-match": etag})
    assert [r.status_code for r in unchanged] == [304] * REQUESTS
    assert {r.headers["etag"] for r in unchanged} == {etag}
    since = through(url, REQUESTS, **{"if-modified-since": direct[0].headers["last-modified"]})
    assert [r.status_code for r in since] == [304] * REQUESTS

    _, before = leader.health()
    leader.kill()  # kill -9: no goodbye to the database or to nginx
    logged = len(answered_by(access_log))
    answers = through(url, REQUESTS)
    assert [r.status_code for r in answers] == [200] * REQUESTS
    tried = answered_by(access_log)[logged:]
    assert any(", " in addresses for addresses in tried), tried  # the dead one, then the other
    assert {r.headers["etag"] for r in answers} == {etag}
    assert [r.status_code for r in through(url, 2, **{"if-none-match": etag})] == [304, 304]

    after = follower.wait_for(lambda h: h.get("role") == "leader")
    assert after["term"] > before["term"], (before, after)
    assert f"leading the shared state (term {after['term']})" in follower.log()

    # The new leader reads the seeds and publishes: readers see the change through nginx.
    (seeds / "new.md").write_text(
        seed_text(title="After the failover", originalUrl="https://a.example/new"),
        encoding="utf-8",
    )
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(url + FEED, timeout=10)
        assert response.status_code == 200
        if b"After the failover" in response.content:
            break
        assert time.monotonic() < deadline, f"the new leader did not publish\n{follower.log()}"
        time.sleep(0.1)
    assert response.headers["etag"] != etag


def test_a_shared_state_without_a_public_url_warns_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every instance serves the leader's bytes, so a public URL derived from each one's own
    server address would be the leader's, wherever the reader asked."""
    shared = "postgresql://aggregator:s3cret@db.example:5432/feeds"
    cases = [
        ({"state.url": shared}, "share the state"),
        ({"state.url": shared, "server.host": "192.0.2.7"}, "share the state"),
        ({"state.url": shared, "site.public_url": "https://feeds.example.org/"}, None),
        ({}, "loopback address"),  # one instance: the warning it always had
        ({"site.public_url": "https://feeds.example.org/"}, None),
    ]
    for overrides, warned in cases:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="aggregator"):
            reporting.service_starting(load_config(None, overrides=overrides, environ={}))
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        if warned is None:
            assert warnings == [], overrides
        else:
            assert len(warnings) == 1 and warned in warnings[0], (overrides, warnings)
            assert "s3cret" not in warnings[0]
            assert "site.public_url" in warnings[0]
