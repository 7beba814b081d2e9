"""WebSub publishing: tell the hub which feeds changed (stdlib HTTP; the hub is configured,
not written by others, so no link-checker rules are needed)."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence

log = logging.getLogger("aggregator.websub")


def ping(hub: str, url: str, timeout: float = 10) -> None:
    """One publish notification (`hub.mode=publish`, `hub.url=<feed>`); raises on failure."""
    body = urllib.parse.urlencode({"hub.mode": "publish", "hub.url": url}).encode()
    request = urllib.request.Request(  # noqa: S310 - the configured hub, http(s) only
        hub,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(
                hub, response.status, "hub refused", response.headers, None
            )


def publish(
    hub: str,
    urls: Sequence[str],
    retries: int,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Ping the hub once per changed feed, retrying with back-off; the URLs that failed."""
    failed: list[str] = []
    for url in urls:
        for attempt in range(retries + 1):
            try:
                ping(hub, url)
                break
            except (OSError, ValueError) as exc:
                if attempt == retries or should_stop():
                    log.warning("WebSub ping for %s to %s failed: %s", url, hub, exc)
                    failed.append(url)
                    break
                sleep(2**attempt)
    return failed
