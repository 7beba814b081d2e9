"""One-off runs of the app's jobs, as the command line does them (rescan first)."""

from __future__ import annotations

from datetime import datetime

from aggregator.app import LinkRun, make_app
from aggregator.config import Config
from aggregator.thumbjob import ThumbnailReport


def fetch_thumbnails(config: Config, now: datetime) -> ThumbnailReport:
    """`aggregator thumbnails` at `now`: rescan, fetch, render the pages that gained some."""
    with make_app(config) as app:
        app.rescan(now)
        return app.fetch_thumbnails(now)


def check_links(config: Config, now: datetime, everything: bool = False) -> LinkRun:
    """`aggregator links check` at `now`: rescan, check, render the feeds that changed."""
    with make_app(config) as app:
        app.rescan(now)
        return app.check_links(now, everything)
