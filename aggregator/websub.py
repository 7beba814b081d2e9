"""WebSub publishing: tell the hub which feeds changed (stdlib HTTP; the hub is configured,
not written by others, so no link-checker rules are needed)."""

from __future__ import annotations

import concurrent.futures
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from aggregator.formats import is_feed

if TYPE_CHECKING:
    from aggregator.config import WebSubConfig

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


def hub_link(websub: WebSubConfig, base_url: str) -> tuple[str, str] | None:
    """(hub URL, public URL of the output directory) for the feeds' WebSub `Link`
    headers; None when no hub is configured. Pure."""
    return (websub.hub, base_url) if websub.hub else None


class Announcer:
    """Tells the configured hub about changed feeds on a thread of its own, one batch after
    the other, so a slow or dead hub never holds up the job that wrote the feeds."""

    def __init__(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """`should_stop`: True once the service stops (a batch then gives up retrying)."""
        self._should_stop = should_stop
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="websub")

    def announce(
        self, websub: WebSubConfig, base_url: str, written: Iterable[str]
    ) -> concurrent.futures.Future[list[str]] | None:
        """Queue one ping per feed among `written` (paths relative to the output directory,
        published at `base_url`) to the hub of `websub`.

        Returns the future of the batch (its result: the URLs that failed), or None when
        no hub is configured or nothing written is a feed. Raises `RuntimeError` after
        `close()`.
        """
        hub = websub.hub
        feeds = [path for path in written if is_feed(path)]
        if not hub or not feeds:
            return None
        urls = [base_url + path for path in feeds]
        return self._pool.submit(publish, hub, urls, websub.retries, self._should_stop)

    def close(self) -> None:
        """Drop the batches not started; the one in progress ends on its own (it stops
        retrying once `should_stop` says so). Returns at once."""
        self._pool.shutdown(wait=False, cancel_futures=True)
