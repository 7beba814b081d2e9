"""Topic names: merging spellings, aliases, include/exclude, and file-name slugs.

Pure functions. A topic is known by its `key` (the case-folded, white-space
collapsed name) and shown by a stable display name. Its slug is the only part
that reaches a file name, and it is built so that no topic name, however
hostile, can point outside the output directory.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping

import msgspec
from anyascii import anyascii

from aggregator.feeds import ALL_SLUG as ALL_SLUG  # the slug no topic can take
from aggregator.text import clean_line

MAX_SLUG_LENGTH = 60
_RESERVED = frozenset(
    {ALL_SLUG, "con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)
_SYMBOLS = {"+": " plus ", "#": " sharp ", "&": " and ", "@": " at "}
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
RESERVED_SLUGS = _RESERVED
"""Slugs no feed takes bare: `all` and the device names some systems reserve."""


class Topic(msgspec.Struct, frozen=True, order=True, gc=False):
    key: str
    name: str
    slug: str


def topic_key(name: str) -> str:
    """The identity of a topic name: NFKC, case-folded, white space collapsed."""
    return clean_line(unicodedata.normalize("NFKC", name)).casefold()


class TopicRules(msgspec.Struct, frozen=True):
    """How the config shapes topics: aliases and the include/exclude lists."""

    aliases: Mapping[str, str]
    """alias key → canonical display name"""
    include: frozenset[str]
    exclude: frozenset[str]

    @classmethod
    def build(
        cls,
        aliases: Mapping[str, str] | None = None,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
    ) -> TopicRules:
        return cls(
            aliases={topic_key(k): clean_line(v) for k, v in (aliases or {}).items()},
            include=frozenset(topic_key(n) for n in include),
            exclude=frozenset(topic_key(n) for n in exclude),
        )

    def resolve(self, name: str) -> tuple[str, str] | None:
        """(key, spelling) of the topic `name` belongs to, or None when it is left out."""
        key = topic_key(name)
        spelling = clean_line(name)
        if key in self.aliases:
            spelling = self.aliases[key]
            key = topic_key(spelling)
        if not key:
            return None
        if (self.include and key not in self.include) or key in self.exclude:
            return None
        return key, spelling


def display_names(spellings: Iterable[tuple[str, str, int]], rules: TopicRules) -> dict[str, str]:
    """Pick one display name per key: an alias target as configured, else the commonest spelling.

    `spellings` holds (key, spelling, how many seeds use it).

    Ties go to the spelling that sorts first, so the choice does not depend on
    the order the seeds were read in.
    """
    counts: dict[str, Counter[str]] = {}
    for key, spelling, count in spellings:
        counts.setdefault(key, Counter())[spelling] += count
    targets = {topic_key(v): v for v in rules.aliases.values()}
    names: dict[str, str] = {}
    for key, counter in counts.items():
        if key in targets:
            names[key] = targets[key]
        else:
            names[key] = min(counter.items(), key=lambda item: (-item[1], item[0]))[0]
    return names


def base_slug(name: str) -> str:
    """Lower-case ASCII words joined by `-`; unicode transliterated, symbols spelled out."""
    parts: list[str] = []
    for char in name:
        if char in _SYMBOLS:
            parts.append(_SYMBOLS[char])
        elif char.isascii():
            parts.append(char)
        else:
            ascii_form = anyascii(char)
            # A multi-letter transliteration is a syllable or word (人 → "Ren"): keep it apart.
            parts.append(f" {ascii_form} " if len(ascii_form) > 1 else ascii_form)
    return _NOT_SLUG.sub("-", "".join(parts).lower()).strip("-")


def _suffix(key: str, length: int = 6) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:length]


slug_suffix = _suffix
"""A short hash of a key, that keeps apart slugs that would otherwise be the same."""


def assign_slugs(
    names: Mapping[str, str], existing: Mapping[str, str] | None = None
) -> dict[str, Topic]:
    """A unique, safe slug for every topic key.

    A slug is `[a-z0-9-]`, at most 60 characters, never empty, never `all` or
    a reserved device name. `existing` (key → slug, as assigned before) is
    honored: a topic keeps its feed's file name for good, and no newcomer can
    take it. New keys whose slugs collide, with each other or with a slug in
    use, keep apart with a short suffix from a hash of the key; among
    newcomers wanting the same free slug, the one with a plain-ASCII name that
    sorts first gets it bare.
    """
    existing = existing or {}
    topics: dict[str, Topic] = {}
    used = set(existing.values())
    wanted: dict[str, list[str]] = {}
    for key, name in names.items():
        if key in existing:
            topics[key] = Topic(key, name, existing[key])
            continue
        slug = base_slug(name)
        if len(slug) > MAX_SLUG_LENGTH:
            slug = slug[:MAX_SLUG_LENGTH].rstrip("-") + "-" + _suffix(key)
        wanted.setdefault(slug, []).append(key)
    used |= set(wanted)
    for slug, keys in sorted(wanted.items()):
        keys.sort(key=lambda k: (not names[k].isascii(), k))
        for position, key in enumerate(keys):
            free = slug not in existing.values()
            if slug and slug not in _RESERVED and position == 0 and free:
                final = slug
            else:
                final = f"{slug or 'topic'}-{_suffix(key)}"
                if final in used:  # a topic literally named like another's suffixed slug
                    final = f"{slug or 'topic'}-{_suffix(key, 16)}"
                used.add(final)
            topics[key] = Topic(key, names[key], final)
    return topics
