"""The `Output` contract, run against every implementation; then what only the local directory does.

The contract tests take `new_output(gzip_sidecars)`, which makes an empty output of
the implementation under test; a new implementation joins by adding itself to
`IMPLEMENTATIONS`.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.errors import OutputError
from aggregator.output import TEMP_PREFIX, MemoryOutput, Output, OutputDir
from aggregator.output import _clear_dead_temps as clear_dead_temps

NewOutput = Callable[[bool], Output]


def _directory(factory: pytest.TempPathFactory) -> NewOutput:
    def new(gzip_sidecars: bool) -> Output:
        return OutputDir(factory.mktemp("out"), gzip_sidecars)

    return new


def _memory(factory: pytest.TempPathFactory) -> NewOutput:
    def new(gzip_sidecars: bool) -> Output:
        return MemoryOutput(gzip_sidecars)

    return new


IMPLEMENTATIONS: dict[str, Callable[[pytest.TempPathFactory], NewOutput]] = {
    "directory": _directory,
    "memory": _memory,
}


@pytest.fixture(scope="module", params=sorted(IMPLEMENTATIONS))
def new_output(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> NewOutput:
    """Makes an empty output of one implementation (module-scoped, so Hypothesis can use it)."""
    return IMPLEMENTATIONS[request.param](tmp_path_factory)


@pytest.fixture
def out(new_output: NewOutput) -> Output:
    return new_output(False)


# -- the contract ------------------------------------------------------------------------


def test_write_tells_whether_the_file_changed(out: Output) -> None:
    assert out.write("feeds/ai.atom", b"one") is True
    assert out.write("feeds/ai.atom", b"one") is False
    assert out.write("feeds/ai.atom", b"two") is True
    assert out.read("feeds/ai.atom") == b"two"
    assert out.exists("feeds/ai.atom")


def test_an_empty_file_is_a_file(out: Output) -> None:
    assert out.write("site.css", b"") is True
    assert out.write("site.css", b"") is False
    assert out.read("site.css") == b""
    assert out.exists("site.css")


def test_a_missing_file_reads_as_none(out: Output) -> None:
    assert out.read("feeds/none.atom") is None
    assert out.head("feeds/none.atom", 10) is None
    assert not out.exists("feeds/none.atom")


def test_a_folder_is_not_a_file(out: Output) -> None:
    out.write("feeds/archive/ai/1.atom", b"x")
    assert not out.exists("feeds/archive")
    assert out.read("feeds/archive") is None
    assert out.head("feeds/archive", 1) is None


@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, b""), (1, b"R"), (4, b"RIFF"), (12, b"RIFF\x00\x00\x00\x00WEBP"), (99, None), (-1, None)],
)
def test_head_is_the_start_of_the_file(out: Output, size: int, expected: bytes | None) -> None:
    data = b"RIFF\x00\x00\x00\x00WEBPVP8 "
    out.write("thumbs/a.webp", data)
    assert out.head("thumbs/a.webp", size) == (data if expected is None else expected)


@pytest.mark.parametrize(
    "relative",
    ["", ".", "..", "../x", "/etc/passwd", "a/../../x", "feeds/../../x", "./.."],
)
def test_a_path_outside_the_output_is_refused(out: Output, relative: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: out.write(relative, b"x"),
        lambda: out.read(relative),
        lambda: out.exists(relative),
        lambda: out.head(relative, 1),
        lambda: out.files(relative, ".atom"),
        lambda: out.folders(relative),
        lambda: out.remove(relative),
        lambda: out.prune(relative, ".atom", set()),
        lambda: out.remove_empty(relative),
    ]
    for call in calls:
        with pytest.raises(OutputError, match="refusing to write outside"):
            call()


def test_a_path_inside_after_dots_is_the_same_file(out: Output) -> None:
    out.write("feeds/./ai.atom", b"x")
    assert out.read("feeds/ai.atom") == b"x"
    assert out.write("topics/../feeds/ai.atom", b"x") is False


@pytest.mark.parametrize("sidecars", [True, False])
def test_writing_over_a_folder_or_under_a_file_fails(new_output: NewOutput, sidecars: bool) -> None:
    out = new_output(sidecars)
    out.write("feeds/archive/ai/1.atom", b"x")
    with pytest.raises(OutputError):
        out.write("feeds/archive", b"y")
    out.write("index.html", b"x")
    with pytest.raises(OutputError):
        out.write("index.html/inner.html", b"y")
    with pytest.raises(OutputError):
        out.files("index.html", ".html")
    with pytest.raises(OutputError):
        out.folders("index.html")


def test_files_lists_one_folder_by_suffix(out: Output) -> None:
    for relative in ["feeds/b.atom", "feeds/a.atom", "feeds/a.rss", "feeds/archive/a/1.atom"]:
        out.write(relative, b"x")
    assert out.files("feeds", ".atom") == ["feeds/a.atom", "feeds/b.atom"]
    assert out.files("feeds", "") == ["feeds/a.atom", "feeds/a.rss", "feeds/b.atom"]
    assert out.files("feeds/archive/a", ".atom") == ["feeds/archive/a/1.atom"]
    assert out.files("topics", ".html") == []


def test_folders_lists_the_folders_in_one(out: Output) -> None:
    for relative in ["feeds/a.atom", "feeds/archive/b/1.atom", "feeds/archive/a/1.atom"]:
        out.write(relative, b"x")
    assert out.folders("feeds") == ["archive"]
    assert out.folders("feeds/archive") == ["a", "b"]
    assert out.folders("feeds/archive/a") == []
    assert out.folders("nowhere") == []


def test_remove_takes_the_file_and_its_sidecar(new_output: NewOutput) -> None:
    out = new_output(True)
    out.write("feeds/ai.atom", b"feed")
    assert out.exists("feeds/ai.atom.gz")
    assert out.remove("feeds/ai.atom") is True
    assert not out.exists("feeds/ai.atom")
    assert not out.exists("feeds/ai.atom.gz")
    assert out.remove("feeds/ai.atom") is False


def test_prune_keeps_what_is_asked_and_takes_orphan_sidecars(new_output: NewOutput) -> None:
    out = new_output(True)
    for relative in ["feeds/a.atom", "feeds/b.atom", "feeds/c.rss", "feeds/archive/a/1.atom"]:
        out.write(relative, b"x")
    removed = out.prune("feeds", ".atom", {"feeds/a.atom"})
    assert sorted(removed) == ["feeds/b.atom", "feeds/b.atom.gz"]
    assert out.files("feeds", "") == [
        "feeds/a.atom",
        "feeds/a.atom.gz",
        "feeds/c.rss",
        "feeds/c.rss.gz",
    ]
    assert out.files("feeds/archive/a", ".atom") == ["feeds/archive/a/1.atom"]  # not below
    assert out.prune("feeds", ".atom", {"feeds/a.atom"}) == []
    assert out.prune("nowhere", ".atom", set()) == []


def test_remove_empty_takes_emptied_folders_only(out: Output) -> None:
    out.write("feeds/archive/a/1.atom", b"x")
    out.write("feeds/archive/b/1.atom", b"x")
    out.prune("feeds/archive/a", ".atom", set())
    out.remove_empty("feeds/archive/a")
    assert out.folders("feeds/archive") == ["b"]
    out.remove_empty("feeds/archive/b")  # not empty: left alone
    assert out.read("feeds/archive/b/1.atom") == b"x"
    out.remove_empty("feeds/archive/gone")  # not there: nothing to do


@pytest.mark.parametrize("suffix", [".atom", ".rss", ".json", ".html", ".opml", ".css", ".xsl"])
def test_text_files_get_a_sidecar_when_asked(new_output: NewOutput, suffix: str) -> None:
    on, off = new_output(True), new_output(False)
    data = b"<feed>" * 100
    on.write(f"f/x{suffix}", data)
    off.write(f"f/x{suffix}", data)
    sidecar = on.read(f"f/x{suffix}.gz")
    assert sidecar is not None and gzip.decompress(sidecar) == data
    assert sidecar == gzip.compress(data, compresslevel=9, mtime=0)  # deterministic
    assert not off.exists(f"f/x{suffix}.gz")


def test_images_get_no_sidecar(new_output: NewOutput) -> None:
    out = new_output(True)
    out.write("thumbs/a.webp", b"RIFF")
    assert out.files("thumbs", "") == ["thumbs/a.webp"]


def test_a_sidecar_left_from_before_goes_at_the_next_write(new_output: NewOutput) -> None:
    out = new_output(False)
    out.write("feeds/ai.atom.gz", b"stale")  # as left by a run with sidecars on
    assert out.write("feeds/ai.atom", b"feed") is True
    assert not out.exists("feeds/ai.atom.gz")


def test_a_missing_sidecar_is_written_though_the_file_is_the_same(new_output: NewOutput) -> None:
    out = new_output(True)
    out.write("feeds/ai.atom", b"feed")
    out.remove("feeds/ai.atom.gz")
    assert out.write("feeds/ai.atom", b"feed") is False  # the file itself did not change
    assert out.exists("feeds/ai.atom.gz")


_names = st.sampled_from(["a.atom", "b.atom", "c.rss", "d.html", "sub/e.atom"])
_ops = st.lists(
    st.tuples(st.sampled_from(["write", "remove"]), _names, st.binary(max_size=8)), max_size=20
)


@settings(max_examples=40, deadline=None)
@given(ops=_ops)
def test_the_output_reads_back_what_was_written(
    new_output: NewOutput, ops: list[tuple[str, str, bytes]]
) -> None:
    """Any sequence of writes and removes leaves what a dict would hold."""
    out = new_output(False)
    model: dict[str, bytes] = {}
    for op, name, data in ops:
        relative = f"feeds/{name}"
        if op == "write":
            assert out.write(relative, data) is (model.get(relative) != data)
            model[relative] = data
        else:
            assert out.remove(relative) is (model.pop(relative, None) is not None)
    for name in ["a.atom", "b.atom", "c.rss", "d.html", "sub/e.atom"]:
        relative = f"feeds/{name}"
        assert out.read(relative) == model.get(relative)
        assert out.exists(relative) is (relative in model)
    top = sorted(r for r in model if r.count("/") == 1)
    assert out.files("feeds", "") == top
    assert out.files("feeds", ".atom") == [r for r in top if r.endswith(".atom")]


@settings(max_examples=40, deadline=None)
@given(
    names=st.sets(st.sampled_from(["a.atom", "b.atom", "c.atom", "d.rss"])),
    keep=st.sets(st.sampled_from(["a.atom", "b.atom", "x.atom"])),
)
def test_prune_leaves_exactly_the_kept_and_the_other_kinds(
    new_output: NewOutput, names: set[str], keep: set[str]
) -> None:
    out = new_output(False)
    for name in names:
        out.write(f"feeds/{name}", b"x")
    kept = {f"feeds/{name}" for name in keep}
    removed = out.prune("feeds", ".atom", kept)
    written = {f"feeds/{name}" for name in names}
    assert sorted(removed) == sorted(r for r in written if r.endswith(".atom") and r not in kept)
    assert set(out.files("feeds", "")) == written - set(removed)


_paths = st.lists(st.sampled_from(["a", "b", "..", ".", ""]), min_size=1, max_size=6).map("/".join)


@settings(max_examples=200, deadline=None)
@given(relative=_paths, absolute=st.booleans())
def test_every_implementation_refuses_the_same_paths(
    tmp_path_factory: pytest.TempPathFactory, relative: str, absolute: bool
) -> None:
    """Whether a path leaves the output (or names it) is one answer, whoever stores the files."""
    relative = "/" + relative if absolute else relative
    answers = set()
    for make in IMPLEMENTATIONS.values():
        out = make(tmp_path_factory)(False)
        try:
            out.exists(relative)
            answers.add("inside")
        except OutputError:
            answers.add("refused")
    assert len(answers) == 1, (relative, answers)


# -- the local directory only ------------------------------------------------------------


def test_the_directory_is_created(tmp_path: Path) -> None:
    out = OutputDir(tmp_path / "a" / "b")
    assert out.root == (tmp_path / "a" / "b").resolve()
    assert out.root.is_dir()


def test_a_directory_that_cannot_be_made_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create the output directory"):
        OutputDir(tmp_path / "file" / "out")


def test_an_unchanged_file_keeps_its_mtime(tmp_path: Path) -> None:
    out = OutputDir(tmp_path)
    out.write("feeds/ai.atom", b"one")
    os.utime(tmp_path / "feeds" / "ai.atom", (1_000_000, 1_000_000))
    assert out.write("feeds/ai.atom", b"one") is False
    assert (tmp_path / "feeds" / "ai.atom").stat().st_mtime == 1_000_000


def test_a_write_leaves_no_temp_file(tmp_path: Path) -> None:
    out = OutputDir(tmp_path)
    out.write("feeds/ai.atom", b"one")
    out.write("feeds/ai.atom", b"two")
    assert sorted(p.name for p in (tmp_path / "feeds").iterdir()) == ["ai.atom"]


def test_a_file_where_a_folder_must_be_is_an_output_error(tmp_path: Path) -> None:
    """Not a bare NotADirectoryError from clearing a stale sidecar: the CLI prints one line."""
    out = OutputDir(tmp_path)
    (tmp_path / "feeds").write_text("not a folder")
    with pytest.raises(OutputError, match=r"feeds/ai\.atom: cannot read"):
        out.write("feeds/ai.atom", b"x")


def _unblocking(fifo: Path, call: Callable[[], object]) -> object:
    """The result of `call`, which must not wait on the FIFO: run in a thread, the FIFO is
    opened for writing (which frees a reader waiting on it) if it has not ended in 5 s."""
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"waited on the FIFO {fifo}")
    return results[0]


def test_a_fifo_in_the_output_is_never_waited_on(tmp_path: Path) -> None:
    out = OutputDir(tmp_path)
    (tmp_path / "thumbs").mkdir()
    fifo = tmp_path / "thumbs" / "a.webp"
    os.mkfifo(fifo)
    assert _unblocking(fifo, lambda: out.head("thumbs/a.webp", 30)) is None
    assert _unblocking(fifo, lambda: out.read("thumbs/a.webp")) is None
    assert _unblocking(fifo, lambda: out.write("thumbs/a.webp", b"RIFF")) is True
    assert fifo.read_bytes() == b"RIFF"  # a regular file now


def test_a_folder_in_the_way_of_a_file_cannot_be_read(tmp_path: Path) -> None:
    out = OutputDir(tmp_path)
    (tmp_path / "index.html").mkdir()
    with pytest.raises(OutputError, match=r"index\.html: cannot read"):
        out.write("index.html", b"x")


def test_files_are_written_with_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        out = OutputDir(tmp_path)
    finally:
        os.umask(previous)
    out.write("index.html", b"x")
    assert (tmp_path / "index.html").stat().st_mode & 0o777 == 0o640


def test_a_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = OutputDir(tmp_path / "out")
    (out.root / "feeds").symlink_to(outside)
    with pytest.raises(OutputError, match="refusing to write outside"):
        out.write("feeds/ai.atom", b"x")
    with pytest.raises(OutputError, match="refusing to write outside"):
        out.read("feeds/ai.atom")
    assert list(outside.iterdir()) == []


def test_files_and_folders_skip_symlinks_and_temp_files(tmp_path: Path) -> None:
    out = OutputDir(tmp_path)
    out.write("feeds/a.atom", b"x")
    (tmp_path / "feeds" / f"{TEMP_PREFIX}abc").write_bytes(b"half")
    (tmp_path / "feeds" / "link.atom").symlink_to(tmp_path / "feeds" / "a.atom")
    (tmp_path / "feeds" / "dirlink").symlink_to(tmp_path / "feeds")
    assert out.files("feeds", "") == ["feeds/a.atom"]
    assert out.folders("feeds") == []


def test_prune_clears_stale_temp_files_without_naming_them(tmp_path: Path) -> None:
    out = OutputDir(tmp_path)
    out.write("feeds/a.atom", b"x")
    stale = tmp_path / "feeds" / f"{TEMP_PREFIX}old"
    fresh = tmp_path / "feeds" / f"{TEMP_PREFIX}new"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    long_ago = time.time() - 3600
    os.utime(stale, (long_ago, long_ago))
    assert out.prune("feeds", ".atom", {"feeds/a.atom"}) == []
    assert not stale.exists()
    assert fresh.exists()  # a write may be under way


def test_remove_empty_stops_at_the_root(tmp_path: Path) -> None:
    out = OutputDir(tmp_path / "out")
    out.write("feeds/archive/a/1.atom", b"x")
    out.prune("feeds/archive/a", ".atom", set())
    out.remove_empty("feeds/archive/a")
    assert out.root.is_dir()
    assert list(out.root.iterdir()) == []


# -- batches: the files of a render go in together ---------------------------------------


def test_inside_a_batch_the_output_reads_back_what_was_written(out: Output) -> None:
    out.write("feeds/a.atom", b"old")
    with out.batch():
        assert out.write("feeds/a.atom", b"new")
        assert not out.write("feeds/a.atom", b"new")
        assert out.write("feeds/b.atom", b"bee")
        assert out.read("feeds/a.atom") == b"new" and out.head("feeds/b.atom", 2) == b"be"
        assert out.exists("feeds/b.atom")
        assert out.prune("feeds", ".atom", {"feeds/b.atom"}) == ["feeds/a.atom"]
        assert out.write("feeds/c.atom", b"sea")
    assert out.files("feeds", ".atom") == ["feeds/b.atom", "feeds/c.atom"]
    assert out.read("feeds/c.atom") == b"sea"


def test_a_batch_that_raises_writes_none_of_its_files(tmp_path: Path) -> None:
    out = OutputDir(tmp_path / "out")
    out.write("feeds/a.atom", b"old")
    with pytest.raises(RuntimeError), out.batch():
        out.write("feeds/a.atom", b"new")
        out.write("feeds/b.atom", b"bee")
        raise RuntimeError
    assert out.read("feeds/a.atom") == b"old" and not out.exists("feeds/b.atom")
    assert sorted(p.name for p in (tmp_path / "out/feeds").iterdir()) == ["a.atom"]


def test_a_batch_puts_its_files_in_place_at_its_end_with_their_times(tmp_path: Path) -> None:
    out = OutputDir(tmp_path / "out", gzip_sidecars=True)
    with out.batch():
        for number in range(40):
            out.write(f"feeds/f{number}.atom", b"x" * number)
        out.stamp("feeds/f7.atom", 1_000_000_000)
        staged = list((tmp_path / "out/feeds").iterdir())  # written beside, not in place
        assert len(staged) == 80 and all(p.name.startswith(TEMP_PREFIX) for p in staged)
        assert out.read("feeds/f39.atom") == b"x" * 39
    names = sorted(p.name for p in (tmp_path / "out/feeds").iterdir())
    assert len(names) == 80 and not [n for n in names if n.startswith(TEMP_PREFIX)]
    assert (tmp_path / "out/feeds/f39.atom").read_bytes() == b"x" * 39
    assert os.stat(tmp_path / "out/feeds/f7.atom").st_mtime == 1_000_000_000
    assert os.stat(tmp_path / "out/feeds/f7.atom.gz").st_mtime == 1_000_000_000
    assert gzip.decompress((tmp_path / "out/feeds/f7.atom.gz").read_bytes()) == b"x" * 7


def test_a_batch_that_cannot_write_a_file_says_which_and_leaves_no_temp_file(
    tmp_path: Path,
) -> None:
    out = OutputDir(tmp_path / "out")
    out.write("feeds/a.atom", b"old")
    with pytest.raises(OutputError, match="blocked"), out.batch():
        out.write("feeds/a.atom", b"new")
        (tmp_path / "out/blocked").write_text("a file where the folder goes")
        out.write("blocked/b.atom", b"bee")
    assert out.read("feeds/a.atom") == b"old"
    left = [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(TEMP_PREFIX)]
    assert left == []


def test_a_batch_removes_the_temp_files_of_a_writer_that_died(tmp_path: Path) -> None:
    out = OutputDir(tmp_path / "out")
    out.write("feeds/a.atom", b"old")
    dead = subprocess.Popen(["true"])  # a process that has ended: its pid names no writer
    dead.wait()
    feeds = tmp_path / "out" / "feeds"
    left = feeds / f"{TEMP_PREFIX}{dead.pid}-abc123"
    living = feeds / f"{TEMP_PREFIX}1-def456"  # pid 1 runs as long as the machine does
    unnamed = feeds / f"{TEMP_PREFIX}ghi789"
    for path in (left, living, unnamed):
        path.write_bytes(b"half a feed")
    with out.batch():
        out.write("feeds/a.atom", b"new")
    names = sorted(p.name for p in feeds.iterdir())
    assert names == sorted(["a.atom", living.name, unnamed.name])
    assert out.read("feeds/a.atom") == b"new"


def test_a_file_written_twice_in_a_batch_keeps_the_last_bytes_and_no_extra_temp_file(
    tmp_path: Path,
) -> None:
    out = OutputDir(tmp_path / "out")
    with out.batch():
        out.write("feeds/a.atom", b"first")
        out.write("feeds/a.atom", b"second")
        out.write("feeds/a.atom", b"second")  # the same again: nothing written
        assert [p.name.startswith(TEMP_PREFIX) for p in (tmp_path / "out/feeds").iterdir()] == [
            True
        ]
    assert [p.name for p in (tmp_path / "out/feeds").iterdir()] == ["a.atom"]
    assert out.read("feeds/a.atom") == b"second"


def test_a_batch_removes_the_temp_files_of_an_earlier_process_that_had_its_pid(
    tmp_path: Path,
) -> None:
    """A container's service is pid 1 at every start: the temp files a killed one left
    carry this process's pid, with another token, and go; this process's own stay."""
    out = OutputDir(tmp_path / "out")
    feeds = tmp_path / "out" / "feeds"
    feeds.mkdir(parents=True)
    earlier = feeds / f"{TEMP_PREFIX}{os.getpid()}-0000abcd-xyz12345"
    older_style = feeds / f"{TEMP_PREFIX}{os.getpid()}-xyz12345"  # before tokens
    for path in (earlier, older_style):
        path.write_bytes(b"half a feed")
    with out.batch():
        out.write("feeds/a.atom", b"new")
        mine = [p.name for p in feeds.iterdir()]
        assert len(mine) == 1 and mine[0].startswith(f"{TEMP_PREFIX}{os.getpid()}-")
        assert not earlier.exists() and not older_style.exists()
        clear_dead_temps(feeds)  # asked again mid-batch: this process's file stays
        assert [p.name for p in feeds.iterdir()] == mine
    assert [p.name for p in feeds.iterdir()] == ["a.atom"]


def test_a_batch_whose_folder_is_removed_meanwhile_still_puts_every_file_in_place(
    tmp_path: Path,
) -> None:
    out = OutputDir(tmp_path / "out")
    with out.batch():
        out.write("feeds/a.atom", b"aa")
        shutil.rmtree(tmp_path / "out" / "feeds")  # someone removes it by hand
        out.write("index.html", b"index")
    assert out.read("feeds/a.atom") == b"aa" and out.read("index.html") == b"index"
    with out.batch():
        out.write("feeds/a.atom", b"a2")
        shutil.rmtree(tmp_path / "out" / "feeds")
        out.write("feeds/b.atom", b"bb")  # into the folder that went
    assert out.read("feeds/a.atom") == b"a2" and out.read("feeds/b.atom") == b"bb"
    assert sorted(p.name for p in (tmp_path / "out" / "feeds").iterdir()) == ["a.atom", "b.atom"]


def test_a_file_of_a_batch_is_dated_when_it_is_put_in_place(tmp_path: Path) -> None:
    """Not when it went to its temp file (Last-Modified must not precede what clients
    saw of the file before it)."""
    out = OutputDir(tmp_path / "out")
    with out.batch():
        out.write("feeds/a.atom", b"new")
        (temp,) = (tmp_path / "out" / "feeds").iterdir()
        os.utime(temp, (1_000_000_000, 1_000_000_000))  # as if written long before
        before = time.time()
    assert os.stat(tmp_path / "out" / "feeds" / "a.atom").st_mtime >= before - 1
