"""Every feed document names, as its own, the URL the running service serves it at."""

from __future__ import annotations

import json
from pathlib import Path

import feedparser
import listparser
from lxml import etree

from tests.conftest import seed_text
from tests.feedcheck import ATOM, check_feed
from tests.service import RunningService


def test_self_links_equal_the_served_urls(tmp_path: Path) -> None:
    with RunningService(
        tmp_path, feeds={"formats": ["atom", "json", "rss"], "archive": True, "max_entries": 2}
    ) as svc:
        for n in range(5):
            (svc.seeds / f"s{n}.md").write_text(
                seed_text(
                    title=f"Story {n}",
                    topics=["AI", "Space"] if n % 2 else ["AI"],
                    originalUrl=f"https://s.example/{n}",
                    publishedDateTime=f"2024-0{n + 1}-01T00:00:00Z",
                )
            )
        svc.start()
        opml = listparser.parse(svc.get("/feeds.opml").content)
        feeds = [f.url for f in opml.feeds]
        assert len(feeds) == 2
        feeds += [f.url for f in listparser.parse(svc.get("/all.opml").content).feeds]
        assert len(feeds) == 3
        archive_pages = 0
        for url in feeds:
            assert url.startswith(svc.base + "/") and url.endswith(".atom")
            pending: list[str] = [url]
            while pending:
                served = pending.pop()
                response = svc.get(served.removeprefix(svc.base))
                assert response.status_code == 200, served
                root = check_feed(response.content)
                links = {link.get("rel"): link.get("href") for link in root.iter(f"{ATOM}link")}
                assert links["self"] == served
                if links.get("prev-archive"):
                    archive_pages += 1
                    pending.append(str(links["prev-archive"]))
            for suffix in (".json", ".rss"):
                other = url.removesuffix(".atom") + suffix
                response = svc.get(other.removeprefix(svc.base))
                assert response.status_code == 200
                if suffix == ".json":
                    assert json.loads(response.content)["feed_url"] == other
                else:
                    parsed = feedparser.parse(response.content)
                    assert parsed.bozo == 0
                    rss = etree.fromstring(response.content)
                    selves = [
                        link.get("href")
                        for link in rss.iter(f"{ATOM}link")
                        if link.get("rel") == "self"
                    ]
                    assert selves == [other]
        assert archive_pages >= 2  # the walk went through archive pages too
