"""Several instances on one PostgreSQL state: the document log, fencing, elections, the
leader's published output and a follower's mirror, the app and the health it reports, all
against a real PostgreSQL server (skipped without one, as the other PostgreSQL tests)."""

from __future__ import annotations

import contextlib
import gzip
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from aggregator.app import make_app
from aggregator.cluster import Cluster, lead_once
from aggregator.config import ClusterConfig, Config, load_config
from aggregator.errors import Fenced, InUseError, StateError
from aggregator.metrics import Metrics
from aggregator.output import OutputDir, content_tag
from aggregator.published import Mirror, PublishedOutput
from aggregator.status import FOLLOWER as FOLLOWER_ROLE
from aggregator.status import LEADER, Status
from aggregator.store.postgres import PostgresStore
from aggregator.store.postgres.leadership import LEADER_KEY
from aggregator.store.shared import NO_TERM, Election, SharedStore, Stamp
from tests.conftest import NOW, seed_text
from tests.postgres import SCRATCH
from tests.service import InProcessService

ATOM = "application/atom+xml"
WAIT = 20.0
"""Seconds a test waits for something the database does in the background (a bound
against hanging, not a pass/fail threshold)."""


@pytest.fixture(scope="module", autouse=True)
def _postgres_scratch() -> Iterator[None]:
    """Drop the scratch PostgreSQL database once this module's tests are done."""
    yield
    SCRATCH.drop()


@pytest.fixture
def url() -> str:
    """A fresh schema of the scratch database."""
    return SCRATCH.schema_url()


@pytest.fixture
def stores(url: str) -> Iterator[Callable[[], PostgresStore]]:
    """Opens stores on the test's schema (two instances are two stores); closes them."""
    opened: list[PostgresStore] = []

    def open_one() -> PostgresStore:
        opened.append(PostgresStore(url))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(stores: Callable[[], PostgresStore]) -> PostgresStore:
    return stores()


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    """What a separate session sees (committed rows only)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(query).fetchall())


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def closing_election(store: SharedStore, lease: float = 5) -> Iterator[Election]:
    election = store.election(lease)
    try:
        yield election
    finally:
        election.close()


# -- the document log ------------------------------------------------------------------


def test_the_log_keeps_the_latest_change_of_each_path_and_tombstones(
    store: PostgresStore,
) -> None:
    log = store.documents
    assert log.index() == {}
    assert log.changes(0, 10) == []
    assert log.pending(0) == (0, None)
    log.publish("feeds/a.atom", b"A1", ATOM, Stamp('"a1"', 100))
    log.publish("feeds/b.rss", b"B1", "application/rss+xml", Stamp('"b1"', 200))
    log.publish("feeds/a.atom", b"A2", ATOM, Stamp('"a2"', 300))
    assert log.index() == {"feeds/a.atom": Stamp('"a2"', 300), "feeds/b.rss": Stamp('"b1"', 200)}
    first = log.changes(0, 10)
    assert [(d.path, d.body, d.etag, d.modified) for d in first] == [
        ("feeds/b.rss", b"B1", '"b1"', 200),
        ("feeds/a.atom", b"A2", '"a2"', 300),
    ]
    assert first[0].content_type == "application/rss+xml"
    assert first[0].seq < first[1].seq

    log.withdraw(["feeds/b.rss", "feeds/never.atom"])
    assert log.index() == {"feeds/a.atom": Stamp('"a2"', 300)}
    (tombstone,) = log.changes(first[-1].seq, 10)
    assert (tombstone.path, tombstone.body, tombstone.etag) == ("feeds/b.rss", None, "")
    assert tombstone.seq > first[-1].seq
    log.withdraw(["feeds/b.rss"])  # withdrawn already: no new change
    log.withdraw([])
    assert log.changes(tombstone.seq, 10) == []

    log.publish("feeds/b.rss", b"B2", "application/rss+xml", Stamp('"b2"', 400))
    assert log.index()["feeds/b.rss"] == Stamp('"b2"', 400)
    assert [d.body for d in log.changes(tombstone.seq, 10)] == [b"B2"]


def test_changes_come_in_pages_oldest_first_and_pending_counts_what_is_left(
    store: PostgresStore,
) -> None:
    log = store.documents
    for n in range(7):
        log.publish(f"p/{n}.atom", str(n).encode(), ATOM, Stamp(f'"{n}"', n))
    log.publish("p/0.atom", b"again", ATOM, Stamp('"again"', 10))  # moves to the end
    seen: list[str] = []
    after = 0
    pages: list[int] = []
    while page := log.changes(after, 3):
        pages.append(len(page))
        seen += [d.path for d in page]
        assert all(d.seq > after for d in page)
        assert [d.seq for d in page] == sorted(d.seq for d in page)
        after = page[-1].seq
    assert pages == [3, 3, 1]
    assert seen == [f"p/{n}.atom" for n in (1, 2, 3, 4, 5, 6, 0)]
    everything = log.changes(0, 100)
    count, oldest = log.pending(0)
    assert count == 7
    assert oldest == everything[0].at
    count, oldest = log.pending(everything[2].seq)
    assert (count, oldest) == (4, everything[3].at)
    assert log.pending(everything[-1].seq) == (0, None)


def test_a_publish_wakes_a_listener_on_another_connection(
    stores: Callable[[], PostgresStore],
) -> None:
    leader, follower = stores(), stores()
    listener = follower.notifications()
    try:
        assert listener.wait(0.2) is False  # subscribes; nothing published yet
        woke: list[bool] = []
        waiting = threading.Thread(target=lambda: woke.append(listener.wait(WAIT)))
        waiting.start()
        with leader.transaction():  # one transaction, one notification
            leader.documents.publish("a.atom", b"a", ATOM, Stamp('"a"', 1))
            leader.documents.publish("b.atom", b"b", ATOM, Stamp('"b"', 1))
        waiting.join(WAIT + 5)
        assert woke == [True]
        assert listener.wait(0.2) is False
        leader.documents.withdraw(["a.atom"])
        assert listener.wait(WAIT) is True
        leader.documents.withdraw(["a.atom"])  # nothing withdrawn: nobody woken
        assert listener.wait(0.2) is False
    finally:
        listener.close()


# -- fencing ---------------------------------------------------------------------------


def test_a_fenced_store_writes_in_its_term_and_is_refused_once_another_is_elected(
    url: str, stores: Callable[[], PostgresStore]
) -> None:
    old, new = stores(), stores()
    with closing_election(old) as first:
        term = first.try_lead("old")
        assert term is not None
        old.fence(term)
        old.documents.publish("kept.atom", b"kept", ATOM, Stamp('"k"', 1))
        old.links.ensure(["https://kept.example/"])
    with closing_election(new) as second:
        newer = second.try_lead("new")
        assert newer is not None and newer > term
        with pytest.raises(Fenced, match=f"leader term is {newer} and ours is {term}"):
            old.documents.publish("lost.atom", b"lost", ATOM, Stamp('"l"', 2))
        with pytest.raises(Fenced), old.transaction():
            old.links.ensure(["https://lost.example/"])
            old.documents.withdraw(["kept.atom"])
    assert rows(url, "SELECT path, body IS NULL FROM documents") == [("kept.atom", False)]
    assert rows(url, "SELECT url FROM links") == [("https://kept.example/",)]
    assert old.documents.index() == {"kept.atom": Stamp('"k"', 1)}  # reads still work
    changes = old.documents.changes(0, 10)
    assert [(d.path, d.term) for d in changes] == [("kept.atom", term)]


def test_a_follower_store_refuses_every_write_and_reads_and_an_unfenced_one_writes(
    url: str, stores: Callable[[], PostgresStore]
) -> None:
    follower, sole = stores(), stores()
    sole.documents.publish("a.atom", b"a", ATOM, Stamp('"a"', 1))
    follower.fence(NO_TERM)
    with pytest.raises(Fenced, match="this instance is a follower"):
        follower.documents.publish("b.atom", b"b", ATOM, Stamp('"b"', 1))
    with pytest.raises(Fenced):
        follower.links.ensure(["https://x.example/"])
    with pytest.raises(Fenced):
        follower.documents.withdraw(["a.atom"])
    assert follower.documents.index() == {"a.atom": Stamp('"a"', 1)}
    assert follower.counts().seeds == 0
    assert follower.links.link_states(["https://x.example/"]) == {}
    # No term check at all: a one-off command that leads alone, whatever the term is.
    with closing_election(sole) as election:
        assert election.try_lead("someone") is not None
        sole.fence(None)
        sole.documents.publish("c.atom", b"c", ATOM, Stamp('"c"', 1))
    assert sorted(str(r[0]) for r in rows(url, "SELECT path FROM documents")) == [
        "a.atom",
        "c.atom",
    ]
    assert rows(url, "SELECT url FROM links") == []
    follower.fence(None)
    follower.documents.publish("b.atom", b"b", ATOM, Stamp('"b"', 1))
    assert set(sole.documents.index()) == {"a.atom", "b.atom", "c.atom"}


def test_a_writer_paused_in_its_transaction_does_not_hold_up_an_election(
    url: str, stores: Callable[[], PostgresStore]
) -> None:
    old, new = stores(), stores()
    first = old.election(5)
    term = first.try_lead("old")
    assert term is not None
    old.fence(term)
    first.close()
    inside, resume = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def paused_writer() -> None:
        try:
            with old.transaction():
                old.documents.publish("paused.atom", b"late", ATOM, Stamp('"p"', 1))
                inside.set()
                resume.wait(WAIT)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    writer = threading.Thread(target=paused_writer)
    writer.start()
    try:
        assert inside.wait(WAIT)
        with closing_election(new) as second:
            newer = second.try_lead("new")
            assert newer == term + 1
    finally:
        resume.set()
        writer.join(WAIT)
    (error,) = outcome
    # Refused either way: its session ended by the election (it held the term row since it
    # began), or fenced at its commit.
    assert isinstance(error, StateError)
    assert rows(url, "SELECT path FROM documents") == []


def test_an_election_ends_an_old_writer_holding_the_term_row_and_wins(
    url: str, stores: Callable[[], PostgresStore]
) -> None:
    """A writer that passed its term check but did not commit yet holds the term row (FOR
    SHARE): the election's update waits for it a moment, then ends its session."""
    old, new = stores(), stores()
    first = old.election(5)
    term = first.try_lead("old")
    assert term is not None
    old.fence(term)
    first.close()
    inside, resume = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def paused_writer() -> None:
        try:
            with old.transaction(), old._db.writing() as conn:
                old.documents.publish("paused.atom", b"late", ATOM, Stamp('"p"', 1))
                old._db._check_term(conn, term)  # what the commit does first
                inside.set()
                resume.wait(WAIT)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    writer = threading.Thread(target=paused_writer)
    writer.start()
    try:
        assert inside.wait(WAIT)
        with closing_election(new) as second:
            newer = second.try_lead("new")
            assert newer == term + 1
            assert second.leader() == (newer, "new")
    finally:
        resume.set()
        writer.join(WAIT)
    (error,) = outcome
    assert isinstance(error, StateError)
    assert rows(url, "SELECT path FROM documents") == []
    # The store's pool replaces the connection that was ended: it works again.
    old.fence(None)
    old.documents.publish("after.atom", b"a", ATOM, Stamp('"a"', 1))
    assert rows(url, "SELECT path FROM documents") == [("after.atom",)]


# -- elections -------------------------------------------------------------------------


def test_one_of_two_elections_wins_and_the_other_wins_after_it_closes(
    stores: Callable[[], PostgresStore],
) -> None:
    one, two = stores().election(5), stores().election(5)
    try:
        assert one.leader() == (0, "")
        won = one.try_lead("one")
        assert won is not None and won > 0
        assert two.try_lead("two") is None
        assert two.try_lead("two") is None
        assert two.leader() == (won, "one")
        assert one.renew() == won
        one.close()
        later = two.try_lead("two")
        assert later is not None and later > won
        assert one.leader() == (later, "two")
        assert one.try_lead("one") is None
        assert two.renew() == later
    finally:
        one.close()
        two.close()


def _holder_pid(url: str) -> int:
    found = rows(
        url,
        f"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = {LEADER_KEY}"
        " AND granted AND database = (SELECT oid FROM pg_database"
        " WHERE datname = current_database())",
    )
    (row,) = found
    return int(str(row[0]))


def test_a_leader_whose_session_is_ended_cannot_renew_and_the_other_wins(
    url: str, stores: Callable[[], PostgresStore]
) -> None:
    one, two = stores().election(5), stores().election(5)
    try:
        won = one.try_lead("one")
        assert won is not None
        assert two.try_lead("two") is None
        rows(url, f"SELECT pg_terminate_backend({_holder_pid(url)}, 10000)")
        with pytest.raises(StateError, match="state database error"):
            one.renew()
        later = two.try_lead("two")
        assert later is not None and later > won
        assert one.renew() == later  # a new session: it sees that another leads
        assert one.try_lead("one") is None
    finally:
        one.close()
        two.close()


def test_a_leader_silent_past_its_lease_loses_it(
    url: str, stores: Callable[[], PostgresStore]
) -> None:
    one, two = stores().election(1), stores().election(1)
    try:
        won = one.try_lead("one")
        assert won is not None
        assert two.try_lead("two") is None
        later: list[int] = []

        def took_over() -> bool:
            term = two.try_lead("two")
            if term is not None:
                later.append(term)
            return term is not None

        eventually(took_over, "the silent leader's lease lapsed")
        assert later[0] > won
        with pytest.raises(StateError):
            one.renew()
    finally:
        one.close()
        two.close()


def test_a_leader_that_renews_keeps_its_lease(stores: Callable[[], PostgresStore]) -> None:
    one, two = stores().election(1), stores().election(1)
    try:
        won = one.try_lead("one")
        assert won is not None
        for _ in range(8):  # 2 s in all, twice the lease
            time.sleep(0.25)
            assert one.renew() == won
            assert two.try_lead("two") is None
    finally:
        one.close()
        two.close()


def test_lead_once_fences_the_store_for_its_block_and_is_refused_while_another_leads(
    url: str, stores: Callable[[], PostgresStore]
) -> None:
    store, other = stores(), stores()
    with lead_once(store, 5, "build") as term:
        store.documents.publish("a.atom", b"a", ATOM, Stamp('"a"', 1))
        with pytest.raises(InUseError, match="build"), lead_once(other, 5, "second build"):
            pass
    assert rows(url, "SELECT holder, term FROM leadership") == [("build", term)]
    with lead_once(other, 5, "second build") as later:
        assert later > term
        with pytest.raises(Fenced):  # the one before cannot write in this term
            store.fence(term)
            store.documents.publish("b.atom", b"b", ATOM, Stamp('"b"', 1))
    store.fence(None)


def test_lead_once_is_refused_while_any_instance_of_the_service_runs_even_between_leaders(
    url: str, stores: Callable[[], PostgresStore]
) -> None:
    """During a failover nobody leads for a moment; a one-off command must not step in and
    publish its own settings' output to the followers."""
    store, follower = stores(), stores()
    following = follower.election(5, "feeds-2:8080 pid 12")
    try:
        assert following.services() == []  # it does not count itself
        assert following.leader() == (0, "")  # nobody leads
        with (
            pytest.raises(InUseError, match=r"\(the service: feeds-2:8080 pid 12\)"),
            lead_once(store, 5, "vm pid 99 (one-off command)"),
        ):
            pass
        assert rows(url, "SELECT term FROM leadership") == [(0,)]
    finally:
        following.close()
    with lead_once(store, 5, "vm pid 99 (one-off command)") as term:  # the service is gone
        assert term == 1
        watcher = follower.election(5, "feeds-3:8080 pid 13")
        try:
            assert watcher.services() == []  # a command is not the service
        finally:
            watcher.close()


# -- the leader's published output and a follower's mirror -----------------------------


def _mtime(path: Path) -> int:
    return int(os.stat(path).st_mtime)


def test_a_mirror_ends_with_the_leaders_files_bytes_and_times(
    tmp_path: Path, stores: Callable[[], PostgresStore]
) -> None:
    leading, following = stores(), stores()
    now = [1_700_000_000.0]
    out = PublishedOutput(
        OutputDir(tmp_path / "lead", gzip_sidecars=True), leading.documents, lambda: now[0]
    )
    local = OutputDir(tmp_path / "follow", gzip_sidecars=True)
    mirror = Mirror(following.documents, local)
    assert out.write("index.html", b"<p>index</p>")
    assert out.write("feeds/a.atom", b"<feed>a</feed>")
    assert out.write("feeds/b.atom", b"<feed>b</feed>")
    assert out.write("feeds/c.atom", b"<feed>c</feed>")
    now[0] += 60
    assert out.write("topics/x/index.html", b"<p>x</p>")
    assert out.write("feeds/a.atom", b"<feed>a2</feed>")
    assert out.remove("feeds/b.atom")
    assert "feeds/c.atom" in out.prune("feeds", ".atom", keep={"feeds/a.atom"})
    (tmp_path / "follow" / "old").mkdir(parents=True)
    (tmp_path / "follow" / "old" / "gone.atom").write_bytes(b"stale")
    (tmp_path / "follow" / "stray.html").write_bytes(b"stale")
    (tmp_path / "follow" / "feeds").mkdir()
    (tmp_path / "follow" / "feeds" / ".tmp-killed").write_bytes(b"half a write")

    assert mirror.catch_up() > 0
    assert not (tmp_path / "follow" / "feeds" / ".tmp-killed").exists()
    lead, follow = tmp_path / "lead", tmp_path / "follow"
    expected = ["feeds/a.atom", "index.html", "topics/x/index.html"]
    assert out.local.walk() == expected
    assert local.walk() == expected
    assert not (follow / "old").exists()
    for path in expected:
        data = (lead / path).read_bytes()
        assert (follow / path).read_bytes() == data
        assert content_tag((follow / path).read_bytes()) == content_tag(data)
        assert _mtime(follow / path) == _mtime(lead / path)
        assert _mtime(follow / f"{path}.gz") == _mtime(follow / path)
        assert gzip.decompress((follow / f"{path}.gz").read_bytes()) == data
    assert _mtime(lead / "feeds/a.atom") == 1_700_000_060
    assert _mtime(lead / "index.html") == 1_700_000_000
    assert leading.documents.index() == {
        path: Stamp(content_tag((lead / path).read_bytes()), _mtime(lead / path))
        for path in expected
    }
    assert mirror.behind() == (0, 0.0)

    # Later changes reach the mirror incrementally; a removal removes its folder too.
    applied = mirror.applied
    assert out.remove("topics/x/index.html")
    assert mirror.behind()[0] == 1
    assert mirror.catch_up() == 1
    assert mirror.applied > applied
    assert local.walk() == ["feeds/a.atom", "index.html"]
    assert not (follow / "topics" / "x").exists()
    assert out.remove("index.html")  # at the top of the directory
    assert mirror.catch_up() == 1
    assert local.walk() == ["feeds/a.atom"]
    assert follow.is_dir()

    # A file put there later stays until a sweep (`prune`), which the follower makes now
    # and then: an incremental catch-up only applies changes.
    (follow / "feeds" / "bogus.atom").write_bytes(b"not published")
    assert mirror.catch_up() == 0
    assert local.walk() == ["feeds/a.atom", "feeds/bogus.atom"]
    assert mirror.catch_up(prune=True) == 1
    assert local.walk() == ["feeds/a.atom"]


def test_rewriting_the_same_bytes_publishes_nothing_and_times_never_go_back(
    tmp_path: Path, store: PostgresStore
) -> None:
    now = [2_000_000_000.0]
    out = PublishedOutput(OutputDir(tmp_path / "out"), store.documents, lambda: now[0])
    assert out.write("feeds/a.atom", b"one")
    (last,) = store.documents.changes(0, 10)
    now[0] += 100
    assert not out.write("feeds/a.atom", b"one")
    assert store.documents.pending(last.seq) == (0, None)
    assert _mtime(tmp_path / "out" / "feeds/a.atom") == 2_000_000_000
    now[0] = 1_000_000_000.0  # a leader whose clock is behind its predecessor's
    assert out.write("feeds/a.atom", b"two")
    assert store.documents.index()["feeds/a.atom"] == Stamp(content_tag(b"two"), 2_000_000_001)
    assert _mtime(tmp_path / "out" / "feeds/a.atom") == 2_000_000_001
    # A new leader's output (nothing known yet) reads the log, and keeps going forward.
    successor = PublishedOutput(OutputDir(tmp_path / "next"), store.documents, lambda: now[0])
    assert successor.write("feeds/a.atom", b"three")
    assert store.documents.index()["feeds/a.atom"].modified == 2_000_000_002
    assert successor.write("feeds/new.atom", b"new")
    assert store.documents.index()["feeds/new.atom"].modified == 1_000_000_000


def test_a_fenced_leader_publishes_nothing_and_its_mirror_starts_over(
    tmp_path: Path, stores: Callable[[], PostgresStore]
) -> None:
    old, new = stores(), stores()
    with closing_election(old) as first:
        term = first.try_lead("old")
    assert term is not None
    old.fence(term)
    out = PublishedOutput(OutputDir(tmp_path / "old"), old.documents)
    assert out.write("feeds/a.atom", b"a")
    with closing_election(new) as second:
        assert second.try_lead("new") is not None
        with pytest.raises(Fenced), old.transaction():
            out.write("feeds/a.atom", b"unpublished")
            out.write("feeds/b.atom", b"unpublished")
    assert set(new.documents.index()) == {"feeds/a.atom"}
    # As a follower it mirrors the log again from the start: its files are the log's.
    mirror = Mirror(new.documents, out.local)
    mirror.catch_up()
    assert out.local.walk() == ["feeds/a.atom"]
    assert (tmp_path / "old" / "feeds/a.atom").read_bytes() == b"a"


# -- the app on a shared state -----------------------------------------------------------


def _bundled(tmp_path: Path, url: str, out: str) -> Config:
    root = Path(__file__).parent.parent
    return load_config(
        root / "config" / "aggregator.yaml",
        overrides={
            "seeds.dir": root / "seeds",
            "output.dir": tmp_path / out,
            "state.url": url,
            "site.public_url": "https://feeds.example/",
        },
        environ={},
    )


def test_a_following_app_writes_nothing_and_a_leading_one_publishes_every_file(
    tmp_path: Path, url: str
) -> None:
    with make_app(_bundled(tmp_path, url, "follower"), leading=False) as follower:
        assert follower.shared is not None and not follower.leading
        with pytest.raises(Fenced):
            follower.build(NOW)
        assert rows(url, "SELECT COUNT(*) FROM seeds") == [(0,)]
        assert rows(url, "SELECT COUNT(*) FROM documents") == [(0,)]
        assert OutputDir(tmp_path / "follower").walk() == []

    with make_app(_bundled(tmp_path, url, "leader"), leading=False) as leader:
        assert leader.shared is not None
        election = leader.shared.election(5)
        try:
            term = election.try_lead("leader")
            assert term is not None
            leader.lead(term)
            assert leader.leading
            report = leader.build(NOW)
            assert report.articles > 0
        finally:
            election.close()
        files = leader.local.walk()
        assert len(files) > 10
        published = {
            str(path): bytes(body)  # type: ignore[call-overload]
            for path, body in rows(url, "SELECT path, body FROM documents WHERE body IS NOT NULL")
        }
        assert sorted(published) == files
        for path in files:
            assert published[path] == (tmp_path / "leader" / path).read_bytes(), path
        assert {d.term for d in leader.shared.documents.changes(0, 10_000)} == {term}
        # A second build writes nothing new: nothing is published again.
        count = rows(url, "SELECT MAX(seq) FROM documents")
        leader.shared.fence(None)
        leader.build(NOW)
        assert rows(url, "SELECT MAX(seq) FROM documents") == count


# -- what /healthz and /metrics say --------------------------------------------------------


def _metric(metrics: Metrics, name: str) -> float:
    for line in metrics.exposition().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def test_health_and_metrics_of_a_follower_and_then_of_the_leader(
    tmp_path: Path, stores: Callable[[], PostgresStore]
) -> None:
    holder_store, store = stores(), stores()
    holder = holder_store.election(5)
    led: list[int] = []
    followed: list[bool] = []
    stopping = threading.Event()
    cluster = Cluster(
        store,
        OutputDir(tmp_path / "out"),
        ClusterConfig(lease=5, retry=0.1, catch_up=0.2),
        "me",
        on_lead=led.append,
        on_follow=lambda: followed.append(True),
        quiet=threading.Lock,
        stopping=stopping,
    )
    status = Status(cluster=cluster.status)
    metrics = Metrics()
    metrics.follow_cluster(cluster.status)
    try:
        term = holder.try_lead("the leader")
        assert term is not None
        code, body = status.report()
        assert (code, body["status"], body["role"]) == (503, "starting", FOLLOWER_ROLE)
        assert body["cluster"]["usable"] is False  # type: ignore[index]
        holder_store.fence(term)
        holder_store.documents.publish("a.atom", b"a", ATOM, Stamp('"a"', 1))
        cluster.start()
        eventually(lambda: status.report()[0] == 200, "the follower mirrored")
        code, body = status.report()
        assert body["status"] == "ok"
        assert body["role"] == FOLLOWER_ROLE
        assert body["term"] == term
        shown = body["cluster"]
        assert isinstance(shown, dict)
        assert shown["leader"] == "the leader"
        assert shown["database"] == "ok"
        assert shown["usable"] is True
        assert shown["synced"] is not None
        assert (tmp_path / "out" / "a.atom").read_bytes() == b"a"
        assert _metric(metrics, "aggregator_cluster_leader") == 0
        assert _metric(metrics, "aggregator_cluster_term") == term
        assert _metric(metrics, "aggregator_cluster_database_up") == 1
        assert led == []

        holder.close()  # gives up: the cluster wins the next term
        eventually(lambda: cluster.leading, "the follower led")
        code, body = status.report()
        assert body["role"] == LEADER
        assert led == [body["term"]]
        assert body["term"] > term  # type: ignore[operator]
        assert body["cluster"]["leader"] == "me"  # type: ignore[index]
        assert body["cluster"]["behind"] == 0  # type: ignore[index]
        # Until its first scan, a new leader is as healthy as the site it mirrored.
        assert (code, body["status"]) == (200, "ok")
        assert _metric(metrics, "aggregator_cluster_leader") == 1
        assert _metric(metrics, "aggregator_cluster_term") == body["term"]
        assert followed == []
    finally:
        cluster.stop()
        holder.close()
    assert cluster.status().role == LEADER or followed == []
    other = stores().election(5)
    try:
        assert other.try_lead("next") is not None  # stopping gave leadership back
    finally:
        other.close()


def test_a_service_on_a_shared_state_leads_and_says_so(tmp_path: Path, url: str) -> None:
    service = InProcessService(
        tmp_path, state={"url": url}, site={"public_url": "https://feeds.example/"}
    )
    (service.seeds / "a.md").write_text(seed_text(originalUrl="https://r.example/1"))
    seen: dict[str, object] = {}

    def drive(running: InProcessService) -> None:
        # Alone, it follows an empty log (ok), then leads and is ok once it scanned.
        seen.update(running.wait_for(lambda h: h.get("role") == LEADER and h["status"] == "ok"))
        seen["metrics"] = running.get("/metrics").text

    assert service.run(drive) == 0
    assert seen["role"] == LEADER
    assert seen["status"] == "ok"
    term = seen["term"]
    assert isinstance(term, int) and term > 0
    metrics = str(seen["metrics"])
    assert "aggregator_cluster_leader 1.0" in metrics
    assert f"aggregator_cluster_term {float(term)}" in metrics
    published = {str(r[0]) for r in rows(url, "SELECT path FROM documents WHERE body IS NOT NULL")}
    assert published == set(OutputDir(service.out).walk())
    assert rows(url, "SELECT holder FROM leadership")[0][0] != ""
    # Stopped: it gave the leadership up.
    after = PostgresStore(url)
    try:
        with closing_election(after) as election:
            assert election.try_lead("next") is not None
    finally:
        after.close()
