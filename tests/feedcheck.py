"""What every feed we write must be: checked the way a validator and a reader would."""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import cache
from pathlib import Path

import feedparser
from lxml import etree

ATOM = "{http://www.w3.org/2005/Atom}"
SCHEMA = Path(__file__).parent / "data" / "atom.rng"


@cache
def atom_schema() -> etree.RelaxNG:
    """RFC 4287's RELAX NG grammar (tests/data/atom.rnc, converted to atom.rng)."""
    return etree.RelaxNG(etree.parse(str(SCHEMA)))


def check_feed(data: bytes) -> etree._Element:
    """Assert `data` is a valid Atom feed readers will take; return its root element.

    RELAX NG validity; feedparser parses it without complaint; entry ids are
    unique; entries are newest published first; each entry has exactly one alternate
    link; the feed has a self link, an author and an `updated` no older than its
    newest entry's.
    """
    root = etree.fromstring(data)
    schema = atom_schema()
    assert schema.validate(root), str(schema.error_log)

    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, repr(parsed.get("bozo_exception"))

    entries = root.findall(f"{ATOM}entry")
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(ids) == len(set(ids)), "entry ids repeat"
    published = [datetime.fromisoformat(e.findtext(f"{ATOM}published") or "") for e in entries]
    assert published == sorted(published, reverse=True), "entries are not newest first"
    updated = [datetime.fromisoformat(e.findtext(f"{ATOM}updated") or "") for e in entries]
    assert all(u >= p for u, p in zip(updated, published, strict=True)), "updated before published"
    for entry in entries:
        alternates = [
            link
            for link in entry.findall(f"{ATOM}link")
            if link.get("rel", "alternate") == "alternate"
        ]
        assert len(alternates) == 1, f"{len(alternates)} alternate links in an entry"
        href = alternates[0].get("href", "")
        assert href.startswith(("http://", "https://")), href
    selfs = [link for link in root.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert len(selfs) == 1
    assert root.find(f"{ATOM}author/{ATOM}name") is not None
    if updated:
        feed_updated = datetime.fromisoformat(root.findtext(f"{ATOM}updated") or "")
        # its newest entry's, or later: when it last lost an entry (it never goes back)
        assert feed_updated >= max(updated), "feed updated is older than its newest entry"
    return root


DC = "{http://purl.org/dc/elements/1.1/}"


def check_rss(data: bytes) -> etree._Element:
    """Assert `data` is an RSS 2.0 feed as the RSS Board's profile and the W3C validator
    want it, and feedparser reads it cleanly; return its root element.

    A channel with title, link and description; an `atom:link rel="self"`; every
    item with a title or description and a unique guid; `author` only in its
    required `email (name)` form; dates in RFC 822; extension elements only in
    their own namespaces.
    """
    root = etree.fromstring(data)
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None
    for name in ("title", "link", "description"):
        assert (channel.findtext(name) or "").strip(), f"channel has no {name}"
    assert [x.get("rel") for x in channel.findall(f"{ATOM}link")].count("self") == 1
    for name in ("lastBuildDate", "pubDate"):
        if channel.find(name) is not None:
            assert parsedate_to_datetime(channel.findtext(name) or "") is not None
    guids = []
    for item in channel.findall("item"):
        assert item.find("title") is not None or item.find("description") is not None
        guids.append(item.findtext("guid"))
        author = item.findtext("author")
        if author is not None:
            assert re.fullmatch(r"\S+@\S+( \(.+\))?", author), f"author {author!r}"
        assert parsedate_to_datetime(item.findtext("pubDate") or "") is not None
        for child in item:
            assert isinstance(child.tag, str)
            if "}" not in child.tag:
                assert child.tag in RSS_ITEM, f"{child.tag} is not an RSS item element"
    assert len(guids) == len(set(guids)) and None not in guids
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return root


RSS_ITEM = {
    "title",
    "link",
    "description",
    "author",
    "category",
    "comments",
    "enclosure",
    "guid",
    "pubDate",
    "source",
}


def entry_titles(root: etree._Element) -> list[str]:
    return [e.findtext(f"{ATOM}title") or "" for e in root.findall(f"{ATOM}entry")]


def entry_ids(root: etree._Element) -> list[str]:
    return [e.findtext(f"{ATOM}id") or "" for e in root.findall(f"{ATOM}entry")]
