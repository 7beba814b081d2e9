"""`aggregator state copy`: the whole state between SQLite files and PostgreSQL databases,
against real files, the real PostgreSQL (a scratch database) and the real command."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.app import make_app
from aggregator.errors import StateError
from aggregator.feeds import topic_feed
from aggregator.links import LinkState, Outcome
from aggregator.locks import acquire
from aggregator.store import SqliteStore, open_store
from aggregator.store import copy as state_copy
from aggregator.store.copy import (
    ENGINE_TABLES,
    TABLES,
    SameStateError,
    copy_between,
    copy_state,
    open_dumpable,
    table_digests,
)
from aggregator.store.postgres import PostgresStore
from aggregator.store.postgres.dump import PostgresDump
from aggregator.store.sqlite.dump import SqliteDump, SqliteRows
from tests.conftest import NOW, Site
from tests.postgres import SCRATCH

LATER = NOW + timedelta(days=2)
SETTINGS: dict[str, Any] = {"feeds.max_entries": 2, "feeds.archive": True}
"""Small feeds with archives: every kind of feed state is written."""


@pytest.fixture(scope="module", autouse=True)
def _postgres_scratch() -> Iterator[None]:
    """Drop the scratch PostgreSQL database once this module's tests are done."""
    yield
    SCRATCH.drop()


def aggregator(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rich_site(root: Path) -> Site:
    """A built site whose state has rows in every table: seeds (one rejected), topics in
    several scripts, a story of two seeds, entries, feeds, ledger, archives, slugs, meta,
    link verdicts (one dead), host pauses, thumbnails, and entries left dirty."""
    site = Site(root)
    topics = [["AI", "Ärger"], ["zebra", "Zulu"], ["AI", "émoji 🚀"], ["Zulu"], ["AI"]]
    for n, names in enumerate(topics):
        site.add(
            f"n{n}.md",
            title=f"Headline {n} — ünïcode",
            topics=names,
            quality=33.3 + n,
            publishedDateTime=f"2024-05-0{n + 1}T10:00:00Z",
            originalUrl=f"https://news.example/{n}",
            webUrl=f"https://web.example/{n}",
            # the second tells the first's story: one entry with the coverage of both
            related=[{"title": "Headline 0", "webUrl": "https://news.example/0"}] if n == 1 else [],
        )
    site.add("broken.md", "---\ntitle: [\n---\n")
    site.build(NOW, SETTINGS)
    store = SqliteStore(site.state)
    try:
        store.links.save_link_states(
            [
                LinkState(
                    "https://news.example/1",
                    Outcome.DEAD,
                    code=404,
                    last_checked=NOW,
                    next_check=NOW + timedelta(hours=5),
                    failures=3,
                ),
                LinkState(
                    "https://news.example/2",
                    Outcome.ALIVE,
                    code=200,
                    last_checked=NOW,
                    next_check=NOW + timedelta(hours=7),
                    etag='"x"',
                ),
            ],
            {},
            due=["https://news.example/1"],
        )
        store.links.keep_pauses({"slow.example": NOW + timedelta(minutes=30)})
        store.feeds.keep_archive(topic_feed("zulu"), [(5, "e1")], ["d1"])
    finally:
        store.close()
    site.build(NOW + timedelta(hours=1), SETTINGS)
    store = SqliteStore(site.state)
    try:
        store.entries.mark_all_dirty()
        store.thumbnails.keep_thumbnail("https://img.example/a.png", "thumbs/a.webp")
        store.thumbnails.thumbnail_failed("https://img.example/b.png", "HTTP 500", 2, NOW)
    finally:
        store.close()
    return site


def digests(location: str | Path) -> dict[str, tuple[int, str]]:
    store = open_dumpable(str(location))
    try:
        return table_digests(store)
    finally:
        store.close()


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def build_from(site: Site, state: str | Path, out: Path) -> dict[str, bytes]:
    """Build the site's seeds at LATER on `state`, into a copy of its output made before."""
    shutil.copytree(site.out, out)
    overrides = {**SETTINGS, "output.dir": out}
    if isinstance(state, str):
        overrides["state.url"] = state
    else:
        overrides["state.path"] = state
    with make_app(site.config(**overrides)) as app:
        app.build(LATER)
    return tree(out)


def test_the_copied_tables_are_every_table_of_both_engines(tmp_path: Path) -> None:
    expected = {table.name: (table.columns, table.key) for table in TABLES}
    sqlite = SqliteDump(SqliteStore(tmp_path / "s.sqlite3"))
    postgres = PostgresDump(PostgresStore(SCRATCH.schema_url()))
    try:
        for shapes in (sqlite.describe(), postgres.describe()):
            assert set(shapes) - set(expected) <= ENGINE_TABLES
            assert {name: shapes[name] for name in expected if name in shapes} == expected
    finally:
        sqlite.close()
        postgres.close()


def test_sqlite_to_postgres_to_sqlite_gives_back_the_same_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_copy, "BATCH", 2)  # many batches per table
    site = rich_site(tmp_path / "site")
    first = digests(site.state)
    assert all(rows for rows, _ in first.values()), first  # every table has rows
    url = SCRATCH.schema_url()
    there = copy_state(str(site.state), url)
    assert {t.table: (t.rows, t.digest) for t in there.tables} == first
    assert digests(url) == first
    back = tmp_path / "back" / "state.sqlite3"
    again = copy_state(url, str(back))
    assert not again.replaced
    assert digests(back) == first
    # The copy is the same state to the application: the same next build, byte for byte.
    site.add("n1.md", title="Changed", topics=["AI"], originalUrl="https://news.example/1")
    site.add("late.md", title="Late", topics=["Zulu"], originalUrl="https://news.example/9")
    (site.seeds / "n3.md").unlink()
    original = build_from(site, site.state, tmp_path / "out-original")
    copied = build_from(site, back, tmp_path / "out-copy")
    on_postgres = build_from(site, url, tmp_path / "out-postgres")
    assert copied == original
    assert on_postgres == original
    assert original != tree(site.out)  # the build did change something


def test_a_difference_is_found_and_rolls_the_copy_back(tmp_path: Path) -> None:
    site = rich_site(tmp_path / "site")
    target = tmp_path / "t.sqlite3"

    class Lossy(SqliteRows):
        """Loses the last row of the ledger on its way in."""

        def insert(self, table: str, columns: Any, rows: Any) -> None:
            kept = list(rows)
            super().insert(table, columns, kept[:-1] if table == "ledger" else kept)

    class LossyDump(SqliteDump):
        @contextlib.contextmanager
        def replacing(self) -> Iterator[SqliteRows]:
            with super().replacing() as rows:
                yield Lossy(rows._db)

    source, lossy = open_dumpable(str(site.state)), LossyDump(SqliteStore(target))
    try:
        with pytest.raises(StateError, match=r"in table ledger \(3 rows.* the source has 4 rows"):
            copy_between(source, lossy)
    finally:
        source.close()
        lossy.close()
    assert all(rows == 0 for rows, _ in digests(target).values())


def test_a_target_with_state_is_refused_without_force_and_replaced_with_it(
    tmp_path: Path,
) -> None:
    site = rich_site(tmp_path / "site")
    other = Site(tmp_path / "other")
    other.add("x.md", title="Another site", topics=["Rust"])
    other.build()
    ours = digests(site.state)
    url = SCRATCH.schema_url()
    copy_state(str(other.state), url)
    for target in (str(other.state), url):
        theirs = digests(target)
        assert theirs != ours
        with pytest.raises(StateError, match=r"already holds state .*give --force"):
            copy_state(str(site.state), target)
        assert digests(target) == theirs
        report = copy_state(str(site.state), target, force=True)
        assert report.replaced
        assert digests(target) == ours


def test_the_same_state_is_refused(tmp_path: Path) -> None:
    site = rich_site(tmp_path / "site")
    before = digests(site.state)
    link = tmp_path / "link.sqlite3"
    link.symlink_to(site.state)
    hard = tmp_path / "hard.sqlite3"
    os.link(site.state, hard)
    for spelling in (
        str(site.state),
        str(link),
        str(hard),
        f"{site.root}/./state/../state/aggregator.sqlite3",
    ):
        with pytest.raises(SameStateError):
            copy_state(str(site.state), spelling, force=True)
    url = SCRATCH.schema_url()
    copy_state(str(site.state), url)
    with pytest.raises(SameStateError):
        copy_state(url, url, force=True)
    with pytest.raises(SameStateError):  # another spelling of the same database and schema
        copy_state(url, url.replace("127.0.0.1", "localhost"), force=True)
    assert digests(site.state) == before


def test_a_source_without_state_is_refused_and_leaves_no_target_behind(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite3"
    open_store(empty).close()
    target = tmp_path / "new" / "t.sqlite3"
    with pytest.raises(StateError, match="holds no state"):
        copy_state(str(empty), str(target))
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_the_command_copies_both_ways_and_prints_a_line_per_table(tmp_path: Path) -> None:
    site = rich_site(tmp_path / "site")
    url = SCRATCH.schema_url()
    there = aggregator("state", "copy", "--from", str(site.state), "--to", url, cwd=tmp_path)
    assert there.returncode == 0, there.stderr
    lines = there.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == [table.name for table in TABLES]
    assert lines[-1].startswith(f"copied {sum(r for r, _ in digests(site.state).values())} rows")
    assert lines[-1].endswith("verified: row counts and digests match")
    back = aggregator("state", "copy", "--from", url, "--to", "back.sqlite3", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert digests(tmp_path / "back.sqlite3") == digests(site.state)
    refused = aggregator("state", "copy", "--from", url, "--to", "back.sqlite3", cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr == (
        "aggregator: back.sqlite3: already holds state (seeds, seed_topics, seed_related, members, "
        "entries, entry_feeds, ledger, dirty, topic_slugs, meta, links, host_pauses, thumbs, "
        "feed_stamps, feed_archives); give --force to replace it\n"
    )
    forced = aggregator(
        "state", "copy", "--from", url, "--to", "back.sqlite3", "--force", cwd=tmp_path
    )
    assert forced.returncode == 0, forced.stderr
    assert "(its previous state replaced)" in forced.stdout
    same = aggregator("state", "copy", "--from", url, "--to", url, cwd=tmp_path)
    assert same.returncode == 2
    assert same.stderr.count("\n") == 1 and "the same state" in same.stderr
    usage = aggregator("state", "copy", "--from", url, cwd=tmp_path)
    assert usage.returncode == 2 and "--to" in usage.stderr


def test_the_command_refuses_a_state_file_a_service_holds(tmp_path: Path) -> None:
    site = rich_site(tmp_path / "site")
    target = tmp_path / "held.sqlite3"
    held = acquire(target)  # what `run` holds for as long as it runs
    try:
        result = aggregator(
            "state", "copy", "--from", str(site.state), "--to", str(target), cwd=tmp_path
        )
    finally:
        held.release()
    assert result.returncode == 1
    assert result.stderr == (
        f"aggregator: {target} is in use by another aggregator (pid {os.getpid()}): "
        "stop the service before copying into it\n"
    )
    assert target.stat().st_size == 0  # untouched


def test_the_command_refuses_a_database_the_service_runs_on(tmp_path: Path) -> None:
    """The leader keeps what it read of the seeds in memory: a copy replacing the state
    under it would never be put right."""
    site = rich_site(tmp_path / "site")
    url = SCRATCH.schema_url()
    store = PostgresStore(url)
    running = store.election(5, "feeds-1:8080 pid 640")  # what every `run` instance holds
    try:
        assert running.try_lead("feeds-1:8080 pid 640") == 1
        result = aggregator(
            "state", "copy", "--from", str(site.state), "--to", url, "--force", cwd=tmp_path
        )
        assert result.returncode == 1, result
        assert result.stderr.endswith(
            "is in use by another aggregator (the service: feeds-1:8080 pid 640): "
            "stop the service before copying into it\n"
        )
        assert store.counts().seeds == 0  # untouched
    finally:
        running.close()
        store.close()
    result = aggregator("state", "copy", "--from", str(site.state), "--to", url, cwd=tmp_path)
    assert result.returncode == 0, result


def test_the_command_says_in_one_line_what_cannot_be_used(tmp_path: Path) -> None:
    site = rich_site(tmp_path / "site")
    unreachable = "postgresql://aggregator:s3cret-word@127.0.0.1:1/state"
    cases = {
        (str(site.state), unreachable): "aggregator: postgresql://aggregator:***@127.0.0.1:1/"
        "state: cannot connect to the state database (",
        (unreachable, "new.sqlite3"): "aggregator: postgresql://aggregator:***@127.0.0.1:1/"
        "state: cannot connect to the state database (",
        ("seeds.txt", "new.sqlite3"): "aggregator: seeds.txt: cannot use the state file (",
        ("missing.sqlite3", "new.sqlite3"): "aggregator: missing.sqlite3: no such state file",
        # Not a path to make directories of, nor wherever libpq's defaults point.
        (str(site.state), "mysql://agg:s3cret@db.example/feeds"): "aggregator: mysql://"
        "agg:***@db.example/feeds: mysql:// is not a state this can use",
        (str(site.state), "postgresql://"): "aggregator: postgresql://: names no database",
        (str(site.state), "postgresql://127.0.0.1:5432"): "aggregator: postgresql://127.0.0.1"
        ":5432: names no database",
        (str(site.state), "POSTGRESQL://127.0.0.1/state"): "aggregator: POSTGRESQL://127.0.0.1"
        "/state: write the scheme in lower case: postgresql://",
    }
    (tmp_path / "seeds.txt").write_text("not a state file\n" * 100)
    for (source, target), start in cases.items():
        result = aggregator("state", "copy", "--from", source, "--to", target, cwd=tmp_path)
        assert result.returncode == 1, result
        assert result.stderr.startswith(start), result.stderr
        assert result.stderr.count("\n") == 1 and "s3cret" not in result.stderr
        assert result.stdout == ""
    assert not (tmp_path / "new.sqlite3").exists()
    assert not (tmp_path / "missing.sqlite3").exists()
    assert not (tmp_path / "mysql:").exists()
    assert not (tmp_path / "POSTGRESQL:").exists()
    assert (tmp_path / "seeds.txt").read_text() == "not a state file\n" * 100
