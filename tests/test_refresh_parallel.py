"""A refresh decided and a render rendered in worker processes write what one process writes.

A cold build forks its parse workers before it walks the seeds; with a SQLite state,
its refresh then has them decide each chunk of stories, reading the state file through
a read-only connection of their own, while the building process writes what they
prepared, in order (`refresh.refresh`, `store.worker_access`); its render has them
render each feed, which the building process writes (`publish.Publisher`,
`feedrender`). Real builds, real files, real workers.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.errors import StateError
from aggregator.store import SqliteStore, worker_access
from tests.conftest import NOW, Site, seed_text

ARTICLES = 420
"""Seeds in the corpus: with `CHUNK` at 40 below, about ten chunks."""
TABLES = (
    "entries",
    "entry_feeds",
    "ledger",
    "members",
    "links",
    "feed_stamps",
    "feed_archives",
    "topic_slugs",
)


def url_of(n: int) -> str:
    return f"https://outlet{n % 9}.example/2024/story-{n}"


def add_corpus(site: Site) -> None:
    """Stories of one to several articles spread over chunks (each links to articles far
    off in id order), duplicates, articles dated past the feeds' horizon, topics spelled
    several ways, articles with and without providers."""
    for n in range(ARTICLES):
        related = [
            {"title": f"About {m}", "webUrl": url_of(m), "provider": {"name": f"Outlet {m % 9}"}}
            for m in ((n * 7 + 3) % ARTICLES, (n * 13 + 5) % ARTICLES)
            if n % 5 == 0 and m != n
        ]
        future = n % 31 == 0
        when = NOW + timedelta(days=3) if future else NOW - timedelta(hours=n)
        fields: dict[str, Any] = {
            "title": f"Story {n}",
            "originalUrl": url_of(n),
            "webUrl": url_of(n),
            "publishedDateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "topics": [f"Topic {n % 6}", "AI" if n % 2 else "ai"],
            "quality": n % 100,
            "provider": {"name": f"Outlet {n % 9}", "domain": f"outlet{n % 9}.example"}
            if n % 4
            else None,
            "related": related or None,
        }
        site.add(f"{n % 4}/s{n:04d}.md", seed_text(**fields))
        if n % 50 == 7:  # another seed with the same article: the first by path is used
            site.add(f"dup/s{n:04d}.md", seed_text(**{**fields, "title": f"Copy {n}"}))


def state_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(path)
    try:
        rows = {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
        rows["dirty"] = db.execute("SELECT * FROM dirty").fetchall()
        return rows
    finally:
        db.close()


def output(site: Site) -> dict[Path, bytes]:
    return {p.relative_to(site.out): p.read_bytes() for p in site.out.rglob("*") if p.is_file()}


BUILD = """
import json, multiprocessing, sys
from datetime import datetime
from aggregator import app as apps, ingest, publish, refresh
from aggregator.app import make_app
from aggregator.config import load_config
refresh.CHUNK, refresh.PARALLEL_REFRESH = 40, 100  # about ten chunks
ingest.STEP, ingest.BATCH = 30, 90  # the seeds stored in steps, over several transactions
chunks, feeds = [], []
in_order = refresh.in_order


def counted(*args):
    for prepared in in_order(*args):
        chunks.append(prepared.changed)
        yield prepared


def rendered(*args):
    for batch in in_order(*args):
        feeds.extend(len(done.files) for done in batch)
        yield batch


refresh.in_order = counted
publish.in_order = rendered
alive = []  # the worker processes there are when the render begins
render_here = apps.App._render


def watched(*args, **kwargs):
    alive.append(len(multiprocessing.active_children()))
    return render_here(*args, **kwargs)


apps.App._render = watched
seeds, out, state, workers, now, archive = sys.argv[1:]
flat = {"seeds.dir": seeds, "output.dir": out, "state.path": state,
        "build.workers": int(workers), "feeds.formats": ("atom", "json", "rss"),
        "feeds.archive": archive == "archive", "feeds.max_entries": 20,
        "digests.enabled": True}
with make_app(load_config(None, overrides=flat, environ={})) as app:
    report = app.build(datetime.fromisoformat(now))
render = report.render
print(json.dumps([chunks, feeds, alive, report.articles, report.rejected, report.duplicates,
                  render.written, render.unchanged, render.removed]))
"""
"""A cold build in a process of its own, as `aggregator build` runs: one thread, so its
parse workers fork before the walk (a test process may have threads other tests left)."""


@pytest.mark.parametrize("archive", ["archive", "no-archive"])
def test_a_build_decided_and_rendered_in_workers_writes_what_one_process_writes(
    tmp_path: Path, archive: str
) -> None:
    """With archives, the feeds are rendered in the building process (a feed's archive
    pages would cross between processes whole), and the refresh is still decided in
    the workers."""
    states, outputs, reports = [], [], []
    for workers in (1, 2):
        site = Site(tmp_path / str(workers))
        add_corpus(site)
        args = [site.seeds, site.out, site.state, workers, NOW.isoformat(), archive]
        done = subprocess.run(
            [sys.executable, "-c", BUILD, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        chunks, feeds, alive, *report = json.loads(done.stdout)
        if workers == 1:
            assert chunks == feeds == []  # one process: no workers to decide or render in
            assert alive == [0]
        else:
            assert len(chunks) >= 8, chunks  # the two workers decided every chunk
            if archive == "archive":
                assert feeds == []
                assert alive == [0]  # shut down, not kept idle through the render
            else:
                assert alive == [2]
                assert len(feeds) >= 8, feeds  # all and seven topics, each rendered in a worker
                assert sum(feeds) > 4 * len(feeds)  # three formats and a page; topics: a digest
        reports.append(report)
        states.append(state_rows(site.state))
        outputs.append(output(site))
    assert reports[0] == reports[1]
    assert reports[0][0] < ARTICLES  # some articles are one story
    assert len(reports[0][3]) > 20  # the files written, in the order they were written
    assert states[0] == states[1]
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 20
    archived = [path for path in outputs[0] if "archive" in path.parts]
    assert bool(archived) == (archive == "archive")


def test_a_reader_sees_what_was_committed_and_writes_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3")
    store.settings.settings_changed("horizon", "1")
    access = worker_access(store)
    assert access is not None
    reader = access.reader()
    try:
        with store.transaction():
            store.settings.settings_changed("horizon", "2")
            # What the writer has not committed, the reader does not see.
            assert reader.settings.recorded("horizon") == "1"
            assert store.settings.recorded("horizon") == "2"
        assert reader.settings.recorded("horizon") == "2"
        with pytest.raises(StateError, match="state file error"):
            reader.settings.settings_changed("horizon", "3")
        assert store.settings.recorded("horizon") == "2"
    finally:
        reader.close()
        store.close()


def test_only_a_sqlite_file_can_be_read_from_another_process(tmp_path: Path) -> None:
    memory = SqliteStore(":memory:")
    try:
        assert worker_access(memory) is None
    finally:
        memory.close()
    from aggregator.store.memory import MemoryStore

    assert worker_access(MemoryStore()) is None
