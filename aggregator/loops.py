"""The event loop that the service's asyncio code runs on: uvloop's (the only module
that imports uvloop).

The same asyncio code takes less CPU per event on it than on the standard loop: about
a fifth less per answer of the HTTP server, and less per link check (docs/benchmarks.md).
Both the checker's loop (aggregator.checker) and the service's main loop (aggregator.daemon,
which runs the HTTP server) are made here.
"""

from __future__ import annotations

import asyncio

import uvloop


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop event loop (for `asyncio.Runner(loop_factory=...)`)."""
    return uvloop.new_event_loop()
