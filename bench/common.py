"""Helpers shared by the benchmarks: the corpus, and measuring processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKE_CORPUS = ROOT.parent / "shared" / "bench" / "make_corpus.py"
AGGREGATOR = str(Path(sys.executable).parent / "aggregator")


def corpus(count: int, url_base: str | None = None) -> Path:
    """A corpus of `count` seeds from ../shared/bench/make_corpus.py, cached in the temp dir."""
    name = f"aggregator-corpus-{count}" + ("-urls" if url_base else "")
    target = Path(tempfile.gettempdir()) / name
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        command = [sys.executable, str(MAKE_CORPUS), "--count", str(count), "--out", str(target)]
        if url_base:
            command += ["--url-base", url_base]
        subprocess.run(command, check=True)
        (target / ".complete").touch()
    return target


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and its children, in KiB (from /proc)."""
    total = 0
    for proc in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        for task in tasks:
            text = (task / "children").read_text().split()
            for child in map(int, text):
                found += [child, *_children(child)]
    except OSError:
        pass
    return found
