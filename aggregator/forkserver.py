"""Preloaded by the parse workers' fork server, and by nothing else: ties it to the service.

The service starts the fork server (see `ingest._worker_context`); importing
this module there asks the kernel to kill the fork server when the service
ends, even by `kill -9`. Workers watch the service themselves
(`worker.watch_service`).
"""

from __future__ import annotations

from aggregator.worker import die_with_parent

die_with_parent()
