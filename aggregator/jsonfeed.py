"""JSON Feed 1.1 (https://jsonfeed.org/version/1.1): a feed plan in, bytes out (pure).

The same entries, ids and order as the Atom feed; `date_modified` is the
ledger's `updated`. An entry with coverage carries it in `content_html` (see
`render.entry_html`); `content_text` stays the excerpt (or the title).
"""

from __future__ import annotations

import json
from typing import Any

from aggregator.config import SiteConfig
from aggregator.formats import FeedOptions, feed_path, page_path
from aggregator.plan import FeedPlan
from aggregator.render import entry_html, feed_title
from aggregator.text import strip_invalid_xml

VERSION = "https://jsonfeed.org/version/1.1"


def render_json(plan: FeedPlan, site: SiteConfig, options: FeedOptions) -> bytes:
    max_related, hub = options.max_related, options.hub
    about = plan.feed.about
    items: list[dict[str, Any]] = []
    for entry in plan.entries:
        article = entry.article
        related = entry.coverage(max_related)
        item: dict[str, Any] = {
            "id": entry.id,
            "url": entry.url,
            "title": article.title,
            "content_text": article.excerpt or article.title,
            **({"content_html": entry_html(article, related)} if related else {}),
            "date_published": article.published.isoformat(),
            "date_modified": entry.updated.isoformat(),
        }
        if article.excerpt:
            item["summary"] = article.excerpt
        if article.images:
            item["image"] = article.images[0].url
        if article.provider:
            author: dict[str, str] = {"name": article.provider.name}
            if article.provider.domain:
                author["url"] = f"https://{article.provider.domain}/"
            item["authors"] = [author]
        if entry.topics:
            item["tags"] = [t.name for t in entry.topics]
        if article.language:
            item["language"] = article.language
        if related:
            item["_aggregator"] = {"related": [{"title": r.title, "url": r.url} for r in related]}
        items.append(item)
    feed = {
        "version": VERSION,
        "title": feed_title(site, plan.feed),
        "home_page_url": site.base_url + page_path(plan.slug),
        "feed_url": site.base_url + feed_path(plan.slug, "json"),
        "description": f"{about}, newest first",
        "language": site.language,
        "authors": [{"name": strip_invalid_xml(site.author)}],
        "items": items,
    }
    if hub:
        feed["hubs"] = [{"type": "WebSub", "url": hub}]
    return (json.dumps(feed, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
