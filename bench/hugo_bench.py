"""Cold `aggregator build` beside Hugo and the bare YAML parse, on the same seeds (issue 12).

    .venv/bin/python -m bench.hugo_bench [--count 10000] [--rounds 3] [--seeds DIR]

Hugo (Debian's `hugo`, installed here with apt-get when it is missing) builds a site
whose content is the seed files themselves, as `.md` (hard links when the file system
allows, else copies), with the configuration of issue 12: the `topics` taxonomy, the
date from `publishedDateTime`, RSS for the home page and for each term, 50 items a
feed, and nothing else (no HTML pages, sitemap, robots.txt, 404 page or list of
terms; the pages are listed and linked, never rendered). Each round runs, in an order
that turns by one each round so that none always goes first:

- Hugo, cold: an empty `public/`, no `resources/`, an empty cache directory and
  `--ignoreCache`;
- `aggregator build`, cold: a fresh process, an empty output directory, no state file;
- the reference, `yaml.CSafeLoader` parsing every seed's front matter in one process
  (bench.build_bench.parse_only, in a process of its own so that its memory is its own).

Each is measured as a process tree (bench.common.measure): wall time, CPU time
(user + sys, from wait4) and peak RSS (VmRSS summed over the tree, sampled every 25 ms).
Prints a sanity line on Hugo's output, the load average around each round, every
round's figures, and a Markdown table of the medians for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.build_bench import parse_only
from bench.common import AGGREGATOR, ROOT, Measured, corpus, installed_environment, measure

HUGO_CONFIG = """\
baseURL = "https://example.org/"
title = "Seeds"
# Only what issue 12 asks for: RSS for the home page and for each term.
disableKinds = ["section", "taxonomy", "sitemap", "robotsTXT", "404"]
# Disabling the list of terms ("taxonomy") keeps the terms; Hugo asks to confirm that.
ignoreErrors = ["error-disable-taxonomy"]

[taxonomies]
  topic = "topics"

[frontmatter]
  date = ["publishedDateTime"]

[outputs]
  home = ["RSS"]
  term = ["RSS"]

[services.rss]
  limit = 50

# Pages are listed in the feeds and have a permalink, but are never rendered.
[[cascade]]
  [cascade._build]
    render = "link"
    list = "always"
  [cascade._target]
    kind = "page"
"""
FEED_LIMIT = 50
SIDES = ("hugo", "aggregator", "parse")


def ensure_hugo() -> str:
    """The path of `hugo`, installing Debian's package first when it is missing."""
    found = shutil.which("hugo")
    if found is None:
        command = ["apt-get", "install", "-y", "hugo"]
        if os.geteuid() != 0:
            if shutil.which("sudo") is None:
                sys.exit("hugo is not installed and neither root nor sudo can install it")
            command.insert(0, "sudo")
        print("$", " ".join(command), flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            sys.exit("could not install hugo: `apt-get install hugo` (Debian) and run again")
        found = shutil.which("hugo")
        if found is None:
            sys.exit("hugo is still not on PATH after installing the package")
    version = subprocess.run([found, "version"], capture_output=True, text=True, check=True)
    print(version.stdout.strip())
    return found


def make_site(seeds: Path, site: Path) -> str:
    """A Hugo site whose content is the seeds, as `.md`; how the files got there."""
    content = site / "content"
    content.mkdir(parents=True)
    (site / "hugo.toml").write_text(HUGO_CONFIG, encoding="utf-8")
    how = "hard links"
    for path in sorted(seeds.iterdir()):
        if path.suffix != ".txt":
            continue
        target = content / f"{path.stem}.md"
        if how == "hard links":
            try:
                os.link(path, target)
                continue
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                how = "copies"
        shutil.copyfile(path, target)
    return how


def _failed(name: str, code: int, log: Path) -> None:
    tail = log.read_text(errors="replace")[-3000:]
    sys.exit(f"{name} exited with {code}:\n{tail}")


def cold_hugo(hugo: str, site: Path, log: Path) -> Measured:
    for stale in ("public", "resources", "cache"):
        shutil.rmtree(site / stale, ignore_errors=True)
    command = [hugo, "--quiet", "--ignoreCache", "--source", str(site)]
    command += ["--cacheDir", str(site / "cache")]
    with log.open("wb") as sink:
        figures, code = measure(command, stdout=sink, stderr=sink)
    if code != 0:
        _failed("hugo", code, log)
    return figures


def cold_build(seeds: Path, work: Path, log: Path) -> Measured:
    out, state = work / "out", work / "state"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    command = [AGGREGATOR, "build", "--seeds", str(seeds)]
    command += ["--out", str(out), "--state", str(state / "aggregator.sqlite3")]
    with log.open("wb") as sink:
        figures, code = measure(
            command, stdout=subprocess.DEVNULL, stderr=sink, env=installed_environment()
        )
    if code != 0:
        _failed("aggregator build", code, log)
    return figures


def reference_parse(seeds: Path, log: Path) -> tuple[Measured, float]:
    """The parse in a process of its own: that process's figures and the parse's seconds."""
    command = [sys.executable, "-m", "bench.hugo_bench", "--parse-only", str(seeds)]
    with log.open("wb") as sink:
        figures, code = measure(
            command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=installed_environment()
        )
    if code != 0:
        _failed("the yaml.CSafeLoader parse", code, log)
    return figures, float(log.read_text().split()[-1])


def items(feed: Path) -> list[str]:
    """The <link> of each item of an RSS file."""
    text = feed.read_text(encoding="utf-8")
    return re.findall(r"<item>.*?<link>(.*?)</link>", text, flags=re.DOTALL)


def check_hugo(public: Path, published: int) -> str:
    """A one-line summary of Hugo's output; exits when it is not what was asked for."""
    home = items(public / "index.xml")
    # A term's path is its urlized name, slashes kept ("AR/VR" is topics/ar/vr/).
    feeds = sorted((public / "topics").rglob("index.xml"))
    terms = {feed.parent.relative_to(public / "topics").as_posix(): items(feed) for feed in feeds}
    expected = {public / "index.xml", *feeds}
    others = [p for p in public.rglob("*") if p.is_file() and p not in expected]
    wanted = min(FEED_LIMIT, published)
    fullest = max((len(links) for links in terms.values()), default=0)
    problems = []
    if len(home) != wanted:
        problems.append(f"home RSS has {len(home)} items, not {wanted}")
    if not terms or fullest != wanted:
        problems.append(f"{len(terms)} term feeds, the fullest with {fullest} items")
    if any(not link for links in [home, *terms.values()] for link in links):
        problems.append("an item without a link")
    if others:
        problems.append(f"other files written: {others[:3]}")
    if problems:
        sys.exit("Hugo's output is not what the benchmark asks for: " + "; ".join(problems))
    ai = terms.get("ai")
    return (
        f"Hugo output: index.xml {len(home)} items; {len(terms)} term feeds "
        f"(topics/ai/index.xml {len(ai) if ai is not None else '-'} items, the fullest "
        f"{fullest}, the emptiest {min(len(v) for v in terms.values())}); nothing else written"
    )


def count_published(seeds: Path) -> int:
    """Seeds whose front matter says `published: true` (Hugo drafts the others)."""
    return sum(
        "\npublished: true\n" in p.read_text(encoding="utf-8")
        for p in seeds.iterdir()
        if p.suffix == ".txt"
    )


def mb(kib: float) -> str:
    return f"{kib / 1024:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=Path, help="a directory of seeds instead of --count's")
    parser.add_argument("--parse-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.parse_only:  # the reference's own process: print the parse's seconds
        print(f"{parse_only(args.parse_only):.6f}")
        return

    hugo = ensure_hugo()
    seeds: Path = args.seeds.resolve() if args.seeds else corpus(args.count)
    count = sum(1 for p in seeds.iterdir() if p.suffix == ".txt")
    published = count_published(seeds)  # also warms the page cache for every side
    runs: dict[str, list[Measured]] = {side: [] for side in SIDES}
    parses: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hugo-bench-") as scratch:
        work = Path(scratch)
        site = work / "site"
        how = make_site(seeds, site)
        print(f"{count:,} seeds ({published:,} published) from {seeds}, in content/ as {how}")
        if how == "copies":  # warm the page cache for Hugo's own files too
            for path in (site / "content").iterdir():
                path.read_bytes()
        print(f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()}", flush=True)
        for round_ in range(args.rounds):
            load = os.getloadavg()
            order = SIDES[round_ % 3 :] + SIDES[: round_ % 3]
            for side in order:
                log = work / f"{side}.log"
                if side == "hugo":
                    runs[side].append(cold_hugo(hugo, site, log))
                elif side == "aggregator":
                    runs[side].append(cold_build(seeds, work, log))
                else:
                    figures, seconds = reference_parse(seeds, log)
                    runs[side].append(figures)
                    parses.append(seconds)
            print(
                f"round {round_ + 1} ({', '.join(order)}), load average {load[0]:.2f} before, "
                f"{os.getloadavg()[0]:.2f} after:"
            )
            for side in SIDES:
                run = runs[side][-1]
                extra = f", parse alone {parses[-1]:.2f} s" if side == "parse" else ""
                print(
                    f"  {side:10} wall {run.wall:7.2f} s, cpu {run.cpu:7.2f} s, "
                    f"peak RSS {mb(run.peak_rss_kib)} (largest process {mb(run.max_rss_kib)})"
                    f"{extra}",
                    flush=True,
                )
            if round_ == 0:
                print(check_hugo(site / "public", published), flush=True)
    print(f"load average after: {os.getloadavg()}\n")

    def median(side: str, field: str) -> float:
        return float(statistics.median(getattr(run, field) for run in runs[side]))

    hugo_s, ours_s = median("hugo", "wall"), median("aggregator", "wall")
    parse_s = statistics.median(parses)
    print(
        "| corpus | Hugo | cold `aggregator build` | ratio (aim ≤ 1.0) "
        "| `yaml.CSafeLoader` alone (1 process) | ratio (aim ≤ 0.75) "
        "| peak RSS: Hugo | aggregator (aim ≤ 300 MB) | CSafeLoader |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {count:,} seeds, {os.cpu_count()} CPUs, median of {args.rounds} "
        f"| {hugo_s:.2f} s | {ours_s:.2f} s | **{ours_s / hugo_s:.2f}×** "
        f"| {parse_s:.2f} s | **{ours_s / parse_s:.2f}×** "
        f"| {mb(median('hugo', 'peak_rss_kib'))} | {mb(median('aggregator', 'peak_rss_kib'))} "
        f"| {mb(median('parse', 'peak_rss_kib'))} |"
    )
    hugo_cpu, ours_cpu = median("hugo", "cpu"), median("aggregator", "cpu")
    print(
        f"\nCPU time (user + sys, median): Hugo {hugo_cpu:.2f} s, aggregator {ours_cpu:.2f} s "
        f"({ours_cpu / hugo_cpu:.2f}×), CSafeLoader process {median('parse', 'cpu'):.2f} s"
    )
    for side in SIDES:
        walls = [round(run.wall, 2) for run in runs[side]]
        cpus = [round(run.cpu, 2) for run in runs[side]]
        print(f"rounds, {side}: wall {walls}, cpu {cpus}")
    print(f"rounds, parse alone: {[round(s, 2) for s in parses]}")


if __name__ == "__main__":
    main()
