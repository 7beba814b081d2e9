"""WebSub: feeds name the hub, and the hub hears once about each feed that changed."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import seed_text
from tests.feedcheck import ATOM, check_feed
from tests.service import RunningService


class Hub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.pings: list[dict[str, list[str]]] = []

        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                hub.pings.append(urllib.parse.parse_qs(body))
                self.send_response(204)
                self.end_headers()

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hub"

    def feeds(self) -> list[str]:
        return sorted(p["hub.url"][0].rsplit("/", 1)[1] for p in self.pings)


@pytest.fixture
def hub() -> Iterator[Hub]:
    server = Hub()
    yield server
    server.shutdown()
    server.server_close()


def test_one_ping_per_changed_feed_and_none_for_unchanged_ones(tmp_path: Path, hub: Hub) -> None:
    svc = RunningService(tmp_path, websub={"hub": hub.url})
    (svc.seeds / "ai.md").write_text(seed_text(title="AI", topics=["AI"]))
    (svc.seeds / "space.md").write_text(
        seed_text(title="Space", topics=["Space"], originalUrl="https://w.example/space")
    )
    with svc:
        svc.start()
        deadline = time.monotonic() + 10
        while len(hub.pings) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.feeds() == ["ai.atom", "all.atom", "space.atom"]
        assert all(p["hub.mode"] == ["publish"] for p in hub.pings)

        response = svc.get("/feeds/ai.atom")
        assert f'<{hub.url}>; rel="hub"' in response.headers["link"]
        assert f'<{svc.base}/feeds/ai.atom>; rel="self"' in response.headers["link"]
        links = check_feed(response.content).findall(f"{ATOM}link")
        assert [x.get("href") for x in links if x.get("rel") == "hub"] == [hub.url]

        hub.pings.clear()
        (svc.seeds / "ai2.md").write_text(
            seed_text(title="AI 2", topics=["AI"], originalUrl="https://w.example/ai2")
        )
        svc.wait_next_scan()
        svc.wait_next_scan()  # and one more with nothing changed
        time.sleep(0.3)
        assert hub.feeds() == ["ai.atom", "all.atom"]
        assert svc.stop() == 0


def test_failed_pings_are_retried_then_reported(hub: Hub) -> None:
    from aggregator.websub import publish

    waits: list[float] = []
    assert publish(hub.url, ["http://x/feeds/a.atom"], 2, sleep=waits.append) == []
    assert waits == [] and len(hub.pings) == 1
    closed = Hub()
    url = closed.url
    closed.shutdown()
    closed.server_close()
    assert publish(url, ["http://x/feeds/a.atom"], 2, sleep=waits.append) == [
        "http://x/feeds/a.atom"
    ]
    assert waits == [1, 2]  # backing off between the three tries


def test_archive_pages_are_not_announced(tmp_path: Path, hub: Hub) -> None:
    svc = RunningService(
        tmp_path, websub={"hub": hub.url}, feeds={"archive": True, "max_entries": 1}
    )
    for n in range(3):
        (svc.seeds / f"s{n}.md").write_text(
            seed_text(title=f"S{n}", topics=["AI"], originalUrl=f"https://w.example/{n}")
        )
    with svc:
        svc.start()
        assert svc.get("/feeds/ai/archive/1.atom").status_code == 200
        deadline = time.monotonic() + 10
        while len(hub.pings) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert hub.feeds() == ["ai.atom", "all.atom"]
        assert "link" not in svc.get("/feeds/ai/archive/1.atom").headers


def test_the_announcer_pings_for_feeds_only_and_not_without_a_hub(hub: Hub) -> None:
    from aggregator.config import WebSubConfig
    from aggregator.websub import Announcer

    announcer = Announcer()
    written = ["feeds/ai.atom", "index.html", "topics/ai.html", "feeds/all.atom"]
    assert announcer.announce(WebSubConfig(), "http://x/", written) is None
    assert announcer.announce(WebSubConfig(hub=hub.url), "http://x/", ["index.html"]) is None
    done = announcer.announce(WebSubConfig(hub=hub.url, retries=0), "http://x/", written)
    assert done is not None and done.result(timeout=10) == []
    assert [p["hub.url"] for p in hub.pings] == [
        ["http://x/feeds/ai.atom"],
        ["http://x/feeds/all.atom"],
    ]
    announcer.close()
    with pytest.raises(RuntimeError):
        announcer.announce(WebSubConfig(hub=hub.url), "http://x/", written)


def test_a_stopping_announcer_gives_up_retrying() -> None:
    from aggregator.config import WebSubConfig
    from aggregator.websub import Announcer

    closed = Hub()
    url = closed.url
    closed.shutdown()
    closed.server_close()
    announcer = Announcer(should_stop=lambda: True)
    started = time.monotonic()
    done = announcer.announce(WebSubConfig(hub=url, retries=10), "http://x/", ["feeds/a.atom"])
    assert done is not None and done.result(timeout=10) == ["http://x/feeds/a.atom"]
    assert time.monotonic() - started < 5  # no back-off of 1 + 2 + 4 + ... seconds
    announcer.close()


@pytest.mark.parametrize(
    ("hub_url", "expected"),
    [(None, None), ("https://hub.example/", ("https://hub.example/", "https://f.example/"))],
)
def test_the_hub_link_names_the_hub_and_the_public_url(
    hub_url: str | None, expected: tuple[str, str] | None
) -> None:
    from aggregator.config import WebSubConfig
    from aggregator.websub import hub_link

    assert hub_link(WebSubConfig(hub=hub_url), "https://f.example/") == expected
