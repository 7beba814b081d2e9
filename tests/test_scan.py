"""Reading seed files safely: what the scan saw is what gets read, or nothing is."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from msgspec import structs

from aggregator import yamlsafe
from aggregator.ingest import PARALLEL_THRESHOLD, load_seeds, start_workers
from aggregator.scan import SeedFile, check_paths, is_candidate, read_seed, scan
from aggregator.worker import load_batch, load_seed
from tests.conftest import Site, seed_text


def scanned(site: Site, source: str) -> SeedFile:
    (file,) = [f for f in scan(site.seeds).files if f.source == source]
    return file


def test_a_seed_swapped_for_a_link_after_the_scan_is_refused(site: Site, tmp_path: Path) -> None:
    path = site.add("a.md", title="Inside")
    outside = tmp_path / "secret.md"
    outside.write_text(seed_text(title="Outside"))
    file = scanned(site, "a.md")
    path.unlink()
    path.symlink_to(outside)  # between the scan's stat and the read
    result = read_seed(file)
    assert result.article is None
    assert result.error is not None and "symbolic link" in result.error


def test_a_folder_swapped_for_a_link_after_the_scan_is_refused(site: Site, tmp_path: Path) -> None:
    site.add("sub/a.md", title="Inside")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.md").write_text(seed_text(title="Outside"))
    file = scanned(site, "sub/a.md")
    (site.seeds / "sub").rename(tmp_path / "moved")
    (site.seeds / "sub").symlink_to(elsewhere)
    result = read_seed(file)
    assert result.article is None
    assert result.error is not None and "not the file the scan found" in result.error


def test_a_seed_replaced_after_the_scan_is_left_for_the_next_scan(site: Site) -> None:
    path = site.add("a.md", title="First")
    file = scanned(site, "a.md")
    replacement = site.seeds / "a.md.tmp"
    replacement.write_text(seed_text(title="Second"))
    os.replace(replacement, path)
    assert read_seed(file).article is None
    assert (article := read_seed(scanned(site, "a.md")).article) is not None
    assert article.title == "Second"


def test_a_seed_read_as_scanned_is_parsed(site: Site) -> None:
    site.add("a.md", title="Plain")
    target = site.add("b.md", title="Linked from inside")
    (site.seeds / "c.md").symlink_to(target)
    for source, title in (("a.md", "Plain"), ("c.md", "Linked from inside")):
        article = read_seed(scanned(site, source)).article
        assert article is not None and article.title == title
    (watched,), gone = check_paths(site.seeds, ["c.md"])  # as file-system events find it
    assert gone == [] and (article := read_seed(watched).article) is not None
    assert article.title == "Linked from inside"


def test_a_seed_that_grew_after_the_scan_is_read_to_its_end_within_the_limit(site: Site) -> None:
    path = site.add("a.md", title="Grown")
    file = scanned(site, "a.md")
    with path.open("ab") as handle:  # the same file, longer than the scan saw
        handle.write(b"body " * 40_000)
    whole = path.read_bytes()
    result = read_seed(file, max_bytes=len(whole))
    assert result.article is not None and result.article.title == "Grown"
    assert result.digest == read_seed(scanned(site, "a.md"), max_bytes=len(whole)).digest
    over = read_seed(file, max_bytes=len(whole) - 1)
    assert over.article is None
    assert over.error == f"file is over the {len(whole) - 1}-byte limit"


def test_what_crosses_to_and_from_the_parse_workers_comes_back_the_same(site: Site) -> None:
    site.add("a.md", title="Crossing", topics=["AI"])
    (site.seeds / "bad.md").write_text("no front matter")
    for file in scan(site.seeds).files:
        loaded = load_seed(file, 1 << 20)
        assert pickle.loads(pickle.dumps(file)) == file
        assert pickle.loads(pickle.dumps(loaded)) == loaded
        if loaded.record is not None:  # every field, not only those the constructor needs
            again = pickle.loads(pickle.dumps(loaded.record))
            assert structs.astuple(again) == structs.astuple(loaded.record)


def test_a_workers_batch_is_each_seed_as_load_seed_gives_it(
    site: Site, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(yamlsafe, "ryml", yamlsafe.rapidyaml())  # as in a worker
    monkeypatch.setattr(yamlsafe, "_fast_here", yamlsafe.ryml is not None)
    site.add("a.md", title="First", topics=["AI"])
    (site.seeds / "b.md").write_text("---\ntitle: x\n  b: 2\n---\n")  # rapidyaml refuses it
    (site.seeds / "c.md").write_text("no front matter")
    site.add("d.md", title="Last")
    files = sorted(scan(site.seeds).files, key=lambda f: f.source)
    batch = load_batch(files, 1 << 20)
    assert batch == [load_seed(file, 1 << 20) for file in files]
    assert [(b.source, b.error is None) for b in batch] == [
        ("a.md", True), ("b.md", False), ("c.md", False), ("d.md", True),
    ]  # fmt: skip
    assert capfd.readouterr().err == ""


def test_the_build_does_its_own_preparation_while_the_workers_parse(site: Site) -> None:
    for number in range(PARALLEL_THRESHOLD):
        site.add(f"s{number}.md", title=f"Seed {number}")
    files = scan(site.seeds).files
    calls: list[int] = []
    results = load_seeds(files, 1 << 20, 2, meanwhile=lambda: calls.append(len(calls)))
    first = next(results)
    assert calls == [0] and first.record is not None
    assert len([first, *results]) == len(files) and calls == [0]
    serial = list(load_seeds(files[:3], 1 << 20, 2, meanwhile=lambda: calls.append(9)))
    assert len(serial) == 3 and calls == [0]  # no workers: nothing to wait for


def test_workers_started_ahead_parse_as_one_process_does_and_outlive_the_parse(
    site: Site,
) -> None:
    for number in range(PARALLEL_THRESHOLD):
        site.add(f"s{number}.md", title=f"Seed {number}")
    (site.seeds / "bad.md").write_text("no front matter")
    pool = start_workers(2)
    assert pool is not None
    try:
        files = scan(site.seeds).files  # the walk after the workers started, as a cold build
        first = list(load_seeds(files, 1 << 20, 2, pool=pool))
        again = list(load_seeds(files, 1 << 20, 2, pool=pool))  # not shut down by the first
    finally:
        pool.shutdown()
    serial = [load_seed(file, 1 << 20) for file in files]
    assert first == serial and again == serial
    assert sum(loaded.error is not None for loaded in serial) == 1
    assert start_workers(1) is None


def test_the_walk_takes_exactly_the_names_a_seed_may_have(tmp_path: Path) -> None:
    names = [
        "a.md", "B.MD", "c.Yaml", "d.txt", "#e.md", "#f.md#", ".g.md", "h.md~", "i.md.swp",
        "j.bak", "k.tmp", "l.json", "m", "n.md.bak", "o.yml",
    ]  # fmt: skip
    for name in names:
        (tmp_path / name).write_text("---\ntitle: x\n---\n")
    for extensions in [(".md", ".yaml", ".yml", ".txt"), (".bak", ".MD"), (".tmp", ".md~")]:
        found = sorted(f.source for f in scan(tmp_path, extensions).files)
        lower = tuple(e.lower() for e in extensions)
        assert found == sorted(n for n in names if is_candidate(n, lower)), extensions
    assert sorted(f.source for f in scan(tmp_path).files) == [
        "#e.md", "B.MD", "a.md", "c.Yaml", "d.txt", "o.yml",
    ]  # fmt: skip


def test_a_walk_given_the_stored_stats_lists_only_what_changed(tmp_path: Path) -> None:
    """With `known` (source → (size, mtime_ns), the shape of `seed_stats`), the walk lists
    the files that are new or whose size or time moved, counts the others, and names the
    known sources it did not find; a file the slow path takes (a name not in ASCII) is
    compared too."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_text("---\ntitle: a\n---\n")
    (tmp_path / "sub" / "b.md").write_text("---\ntitle: bb\n---\n")
    (tmp_path / "c.md").write_text("---\ntitle: c\n---\n")
    (tmp_path / "ü.md").write_text("---\ntitle: u\n---\n")
    os.utime(tmp_path / "a.md", ns=(1, 1_700_000_000_123_456_789))
    every = {f.source: (f.size, f.mtime_ns) for f in scan(tmp_path).files}
    assert every["a.md"] == (17, 1_700_000_000_123_456_789)
    assert set(every) == {"a.md", "sub/b.md", "c.md", "ü.md"}
    plain = scan(tmp_path)
    assert plain.unchanged == 0 and plain.unseen == []  # without `known`: every file listed

    same = scan(tmp_path, known=every)
    assert (same.files, same.unchanged, same.unseen) == ([], 4, [])

    known = {**every, "gone.md": (1, 1), "c.md": (every["c.md"][0], 5)}
    del known["sub/b.md"]
    known["ü.md"] = (0, every["ü.md"][1])
    found = scan(tmp_path, known=known)
    assert sorted(f.source for f in found.files) == ["c.md", "sub/b.md", "ü.md"]
    assert found.unchanged == 1 and found.unseen == ["gone.md"]
    cold = scan(tmp_path, known={})
    assert len(cold.files) == 4 and cold.unchanged == 0 and cold.unseen == []
