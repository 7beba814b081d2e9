"""Helpers shared by the benchmarks: the corpus, and measuring processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far, from /proc."""
    total = 0.0
    for proc in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    """One command's run: wall seconds, CPU seconds and memory of its whole process tree."""

    wall: float
    cpu: float  # user + sys of the process and every descendant it waited for
    peak_rss_kib: int  # the largest sum of VmRSS over the tree, sampled every `interval`
    max_rss_kib: int  # ru_maxrss: the largest single process of the tree


def measure(
    command: list[str],
    *,
    stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] | None = None,
    cwd: Path | None = None,
    interval: float = 0.025,
    env: dict[str, str] | None = None,
) -> tuple[Measured, int]:
    """Run `command` to its end, sampling its tree's resident memory; the figures and exit code.

    The CPU time comes from wait4, so it counts the descendants the command reaped (parse
    workers, goroutines' threads); summed VmRSS counts pages shared between processes
    once per process.
    """
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=cwd, env=env)
    peak = 0
    while True:
        peak = max(peak, tree_rss_kib(process.pid))
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(interval)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    figures = Measured(wall, usage.ru_utime + usage.ru_stime, peak, usage.ru_maxrss)
    return figures, code


def installed_environment() -> dict[str, str]:
    """The environment for timing the project's commands: bytecode is cached as in an
    installation (`PYTHONDONTWRITEBYTECODE` would make every run compile the package anew)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


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
