"""Feed history (RFC 5005 archived feeds): which entries live in which archive page.

Pure. A topic feed keeps its newest `feeds.max_entries` entries; the older
ones go to numbered archive pages, page 1 holding the oldest. A page is
*closed* once it has filled up: its boundary (the newest entry it holds) is
kept in the state, so a closed page never changes again unless an article in
it is edited, removed or backdated into it. Entries leaving the current feed
gather in the one *open* page after the closed ones, which closes in turn
when it is full. When so many new articles are removed that the current
feed would run short, the newest closed page opens again (`reopen`).

Positions are `(published_us, entry_id)` keys in feed order: newest first,
ties by id, exactly as the store sorts a feed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

Key = tuple[int, str]
"""(published_us, entry_id) of an entry."""


def newer(a: Key, b: Key) -> bool:
    """Whether `a` comes before `b` in a feed (newest first, ties by id)."""
    return a[0] > b[0] or (a[0] == b[0] and a[1] < b[1])


class Row(msgspec.Struct, frozen=True, gc=False):
    """What paging needs of an entry: its position, when it last changed and what readers
    see of it (the ledger's content hash: an entry dated ahead keeps its `updated` while
    it is edited before its date, and its page must be written again all the same)."""

    published_us: int
    entry_id: str
    updated_us: int
    content_hash: str = ""

    @property
    def key(self) -> Key:
        return (self.published_us, self.entry_id)


class Layout(msgspec.Struct, frozen=True):
    pages: tuple[tuple[Row, ...], ...]
    """Archive pages, oldest first (page n is `pages[n - 1]`); the last one is the open page
    when there are more pages than `bounds`."""
    bounds: tuple[Key, ...]
    """The boundary of each closed page: the key of its newest entry, oldest page first."""


def reopen(rows: Sequence[Row], bounds: Sequence[Key], want: int) -> list[Key]:
    """The bounds to page with, after reopening the newest closed pages as long as fewer
    than `want` rows are newer than them (articles were removed, or `feeds.max_entries`
    grew): the current feed is never left short while closed pages hold older entries."""
    kept = list(bounds)
    while kept:
        last = kept[-1]
        if sum(1 for row in rows if newer(row.key, last)) >= want:
            break
        kept.pop()
    return kept


def lay_out(rows: Sequence[Row], bounds: Sequence[Key], in_feed: int, page_size: int) -> Layout:
    """Place every row of a topic (newest first) in the current feed or an archive page.

    `in_feed` is how many of the rows newer than the closed pages the current
    feed shows; the rest of those fill the open page, which closes (and a
    new one opens) whenever it holds `page_size` rows.
    """
    closed: list[list[Row]] = [[] for _ in bounds]
    newest_first = list(bounds)[::-1]
    spare: list[Row] = []
    seen_current = 0
    page = -1  # index into newest_first of the closed page the row is in; -1: newer than all
    for row in rows:  # newest first, so `page` only moves towards older pages
        while page + 1 < len(newest_first) and not newer(row.key, newest_first[page + 1]):
            page += 1
        if page >= 0:
            closed[len(bounds) - 1 - page].append(row)
        elif seen_current < in_feed:
            seen_current += 1
        else:
            spare.append(row)
    new_bounds = list(bounds)
    oldest_first = spare[::-1]
    while len(oldest_first) >= page_size:
        full, oldest_first = oldest_first[:page_size], oldest_first[page_size:]
        closed.append(full[::-1])
        new_bounds.append(full[-1].key)
    pages = [tuple(page) for page in closed]
    if oldest_first:
        # The open page; none while the spare entries fill whole pages exactly (an empty
        # page would be a document with nothing in it and no date). The next entry to
        # leave the feed opens one after the last closed page.
        pages.append(tuple(oldest_first[::-1]))
    return Layout(tuple(pages), tuple(new_bounds))


def page_digest(context: str, number: int, last: int, rows: Sequence[Row]) -> str:
    """What an archive page's bytes depend on; an unchanged digest means an unchanged page."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{context}\x1f{number}\x1f{number == last}\x1f{number == 1}".encode())
    for row in rows:
        h.update(f"\x1e{row.entry_id}\x1f{row.updated_us}\x1f{row.content_hash}".encode())
    return h.hexdigest()
