"""Logging set-up: one event a line on stderr, as text or as JSON.

An event's facts (file, counts, durations, URL) go in the message for people and,
through `fields`, as keys of the JSON object for log tools:

    log.info("scan: %d files", n, extra=fields(files=n))
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIELDS = "fields"
"""The LogRecord attribute `fields` fills (a namespace of our own: other libraries' extras stay
out of the JSON)."""


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: `values` become keys of the JSON event (text logs ignore them)."""
    return {_FIELDS: values}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the event's `fields` as keys
    (they never replace the four before), and the exception, if any."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, _FIELDS, None)
        if isinstance(extra, dict):
            event.update((str(k), v) for k, v in extra.items() if k not in event)
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False, default=str)


class _OneLine(logging.Formatter):
    """Text logs, one event a line: line breaks (tracebacks too) are escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\\n")


def configure(format: str = "text", level: str = "info") -> None:
    """Send the project's log records to stderr in `format` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else _OneLine(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter stays at warnings unless debugging.
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("watchfiles",):
        logging.getLogger(name).setLevel(quiet)
    # "skipped: maximum number of running instances" is the design (scans never
    # overlap), not news; the scheduler's own errors still show.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level == "debug" else logging.ERROR)
