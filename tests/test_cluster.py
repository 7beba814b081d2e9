"""Several real `aggregator run` processes on one PostgreSQL state: one leads, every one
serves the same files; killed, paused, cut off from the database, they hand over and
recover without a restart, and the output stays what one instance alone would build.

Each test runs its instances on a fresh schema of a scratch database (tests/postgres.py);
skipped without PostgreSQL, failed then when AGGREGATOR_REQUIRE_POSTGRES is set."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

from aggregator.errors import StateError
from aggregator.store.postgres import PostgresStore
from aggregator.store.postgres.db import IDLE_IN_TRANSACTION
from tests.cluster import (
    NEVER,
    PUBLIC_URL,
    SETTINGS,
    Fleet,
    Member,
    TcpProxy,
    entry_dates,
    fleet,
    serves,
    tree,
    until,
    with_address,
)
from tests.postgres import SCRATCH

AGGREGATOR = [sys.executable, "-m", "aggregator"]
"""The command line of a one-off command, as the services run it."""
BEFORE_THE_SERVER = float(IDLE_IN_TRANSACTION.removesuffix("s")) / 2
"""Seconds within which a successor ends the write transaction a paused leader left open:
the server ends it by itself after IDLE_IN_TRANSACTION, which would prove nothing."""


@pytest.fixture(scope="module", autouse=True)
def _postgres_scratch() -> Iterator[None]:
    """Drop the scratch PostgreSQL database once this module's tests are done."""
    yield
    SCRATCH.drop()


@pytest.fixture
def url() -> str:
    """A fresh schema of the scratch database (skips without PostgreSQL)."""
    return SCRATCH.schema_url()


def _served(member: Member, path: str) -> tuple[bytes, str, str]:
    response = member.get(path)
    assert response.status_code == 200, f"{path} on port {member.port}: {response.status_code}"
    return response.content, response.headers["etag"], response.headers["last-modified"]


@pytest.mark.parametrize("count", [2, 3])
def test_one_leader_and_every_instance_serves_the_same_documents(
    tmp_path: Path, url: str, count: int
) -> None:
    with fleet(tmp_path, url) as cluster:
        members = [cluster.add_member() for _ in range(count)]
        cluster.leader(members)
        cluster.wait_synced(members)
        title = cluster.add_seed("fresh", title="A fresh article for every instance")
        cluster.wait_title(title, members)
        files = cluster.wait_synced(members)
        assert cluster.leader(members) in members  # still exactly one
        paths = ["/feeds/all.atom", "/index.html", "/feeds.opml"]
        paths += ["/" + p for p in files if p.startswith("topics/")][:2]
        for path in paths:
            seen = {_served(member, path) for member in members}
            assert len(seen) == 1, f"{path} differs between instances: {seen}"
            body, etag, modified = seen.pop()
            assert body
            assert parsedate_to_datetime(modified).timestamp() > 0
            for member in members:
                assert member.get(path, **{"If-None-Match": etag}).status_code == 304
                assert member.get(path, **{"If-Modified-Since": modified}).status_code == 304

        # Every instance says what the shared state holds, followers included.
        def counts(member: Member) -> tuple[object, ...]:
            body = member.health()[1]
            return tuple(body.get(key) for key in ("seeds", "articles", "topics", "rejected"))

        leader = cluster.leader(members)
        until(
            "every instance reports the leader's counts",
            lambda: len({counts(member) for member in members}) == 1,
        )
        seeds, articles, topics, rejected = counts(leader)
        assert seeds == len([p for p in cluster.seeds.rglob("*") if p.is_file()])
        assert isinstance(articles, int) and isinstance(topics, int) and articles and topics
        assert rejected == 0


def _cold_build(tmp_path: Path, seeds: Path) -> dict[str, bytes]:
    """What `aggregator build` of `seeds` into a fresh SQLite state gives, with the
    instances' settings."""
    root = tmp_path / "cold"
    root.mkdir()
    settings = {
        **SETTINGS,
        "seeds": {"dir": str(seeds)},
        "output": {"dir": str(root / "public")},
        "state": {"path": str(root / "state.sqlite3")},
        "build": {"workers": 1},
    }
    (root / "aggregator.yaml").write_text(yaml.safe_dump(settings))
    done = subprocess.run(
        [*AGGREGATOR, "build", "--config", str(root / "aggregator.yaml")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=NEVER,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return tree(root / "public")


def _add_many(cluster: Fleet, prefix: str, count: int) -> None:
    for n in range(count):
        cluster.add_seed(
            f"{prefix}-{n:03}",
            topics=["AI", f"Batch {prefix}"],
            quality=n % 100,
            publishedDateTime=f"2025-{n % 12 + 1:02}-{n % 28 + 1:02}T{n % 24:02}:{n % 60:02}:00Z",
        )


def _mid_render(leader: Member, before: dict[str, bytes]) -> bool:
    """Whether the leader has begun writing files other than `before` (its render writes
    them before the transaction that publishes them commits)."""
    return leader.files() != before


def test_killing_the_leader_again_and_again_hands_over_and_loses_nothing(
    tmp_path: Path, url: str
) -> None:
    """Three rounds: killed while rendering 150 new seeds (its files written, their
    transaction not committed), while scanning 150 more, and idle; each time the killed
    one comes back as a follower, its output as the kill left it.

    The output then equals a cold build byte for byte. What could legitimately differ,
    and is kept out: a feed that lost entries (pushed out by newer ones) is dated by when
    it lost them, which a cold build cannot know (hence `feeds.max_entries` 1000 here);
    and the hidden temp file of a write the kill cut short (see `tree`)."""
    with fleet(tmp_path, url) as cluster:
        members = [cluster.add_member() for _ in range(3)]
        leader = cluster.leader(members)
        files = cluster.wait_synced(members)
        dates = entry_dates(files)
        assert dates
        terms = [leader.health()[1]["term"]]
        for round, kill_when in enumerate(("mid-render", "mid-scan", "idle")):
            if kill_when != "idle":
                _add_many(cluster, f"r{round}", 150)
            if kill_when == "mid-render":
                until("the leader rendering", partial(_mid_render, leader, files))
            leader.kill()
            successor = cluster.leader([m for m in members if m is not leader])
            term = successor.health()[1]["term"]
            assert term > terms[-1]
            terms.append(term)
            leader.new_port()  # back as a follower, its output as the kill left it
            leader.start(wait=False)
            files = cluster.wait_synced(members)
            leader = cluster.leader(members)  # the successor, unless it too lost its lease
            now = entry_dates(files)
            changed = {i: (d, now[i]) for i, d in dates.items() if i in now and now[i] != d}
            assert changed == {}, f"entries whose updated changed in round {round}: {changed}"
            assert set(dates) <= set(now)
            dates = now
        assert {"feeds/batch-r0.atom", "feeds/batch-r1.atom"} <= set(files)
        cold = _cold_build(tmp_path, cluster.seeds)
        assert sorted(cold) == sorted(files)
        differing = sorted(path for path in cold if cold[path] != files[path])
        assert differing == []
        assert entry_dates(cold) == dates


def test_a_paused_leader_comes_back_as_a_follower_and_its_late_writes_are_refused(
    tmp_path: Path, url: str
) -> None:
    with fleet(tmp_path, url) as cluster:
        members = [cluster.add_member() for _ in range(2)]
        old = cluster.leader(members)
        files = cluster.wait_synced(members)
        old_term = old.health()[1]["term"]
        (successor,) = (m for m in members if m is not old)
        _add_many(cluster, "paused", 150)
        until("the leader rendering", partial(_mid_render, old, files))
        old.signal(signal.SIGSTOP)  # past its lease: its session ends, another leads
        try:
            until("a successor leading", lambda: successor.role() == "leader")
            term = successor.health()[1]["term"]
            assert term > old_term
            title = cluster.add_seed("while-paused", title="Published while the leader slept")
            until(
                f"{title!r} published while the old leader is paused",
                partial(serves, successor, title),
                BEFORE_THE_SERVER,
            )
            first = until(
                "the successor's first document",
                lambda: min((s for _, t, s in cluster.documents() if t == term), default=None),
            )
            late = cluster.add_seed("on-waking", title="Added as the old leader wakes")
        finally:
            old.signal(signal.SIGCONT)
        until("the old leader following", lambda: old.role() == "follower")
        assert "no longer leading" in old.log()
        cluster.wait_title(late, members)
        cluster.wait_title(title, members)
        final = cluster.wait_synced(members)
        cluster.leader(members)
        assert "feeds/batch-paused.atom" in final
        stale = [row for row in cluster.documents() if row[1] == old_term and row[2] > first]
        assert stale == []
        assert successor.process is not None and successor.process.poll() is None


def _writes_in_flight(url: str) -> list[str]:
    """The statements of the sessions (but this one) inside a transaction that wrote."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
        ).fetchall()
    return [str(row[0]) for row in rows]


def test_a_new_leader_ends_the_write_its_predecessor_left_in_flight(url: str) -> None:
    """A leader paused inside a write transaction holds row locks until the server's idle
    timeout: its successor ends that transaction as it takes over, rather than wait."""
    old, new = PostgresStore(url), PostgresStore(url)
    failed: list[BaseException] = []
    written, resume = threading.Event(), threading.Event()

    def write() -> None:
        try:
            with old.transaction():
                old.settings.settings_changed("probe", "old")
                written.set()
                resume.wait(NEVER)
        except StateError as exc:
            failed.append(exc)

    try:
        election = old.election(2)
        term = election.try_lead("old")
        assert term is not None
        old.fence(term)
        writer = threading.Thread(target=write)
        writer.start()
        assert written.wait(NEVER)
        assert _writes_in_flight(url) != []
        election.close()  # its session gone, as when the lease lapses
        successor = new.election(2)
        try:
            new_term = successor.try_lead("new")
            assert new_term == term + 1
            until(
                "the old write ended",
                lambda: _writes_in_flight(url) == [],
                BEFORE_THE_SERVER,
            )
            new.fence(new_term)
            new.settings.settings_changed("probe", "new")  # no wait on the old row lock
        finally:
            resume.set()
            writer.join(NEVER)
            successor.close()
        assert len(failed) == 1, failed
    finally:
        old.close()
        new.close()


def _database(member: Member) -> str:
    """What /healthz of `member` says of the database: "ok", or the problem."""
    return str(member.health()[1]["cluster"]["database"])


def _database_problem(member: Member) -> bool:
    return _database(member) != "ok"


def _database_ok(member: Member) -> bool:
    return _database(member) == "ok"


def _still_serving(members: list[Member], files: dict[str, bytes]) -> None:
    for member in members:
        for path in ("feeds/all.atom", "index.html", "topics/ai.html"):
            response = member.get("/" + path)
            assert response.status_code == 200, f"/{path} on port {member.port}"
            assert response.content == files[path], f"/{path} on port {member.port}"


def _recovered(cluster: Fleet, members: list[Member], name: str) -> None:
    """One leader again, a new seed served by every instance, the database ok for each."""
    title = cluster.add_seed(name, title=f"Published after the outage ({name})")
    cluster.wait_title(title, members)
    cluster.leader(members)
    for member in members:
        until(f"port {member.port} reaching the database", partial(_database_ok, member))
    cluster.wait_synced(members)


def test_instances_keep_serving_while_the_database_is_cut_off_and_resume_after(
    tmp_path: Path, url: str
) -> None:
    proxy = TcpProxy(urlsplit(url).port or 5432)
    try:
        with fleet(tmp_path, url, with_address(url, proxy.port)) as cluster:
            members = [cluster.add_member() for _ in range(3)]
            cluster.leader(members)
            files = cluster.wait_synced(members)
            proxy.cut()
            for member in members:
                until(
                    f"port {member.port} reporting the database problem",
                    partial(_database_problem, member),
                )
                _still_serving(members, files)
            for member in members:
                status, body = member.health()
                assert (status, body["status"]) == (200, "degraded"), body
                assert body["role"] == "follower", body
            proxy.restore()  # the same address: no instance is restarted
            _recovered(cluster, members, "after-the-cut")
            for member in members:
                member.check_running()
    finally:
        proxy.close()


def test_instances_recover_when_the_database_ends_every_session(tmp_path: Path, url: str) -> None:
    with fleet(tmp_path, url) as cluster:
        members = [cluster.add_member() for _ in range(2)]
        leader = cluster.leader(members)
        files = cluster.wait_synced(members)
        term = leader.health()[1]["term"]
        with psycopg.connect(url, autocommit=True) as conn:
            ended = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        assert len(ended) >= 2 * len(members)  # the store, the election, the notifications
        _still_serving(members, files)
        _recovered(cluster, members, "after-the-restart")
        assert cluster.leader(members).health()[1]["term"] >= term
        for member in members:
            member.check_running()


def test_a_one_off_build_is_refused_while_an_instance_leads(tmp_path: Path, url: str) -> None:
    with fleet(tmp_path, url) as cluster:
        (member,) = [cluster.add_member()]
        assert cluster.leader([member]) is member
        files = cluster.wait_synced([member])
        term = member.health()[1]["term"]
        root = tmp_path / "one-off"
        root.mkdir()
        settings = {**SETTINGS, "seeds": {"dir": str(cluster.seeds)}, "output": {"dir": "out"}}
        (root / "aggregator.yaml").write_text(yaml.safe_dump(settings))
        done = subprocess.run(
            [*AGGREGATOR, "build", "--config", "aggregator.yaml", "--state", url],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=NEVER,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert member.process is not None
        assert f":{member.port} pid {member.process.pid}" in lines[0]
        assert "(the service: " in lines[0]
        assert tree(root / "out") == {}
        # The service is unaffected: it still leads in its term, and publishes.
        assert (member.role(), member.health()[1]["term"]) == ("leader", term)
        assert member.files() == files
        title = cluster.add_seed("after-the-refusal", title="Published after a refused build")
        cluster.wait_title(title, [member])
        assert member.health()[1]["term"] == term
        assert PUBLIC_URL.encode() in member.get("/feeds/all.atom").content
