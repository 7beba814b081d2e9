"""Watching the seed directory: which paths a batch of events names, and the watcher
thread on a real directory with real file-system events."""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from watchfiles import Change

from aggregator.watch import Watcher, paths_to_scan

FOLDERS = {"/s/new", "/s/old"}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ([], set()),
        ([(Change.added, "/s/a.md")], {"/s/a.md"}),
        ([(Change.modified, "/s/a.md"), (Change.deleted, "/s/b.md")], {"/s/a.md", "/s/b.md"}),
        ([(Change.modified, "/s/a.md"), (Change.modified, "/s/a.md")], {"/s/a.md"}),
        # A folder whose contents changed names its files too: it is no reason to walk.
        ([(Change.modified, "/s/new"), (Change.added, "/s/new/a.md")], {"/s/new", "/s/new/a.md"}),
        ([(Change.added, "/s/new")], None),  # moved in: its files get no events of their own
        ([(Change.modified, "/s/a.md"), (Change.deleted, "/s/old")], None),
    ],
)
def test_the_paths_a_batch_of_events_names(
    changes: list[tuple[Change, str]], expected: set[str] | None
) -> None:
    assert paths_to_scan(changes, FOLDERS.__contains__) == expected


paths = st.sampled_from(["/s/a.md", "/s/b.md", *sorted(FOLDERS)])
batches = st.lists(st.tuples(st.sampled_from(list(Change)), paths), max_size=8)


@given(batches)
def test_a_batch_is_walked_whole_exactly_when_a_folder_came_or_went(
    changes: list[tuple[Change, str]],
) -> None:
    found = paths_to_scan(changes, FOLDERS.__contains__)
    folder_moved = any(c != Change.modified and p in FOLDERS for c, p in changes)
    assert (found is None) is folder_moved
    if found is not None:
        assert found == {p for _, p in changes}


def test_paths_only_modified_are_never_looked_at() -> None:
    asked: list[str] = []

    def is_dir(path: str) -> bool:
        asked.append(path)
        return False

    changes = [(Change.modified, "/s/a.md"), (Change.added, "/s/b.md")]
    assert paths_to_scan(changes, is_dir) == {"/s/a.md", "/s/b.md"}
    assert asked == ["/s/b.md"]


class Seen:
    """What a watcher called back with, as a queue the test waits on."""

    def __init__(self) -> None:
        self.batches: queue.Queue[set[str] | None] = queue.Queue()

        self.every: list[set[str] | None] = []

    def __call__(self, paths: set[str] | None) -> None:
        self.every.append(paths)
        self.batches.put(paths)

    def wait_for(self, check: object, timeout: float = 10) -> set[str] | None:
        """The first batch `check` accepts (others are skipped); fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no such batch of events among {self.every}"
            try:
                batch = self.batches.get(timeout=left)
            except queue.Empty:
                continue
            if check(batch):  # type: ignore[operator]
                return batch


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def written_until_seen(path: Path, seen: Seen, timeout: float = 10) -> None:
    """Write `path` again and again until a batch names it; fails after `timeout`. (When
    the watcher tries again is up to it: a write before that is not heard.)"""
    deadline = time.monotonic() + timeout
    for n in range(10**6):
        assert time.monotonic() < deadline, f"{path} was never heard of"
        path.write_text(f"version {n}")
        try:
            while True:
                batch = seen.batches.get(timeout=0.3)
                if batch is not None and str(path) in batch:
                    return
        except queue.Empty:
            continue


def watching(directory: Path, seen: Seen, stop: threading.Event, retry: float = 5) -> Watcher:
    """A started watcher of `directory`; when that exists, once its events are heard."""
    watcher = Watcher(lambda: directory, seen, stop, lambda: retry)
    watcher.start()
    if directory.is_dir():
        probe = directory.parent / f"{directory.name}.probe"
        probe.mkdir()
        written_until_seen(directory / "probe.md", seen)  # the watch is in place
        (directory / "probe.md").rename(probe / "probe.md")
        seen.wait_for(lambda b: b is not None and str(directory / "probe.md") in b)
    return watcher


def wait_logged(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 10) -> None:
    """Wait until a captured log line holds `text`; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while text not in caplog.text:
        assert time.monotonic() < deadline, f"never logged: {text}"
        time.sleep(0.05)


def test_the_watcher_names_new_edited_and_deleted_files(
    tmp_path: Path, stop: threading.Event
) -> None:
    seen = Seen()
    watching(tmp_path, seen, stop)
    seed = tmp_path / "a.md"
    seed.write_text("one")
    seen.wait_for(lambda b: b is not None and str(seed) in b)
    seed.write_text("two")
    seen.wait_for(lambda b: b is not None and str(seed) in b)
    seed.unlink()
    seen.wait_for(lambda b: b is not None and str(seed) in b)


def test_a_folder_moved_in_asks_for_everything(tmp_path: Path, stop: threading.Event) -> None:
    seeds, outside = tmp_path / "seeds", tmp_path / "outside"
    seeds.mkdir()
    (outside / "topic").mkdir(parents=True)
    (outside / "topic" / "a.md").write_text("one")
    seen = Seen()
    watching(seeds, seen, stop)
    (outside / "topic").rename(seeds / "topic")
    assert seen.wait_for(lambda b: b is None) is None


def test_the_watcher_ends_when_stopped(tmp_path: Path) -> None:
    stop = threading.Event()
    seen = Seen()
    watcher = watching(tmp_path, seen, stop)
    assert not watcher.join(0.1)
    stop.set()
    assert watcher.join(5)
    (tmp_path / "late.md").write_text("after the end")
    time.sleep(0.3)
    assert seen.batches.empty()
    with pytest.raises(RuntimeError):
        watcher.start()


def test_a_missing_directory_is_logged_and_watched_once_it_exists(
    tmp_path: Path, stop: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    seeds = tmp_path / "seeds"
    seen = Seen()
    with caplog.at_level(logging.WARNING, logger="aggregator"):
        watching(seeds, seen, stop, retry=0.2)
        wait_logged(caplog, "cannot watch")
    assert f"cannot watch {seeds} (" in caplog.text
    assert "; rescanning every interval" in caplog.text
    seeds.mkdir()
    written_until_seen(seeds / "a.md", seen)  # a later try watches it


def test_a_directory_removed_and_made_again_is_watched_again(
    tmp_path: Path, stop: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    seen = Seen()
    with caplog.at_level(logging.WARNING, logger="aggregator"):
        watching(seeds, seen, stop, retry=0.2)
        shutil.rmtree(seeds)  # an event, or not: the watcher also looks every CHECK_MS
        wait_logged(caplog, "cannot watch")
        seeds.mkdir()
    written_until_seen(seeds / "a.md", seen)


def test_a_directory_replaced_is_watched_again(tmp_path: Path, stop: threading.Event) -> None:
    seeds, new = tmp_path / "seeds", tmp_path / "new"
    seeds.mkdir()
    new.mkdir()
    seen = Seen()
    watching(seeds, seen, stop, retry=0.2)
    seeds.rename(tmp_path / "old")
    new.rename(seeds)
    written_until_seen(seeds / "a.md", seen)


def test_a_file_where_the_directory_should_be_is_logged(
    tmp_path: Path, stop: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    seeds = tmp_path / "seeds"
    seeds.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="aggregator"):
        watching(seeds, Seen(), stop, retry=5)
        wait_logged(caplog, "cannot watch")
    assert f"cannot watch {seeds} ([Errno 20] Not a directory: '{seeds}')" in caplog.text


def test_a_directory_made_again_is_watched_within_seconds_not_an_interval_later(
    tmp_path: Path, stop: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    # The service retries after scan.interval (60 s by default); the directory turning up
    # must not wait for that.
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    seen = Seen()
    with caplog.at_level(logging.WARNING, logger="aggregator"):
        watching(seeds, seen, stop, retry=3600)
        shutil.rmtree(seeds)
        wait_logged(caplog, "cannot watch")
        seeds.mkdir()
    written_until_seen(seeds / "a.md", seen, timeout=5)


def test_what_was_written_before_the_watch_came_back_is_walked(
    tmp_path: Path, stop: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    # A seed written while no watch was in place is heard by nobody: once the watch is
    # back, the watcher asks for a walk of everything (None), without another write.
    seeds = tmp_path / "seeds"
    seen = Seen()
    with caplog.at_level(logging.WARNING, logger="aggregator"):
        watching(seeds, seen, stop, retry=3600)
        wait_logged(caplog, "cannot watch")
    seeds.mkdir()
    (seeds / "a.md").write_text("written before the watch is back")
    assert seen.wait_for(lambda batch: batch is None, timeout=5) is None


def test_a_directory_missing_at_start_is_watched_within_seconds_once_made(
    tmp_path: Path, stop: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    seeds = tmp_path / "seeds"
    seen = Seen()
    with caplog.at_level(logging.WARNING, logger="aggregator"):
        watching(seeds, seen, stop, retry=3600)
        wait_logged(caplog, "cannot watch")
    seeds.mkdir()
    written_until_seen(seeds / "a.md", seen, timeout=5)


def test_a_watch_that_fails_on_a_directory_there_waits_the_whole_retry(
    tmp_path: Path, stop: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    # A file where the directory should be stays unwatchable: one warning, not one a second.
    seeds = tmp_path / "seeds"
    seeds.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="aggregator"):
        watching(seeds, Seen(), stop, retry=3600)
        time.sleep(2.5)
    assert caplog.text.count("cannot watch") == 1
