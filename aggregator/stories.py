"""Stories: the seeds that tell the same story become one entry (pure decisions).

An *article* is what the seeds at one normalized URL hold (its id: `urls.entry_id`
of the URL; duplicate seeds of one URL are one article already). Two articles tell
the same story when one's URL is among the other's related URLs (either way) and
they were published within `stories.window_days` of each other. A *story* is a
connected group of that relation (`components`); with `stories.merge` off, every
article is a story of its own.

A story's entry:

- its **lead** is the earliest-published member (ties: the smaller id): the entry
  shows the lead's title, excerpt, link and date (`lead_of`);
- its **coverage** is every other member and every member's related articles, each
  outlet once, best first (`story_related`, then `coverage`);
- its **id** is decided by `assign_ids` from the story's members and what was
  published before (the ledger): see there. For the same seeds and the same ledger
  the ids are the same whatever order the seeds came in and whatever their files
  are called, so a running service and a cold build from its state agree. (With no
  ledger at all, a story can end up with another id than one built up over time: a
  published id never vanishes while its story lives, so a story first published
  under a later member's id keeps that id when an earlier member joins.)
- its `updated` moves when its coverage gains an outlet, and not when a member from
  an outlet it already shows joins or leaves (`new_outlets`).

No I/O: `aggregator.refresh` reads what these need from the store and writes what
they decide.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from msgspec import structs

from aggregator.model import Article, Provider, Related
from aggregator.providers import domain_key, registrable_domain
from aggregator.urls import entry_id, host_of

DEFAULT_WINDOW_DAYS = 3
"""How far apart (in days) two articles on one story may have been published."""
MAX_COVERAGE = 20
"""The most related articles an entry ever shows (`feeds.max_related` is at most this):
what a story keeps of its coverage, however many articles it has."""


@dataclass(frozen=True, slots=True)
class StoryRules:
    """What the config says of stories."""

    merge: bool = True
    """False: every article is an entry of its own (its related articles stay coverage)."""
    window: timedelta = timedelta(days=DEFAULT_WINDOW_DAYS)
    """Articles published further apart are never the same story."""


def components(
    published: Mapping[str, int], links: Iterable[tuple[str, str]], rules: StoryRules
) -> list[tuple[str, ...]]:
    """The stories among the articles of `published` (article id → published, integer
    microseconds), from `links` ((article, an article among its related), either way).

    A link counts when merging is on, both ends are in `published` and they were
    published within the window. Returns each story's members sorted, the stories
    sorted by their first member; every article of `published` is in exactly one.
    """
    parent = {article: article for article in published}

    def root(article: str) -> str:
        while parent[article] != article:
            parent[article] = parent[parent[article]]
            article = parent[article]
        return article

    if rules.merge:
        window = rules.window.days * 86_400_000_000 + rules.window.seconds * 1_000_000
        for one, other in links:
            if one == other or one not in parent or other not in parent:
                continue
            if abs(published[one] - published[other]) > window:
                continue
            a, b = root(one), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = {}
    for article in published:
        groups.setdefault(root(article), []).append(article)
    return sorted(tuple(sorted(members)) for members in groups.values())


def lead_of(members: Iterable[str], published: Mapping[str, int]) -> str:
    """The story's lead: its earliest-published member (ties: the smaller id)."""
    return min(members, key=lambda article: (published[article], article))


def assign_ids(
    stories: Sequence[Sequence[str]],
    published: Mapping[str, int],
    previous: Mapping[str, str],
    seen: Mapping[str, datetime],
    reserved: Iterable[str] = (),
) -> list[str]:
    """The entry id of each story (in the order of `stories`).

    `published` gives every member's date (integer microseconds), `previous` the story
    id each member was last given (members not given one left out), and `seen` when
    each id that has a ledger row was first seen (ids ever published), `reserved` ids
    that other stories hold (a new id is never one of them).

    A story may keep an id it *claims*: the id its members were last given, or a
    member's own id that was published before. Claims are settled oldest first: ids
    that name a story now (in `previous`) before the others, then by when they were
    first seen, then by id; a story keeps the first it is given.

    - An id that names a story now stays with that story's articles: with the part
      holding the id's own article if that article was in it (a story split), else
      with the part holding most of its articles (then the part whose lead was
      published first, then the smaller lead id). When every part has kept an older
      id already, two published stories merged and the older id survives; this one
      is let go, and is never given to another story.
    - An id published before that names no story now goes back to the story holding
      its own article (an article that had merged into another story splits off).
    - A story given none takes its lead's own id, else another member's (earliest
      first) that names no story, else a new one made from its lead's.

    So a published id is never given to another story, it stays while its story
    lives, and the same inputs give the same ids in any order.
    """
    home = {article: index for index, members in enumerate(stories) for article in members}
    claims: dict[str, set[int]] = {}
    for index, members in enumerate(stories):
        for article in members:
            if article in seen:
                claims.setdefault(article, set()).add(index)
            was = previous.get(article)
            if was is not None:
                claims.setdefault(was, set()).add(index)
    current = set(previous.values())
    leads = [lead_of(members, published) for members in stories]
    held: dict[int, str] = {}

    def age(story_id: str) -> tuple[bool, bool, datetime, str]:
        first = seen.get(story_id)
        return (story_id not in current, first is None, first or _EPOCH, story_id)

    for story_id in sorted(claims, key=age):
        open_claims = [i for i in claims[story_id] if i not in held]
        own = home.get(story_id)
        if story_id not in current:
            if own is not None and own in open_claims:
                held[own] = story_id
            continue
        heirs = [i for i in open_claims if any(previous.get(m) == story_id for m in stories[i])]
        if not heirs:
            continue
        if own in heirs and previous.get(story_id) == story_id:
            held[own] = story_id
            continue
        held[
            min(
                heirs,
                key=lambda i: (
                    -sum(previous.get(m) == story_id for m in stories[i]),
                    published[leads[i]],
                    leads[i],
                ),
            )
        ] = story_id
    taken = set(held.values()) | current | set(reserved)
    for index in sorted((i for i in range(len(stories)) if i not in held), key=leads.__getitem__):
        members = sorted(stories[index], key=lambda m: (m != leads[index], published[m], m))
        free = [m for m in members if m not in taken]
        story_id = free[0] if free else _new_id(leads[index], taken)
        held[index] = story_id
        taken.add(story_id)
    return [held[index] for index in range(len(stories))]


def _new_id(lead: str, taken: set[str]) -> str:
    """An id no story has, made from the lead's: for a story all of whose articles' own
    ids name other stories (an article came back after its id went on without it)."""
    number = 1
    while True:
        made = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{lead}#story-{number}')}"
        if made not in taken:
            return made
        number += 1


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def article_id(url: str) -> str:
    """The id of the article at `url` (`urls.entry_id`: its normalized form, cached there)."""
    return entry_id(url)


def outlet(provider: Provider | None, url: str) -> str:
    """Who published an article, as coverage counts outlets: its provider's registrable
    domain (`provider_key`: that of `provider.domain`, else of the URL's host), else its
    URL's host, else its provider's name, else the URL itself. (Every record asks it of
    each related article, nearly all of whose URLs are new: the domains and hosts are
    what is cached, in `aggregator.providers`.)"""
    if provider is not None and provider.domain:
        key = domain_key(provider.domain)
        if key is not None:
            return key
    try:
        host = host_of(url)
    except ValueError:
        host = ""
    if host:
        key = registrable_domain(host)
        return host if key is None else key
    return provider.name.casefold() if provider is not None else url


def as_related(article: Article) -> Related:
    """A member of a story as its coverage shows it."""
    return Related(
        article.title,
        article.url,
        article.provider,
        article.excerpt,
        article.published,
        article.quality,
    )


def story_related(lead: Article, others: Sequence[Article]) -> tuple[Related, ...]:
    """Everything a story's entry may show as coverage: the other members (earliest
    first, then by URL), then every member's related articles (the lead's first, in the
    seed's order). A URL is listed once (a member before a mention of it); `coverage`
    picks what is shown."""
    members = sorted(others, key=lambda a: (a.published, a.url))
    listed: list[Related] = []
    ids = {article_id(lead.url)}
    for related in [
        *(as_related(a) for a in members),
        *lead.related,
        *(r for a in members for r in a.related),
    ]:
        if (found := article_id(related.url)) not in ids:
            ids.add(found)
            listed.append(related)
    return tuple(listed)


def held_back(article: Article, before_us: int) -> Article:
    """`article` without the related articles dated after `before_us` (integer
    microseconds, what the feed filters let through): an article of the story held back
    for its future date is not shown in the coverage either until it falls due."""
    if not any(r.published is not None for r in article.related):
        return article
    limit = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=before_us)
    shown = tuple(r for r in article.related if r.published is None or r.published <= limit)
    return (
        article if len(shown) == len(article.related) else structs.replace(article, related=shown)
    )


def kept_coverage(lead: Article, related: Sequence[Related]) -> tuple[Related, ...]:
    """What a story keeps of its coverage (`related`, see `story_related`): the best
    article of each outlet, best first, at most `MAX_COVERAGE`; `coverage` shows the
    same from it as from all of `related`."""
    return coverage(structs.replace(lead, related=tuple(related)), MAX_COVERAGE)


def coverage(article: Article, limit: int) -> tuple[Related, ...]:
    """The related articles readers are shown, at most `limit`, one per outlet (see
    `outlet`; the article's own URL never): best first by quality (none last), then
    newest first (undated last), then by URL, so the order never depends on the seed's.
    Of one outlet's articles the best in that order is shown."""
    if limit <= 0:
        return ()
    own = article_id(article.url)
    best: dict[str, Related] = {}
    for related in sorted(article.related, key=_coverage_order):
        key = outlet(related.provider, related.url)
        if key not in best and article_id(related.url) != own:
            best[key] = related
    return tuple(sorted(best.values(), key=_coverage_order)[:limit])


def _coverage_order(related: Related) -> tuple[bool, float, bool, float, str]:
    quality, published = related.quality, related.published
    return (
        quality is None,
        -(quality or 0.0),
        published is None,
        -(published.timestamp() if published else 0.0),
        related.url,
    )


def new_outlets(lead: Article, related: Sequence[Related]) -> tuple[str, ...]:
    """The outlets a story's coverage (`related`, see `story_related`) shows beyond
    what the lead's own seed names, sorted: what dates the story anew when it grows.
    A lone article has none, so its `updated` follows its seed as before stories."""
    own = article_id(lead.url)
    known = {outlet(r.provider, r.url) for r in lead.related if article_id(r.url) != own}
    found = {outlet(r.provider, r.url) for r in related}
    return tuple(sorted(found - known))
