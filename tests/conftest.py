"""Shared fixtures: real seed files in temp dirs, real builds, real output files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from aggregator.config import Config, load_config
from aggregator.pipeline import BuildReport, build

NOW = datetime(2026, 11, 1, tzinfo=UTC)
"""The clock every test build runs at."""


def seed_text(**fields: Any) -> str:
    """A seed document: a valid article unless fields override (None removes a field)."""
    doc: dict[str, Any] = {
        "category": "news",
        "title": "A headline",
        "excerpt": "What happened, in a sentence.",
        "publishedDateTime": "2024-05-01T10:00:00Z",
        "originalUrl": "https://news.example/2024/a-headline",
        "webUrl": "https://news.example/2024/a-headline",
        "type": "article",
        "quality": 50,
        "published": True,
        "provider": {"name": "Example News", "domain": "news.example"},
        "topics": ["AI"],
        "secured": "c2VjcmV0LWJsb2ItbmV2ZXItc2hvd24=",
    }
    doc.update(fields)
    doc = {k: v for k, v in doc.items() if v is not None}
    return "---\n" + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False) + "---\n"


class Site:
    """A seed directory and an output directory, and a way to build one into the other."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seeds = root / "seeds"
        self.out = root / "public"
        self.state = root / "state" / "aggregator.sqlite3"
        self.seeds.mkdir(parents=True)

    def add(self, name: str, content: str | bytes | None = None, **fields: Any) -> Path:
        path = self.seeds / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            content = seed_text(**fields)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    def config(self, **overrides: Any) -> Config:
        flat = {
            "seeds.dir": self.seeds,
            "output.dir": self.out,
            "state.path": self.state,
            "build.workers": 1,
        }
        flat.update(overrides)
        return load_config(None, overrides=flat, environ={})

    def build(self, now: datetime = NOW, overrides: dict[str, Any] | None = None) -> BuildReport:
        return build(self.config(**(overrides or {})), now)

    def feed(self, slug: str) -> bytes:
        return (self.out / "feeds" / f"{slug}.atom").read_bytes()

    def feeds(self) -> dict[str, bytes]:
        return {p.stem: p.read_bytes() for p in sorted((self.out / "feeds").glob("*.atom"))}


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)
