"""A one-off build, as a function: `build(config, now)`.

Kept for callers that build once without holding an app (the shared test fixtures);
everything else uses `aggregator.app.make_app`.
"""

from __future__ import annotations

from datetime import datetime

from aggregator.app import BuildReport, make_app
from aggregator.config import Config
from aggregator.ingest import Progress

__all__ = ["BuildReport", "build"]


def build(config: Config, now: datetime, progress: Progress | None = None) -> BuildReport:
    """Bring the output directory up to date once (`App.build` on a fresh app).

    Returns and raises what `App.build` does."""
    with make_app(config) as app:
        return app.build(now, progress)
