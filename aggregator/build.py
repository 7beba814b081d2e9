"""One build: seeds directory in, feeds directory out. The composition root of `build`.

    scan (files) → read + parse (processes) → plan (pure) → render (pure) → write-if-changed

Every stage but the first and last is pure; this module only wires them and
counts what happened, for the summary and for `--strict`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from aggregator.config import Config
from aggregator.model import Article, SeedResult
from aggregator.output import OutputDir
from aggregator.pages import INDEX_PATH, OPML_PATH, render_index, render_opml
from aggregator.plan import Catalog, Duplicate, plan_feeds
from aggregator.render import feed_path, render_atom
from aggregator.scan import SeedFile, read_seed, scan
from aggregator.topics import TopicRules

Progress = Callable[[int, int], None]
"""Called with (files read so far, files in all)."""

PARALLEL_THRESHOLD = 200
"""Below this many files, parsing in this process beats starting workers."""


@dataclass
class BuildReport:
    files: int = 0
    articles: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    scan_problems: list[str] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    filtered: int = 0
    topics: int = 0
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)


def read_seeds(
    files: Sequence[SeedFile], max_bytes: int, workers: int, progress: Progress | None = None
) -> Iterator[SeedResult]:
    """Read and parse `files`, in worker processes when there are many; results in order."""
    reader = partial(read_seed, max_bytes=max_bytes)
    workers = workers or os.cpu_count() or 1
    total = len(files)
    if workers == 1 or total < PARALLEL_THRESHOLD:
        results: Iterator[SeedResult] = map(reader, files)
        yield from _counted(results, total, progress)
        return
    chunk = max(1, min(256, total // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from _counted(pool.map(reader, files, chunksize=chunk), total, progress)


def _counted(
    results: Iterator[SeedResult], total: int, progress: Progress | None
) -> Iterator[SeedResult]:
    for done, result in enumerate(results, 1):
        if progress is not None and (done % 100 == 0 or done == total):
            progress(done, total)
        yield result


def render_site(catalog: Catalog, config: Config) -> dict[str, bytes]:
    """Every file of the output directory, by relative path (pure)."""
    files = {
        feed_path(plan.slug): render_atom(plan, config.site, config.feeds.max_related)
        for plan in catalog.feeds
    }
    files[INDEX_PATH] = render_index(catalog, config.site)
    files[OPML_PATH] = render_opml(catalog, config.site)
    return files


def build(config: Config, now: datetime, progress: Progress | None = None) -> BuildReport:
    """Build every feed once. Raises `SeedDirError` / `OutputError` when a directory is unusable."""
    out = OutputDir(config.output.dir)
    found = scan(config.seeds.dir, config.seeds.extensions)
    report = BuildReport(files=len(found.files), scan_problems=list(found.problems))
    articles: list[Article] = []
    for result in read_seeds(
        found.files, config.seeds.max_file_bytes, config.build.workers, progress
    ):
        report.warnings.extend((result.source, w) for w in result.warnings)
        if result.article is not None:
            articles.append(result.article)
        else:
            report.rejected.append((result.source, result.error or "rejected"))
    report.articles = len(articles)

    rules = TopicRules.build(config.topics.aliases, config.topics.include, config.topics.exclude)
    catalog = plan_feeds(articles, config.feeds, rules, now)
    report.duplicates = list(catalog.duplicates)
    report.filtered = catalog.filtered
    report.topics = len(catalog.topics)

    files = render_site(catalog, config)
    for relative, data in files.items():
        if out.write(relative, data):
            report.written.append(relative)
        else:
            report.unchanged += 1
    if found.complete:
        # A directory that could not be read must not look like deleted seeds.
        report.removed = out.prune("feeds", ".atom", set(files))
    return report
