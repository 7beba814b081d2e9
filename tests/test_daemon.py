"""The service's lifecycle in this process: start, serve, reload, stop."""

from __future__ import annotations

import time
from pathlib import Path

from aggregator.config import load_config
from aggregator.daemon import Service
from tests.service import RunningService


def test_a_stop_requested_before_run_ends_run_at_once(tmp_path: Path) -> None:
    svc = RunningService(tmp_path, server={"enabled": False})
    config = load_config(svc.config_path)
    service = Service(config, lambda: config)
    service.request_stop()
    started = time.monotonic()
    assert service.run() == 0
    assert time.monotonic() - started < 5
