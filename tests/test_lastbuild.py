"""A build that finds nothing changed keeps the last build's output, and only then."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator.app import make_app
from aggregator.lastbuild import SETTING, LastBuild, current
from aggregator.publish import Publisher
from aggregator.store import open_store
from tests.conftest import NOW, Site


def add_seeds(site: Site) -> None:
    for n in range(3):
        site.add(
            f"s{n}.md",
            title=f"Story {n}",
            originalUrl=f"https://news.example/{n}",
            topics=["Robotics", f"Topic {n}"],
            publishedDateTime=f"2024-01-0{n + 1}T00:00:00Z",
        )


def output(site: Site) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(site.out).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in site.out.rglob("*")
        if p.is_file()
    }


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the renders (each call of `Publisher.render`)."""
    calls: list[int] = []
    inner = Publisher.render

    def counted(self: Publisher, *args: object, **kwargs: object) -> object:
        calls.append(1)
        return inner(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Publisher, "render", counted)
    return calls


def test_a_build_that_changed_nothing_renders_nothing_and_reports_the_same(
    site: Site, renders: list[int]
) -> None:
    add_seeds(site)
    first = site.build()
    before = output(site)
    second = site.build(NOW + timedelta(hours=1))
    assert len(renders) == 1
    assert output(site) == before
    assert second.render.written == [] and second.render.removed == []
    assert second.render.unchanged == len(first.render.written) + first.render.unchanged
    assert (second.topics, second.articles, second.scan.files) == (
        first.topics,
        first.articles,
        first.scan.files,
    )
    third = site.build(NOW + timedelta(hours=2))  # and again: the record was kept
    assert len(renders) == 1 and third.render == second.render


def test_every_report_line_is_the_same_whether_the_output_was_kept_or_rendered(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    from aggregator import cli

    add_seeds(site)
    site.add("bad.md", "---\ntitle: [unclosed\n---\n")
    site.add("copy.md", title="Story 0 again", originalUrl="https://news.example/0")
    argv = ["build", "--seeds", str(site.seeds), "--out", str(site.out)]
    argv += ["--state", str(site.state)]
    cli.main(argv)
    capsys.readouterr()
    cli.main(argv)  # renders everything, as every build did
    rendered = capsys.readouterr()
    cli.main(argv)  # keeps it
    kept = capsys.readouterr()
    assert "rejected (1)" in rendered.out and "duplicate:" in rendered.out
    assert (kept.out, kept.err) == (rendered.out, rendered.err)


@pytest.mark.parametrize("how", ["edited", "deleted", "added"])
def test_a_touched_output_directory_is_rendered_again(
    site: Site, renders: list[int], how: str
) -> None:
    add_seeds(site)
    site.build()
    before = output(site)
    page = site.out / "feeds" / "robotics.atom"
    if how == "edited":
        page.write_bytes(page.read_bytes().replace(b"Story", b"Stroy"))
    elif how == "deleted":
        page.unlink()
    else:
        (site.out / "feeds" / "stray.atom").write_bytes(b"<feed/>")
    report = site.build()
    assert len(renders) == 2
    assert {k: v[0] for k, v in output(site).items()} == {k: v[0] for k, v in before.items()}
    assert report.render.written == ([] if how == "added" else ["feeds/robotics.atom"])
    assert report.render.removed == (["feeds/stray.atom"] if how == "added" else [])


def test_a_changed_seed_is_read_and_rendered(site: Site, renders: list[int]) -> None:
    add_seeds(site)
    site.build()
    site.add(
        "s1.md",
        title="Story 1, corrected",
        originalUrl="https://news.example/1",
        topics=["Robotics"],
        publishedDateTime="2024-01-02T00:00:00Z",
    )
    report = site.build()
    assert report.scan.parsed == 1 and len(renders) == 2
    assert b"Story 1, corrected" in site.feed("robotics")


def test_another_config_renders_again(site: Site, renders: list[int]) -> None:
    add_seeds(site)
    site.build()
    report = site.build(overrides={"site.title": "Another title"})
    assert len(renders) == 2 and report.render.written
    assert b"Another title" in site.feed("all")


def test_an_article_held_back_for_its_date_is_rendered_when_it_falls_due(
    site: Site, renders: list[int]
) -> None:
    add_seeds(site)
    ahead = NOW + timedelta(days=3)
    site.add(
        "later.md",
        title="Tomorrow's news",
        originalUrl="https://news.example/later",
        topics=["Robotics"],
        publishedDateTime=ahead.isoformat().replace("+00:00", "Z"),
    )
    site.build()
    assert b"Tomorrow's news" not in site.feed("robotics")
    site.build(NOW + timedelta(hours=1))
    assert len(renders) == 1
    site.build(ahead + timedelta(minutes=1))
    assert len(renders) == 2
    assert b"Tomorrow's news" in site.feed("robotics")


def test_any_app_that_writes_the_state_drops_the_record(site: Site, renders: list[int]) -> None:
    add_seeds(site)
    site.build()
    store = open_store(site.state)
    try:
        assert LastBuild.from_text(store.settings.recorded(SETTING)) is not None
    finally:
        store.close()
    with make_app(site.config()):
        pass  # the service, `links check` and `thumbnails` all start this way
    store = open_store(site.state)
    try:
        assert store.settings.recorded(SETTING) == ""
    finally:
        store.close()
    site.build()
    assert len(renders) == 2


def test_with_max_age_days_every_build_renders(site: Site, renders: list[int]) -> None:
    add_seeds(site)
    site.build(overrides={"feeds.max_age_days": 10000})
    site.build(overrides={"feeds.max_age_days": 10000})
    assert len(renders) == 2


def test_the_record_is_current_only_under_its_key_before_its_due_time_on_its_output() -> None:
    record = LastBuild("key", 100, "output", 129, 60)
    assert current(record, "key", 99, "output")
    assert not current(record, "key", 100, "output")
    assert not current(record, "other", 99, "output")
    assert not current(record, "key", 99, "touched")
    assert not current(None, "key", 99, "output")
    assert current(LastBuild("key", None, "output", 1, 1), "key", 10**18, "output")
    assert LastBuild.from_text(record.to_text()) == record
    assert LastBuild.from_text("") is None
    assert LastBuild.from_text('{"key": 1}') is None
    assert LastBuild.from_text("not json") is None


def test_a_build_that_keeps_its_output_imports_no_renderer_nor_worker_pool(site: Site) -> None:
    add_seeds(site)
    site.build()
    site.build()  # a record made by this code
    script = (
        "import json, sys\n"
        "from aggregator import cli\n"
        "code = cli.main(sys.argv[1:])\n"
        "names = ['feedgen.feed', 'lxml', 'multiprocessing', 'concurrent.futures',"
        " 'urllib.request', 'aggregator.publish', 'aggregator.store.memory']\n"
        "print(json.dumps([code, [n for n in names if n in sys.modules]]))\n"
    )
    argv = ["build", "--seeds", str(site.seeds), "--out", str(site.out)]
    argv += ["--state", str(site.state), "--config", str(write_config(site))]
    done = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.splitlines()[-1]) == [0, []]


def write_config(site: Site) -> Path:
    """A config file with the settings `Site.config` gives (one worker)."""
    path = site.root / "aggregator.yaml"
    path.write_text("build:\n  workers: 1\n", encoding="utf-8")
    return path


def test_one_app_that_builds_twice_keeps_its_output_the_second_time(
    site: Site, renders: list[int]
) -> None:
    add_seeds(site)
    with make_app(site.config()) as app:
        first = app.build(NOW)
        second = app.build(NOW + timedelta(hours=1))
    assert len(renders) == 1
    assert second.render.unchanged == len(first.render.written) + first.render.unchanged


def test_an_app_that_built_and_then_writes_otherwise_drops_its_record(
    site: Site, renders: list[int]
) -> None:
    add_seeds(site)
    with make_app(site.config()) as app:
        app.build(NOW)
        site.add("s9.md", title="Story 9", originalUrl="https://news.example/9", topics=["AI"])
        app.rescan(NOW)  # the service's way: renders what changed, records nothing
        store = open_store(site.state)
        try:
            assert store.settings.recorded(SETTING) == ""
        finally:
            store.close()
        assert app.build(NOW).render.written == []  # rendered: nothing left to write
    assert len(renders) == 3
