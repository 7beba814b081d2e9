"""Who published an article: its provider, known by its registrable domain (pure).

A provider is the registrable domain of the seed's `provider.domain` when that is a
host name with one, else of the host of the article's URL: `news.sky.com` and
`sky.com` are both `sky.com`, `www.telegraph.co.uk` is `telegraph.co.uk`. What is a
public suffix (`co.uk`, `github.io`) comes from the Public Suffix List bundled with
`publicsuffixlist`, read from the package and never fetched. An IP address, a name
under a suffix the list does not know (`localhost`, `.local`, `.invalid`, `.test`,
`.example`) and a public suffix itself have no registrable domain: such an article
has no provider feed.

A provider's display name is the `provider.name` most of its articles give (ties: the
one that sorts first), else its domain. Its slug (the provider feed's file name) is the
domain itself, in ASCII (IDNA), which is already safe for a file name; only a domain
too long or a reserved device name gets the topic slugs' hash suffix.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from urllib.parse import urlsplit

import publicsuffixlist
from publicsuffixlist import PSLFILE, PublicSuffixList

from aggregator.feeds import Feed, provider_feed
from aggregator.formats import PROVIDERS_FOLDER
from aggregator.topics import MAX_SLUG_LENGTH, RESERVED_SLUGS, base_slug, slug_suffix
from aggregator.urls import host_of


@dataclass(frozen=True, slots=True, order=True)
class ProviderName:
    """A provider as feeds and pages show it."""

    key: str
    """Its registrable domain, in lower-case ASCII (`sky.com`)."""
    name: str
    slug: str


@cache
def _suffix_list() -> PublicSuffixList:
    """The whole list, for names with a label in IDNA's ASCII form (`xn--`)."""
    # accept_unknown=False: a name under a top-level domain the list does not have
    # (`localhost`, `.invalid`, `.local`) has no registrable domain.
    return PublicSuffixList(suffix_rules(), accept_unknown=False, accept_encoded_idn=False)


@cache
def _plain_suffix_list() -> PublicSuffixList:
    """The rules of the list written in ASCII, for names without an `xn--` label: the
    others (in Unicode, or their ASCII forms, which have such a label) match no label
    of such a name, so they place it as the whole list does (12 ms to read, where the
    whole list takes 40: the ASCII forms of its Unicode rules are most of that)."""
    lines = [line for line in _list_lines() if line.isascii()]
    return PublicSuffixList(lines, accept_unknown=False, accept_encoded_idn=False)


def suffix_list_for(name: str) -> PublicSuffixList:
    """The list that places `name` (a host name in lower-case ASCII)."""
    return _suffix_list() if "xn--" in name else _plain_suffix_list()


def suffix_rules() -> list[str]:
    """The lines of the bundled list, and its rules in Unicode once more in ASCII (IDNA).

    What `PublicSuffixList` reads with `accept_encoded_idn` (how names in ASCII are found),
    without its asking Python's `idna` codec for every one of the 10,000 rules: only the
    few hundred in Unicode change (a third of the 35-50 ms the list takes to read)."""
    lines = _list_lines()
    encoded = []
    for line in lines:
        if not line.isascii():
            rule = line.lower().split(" ")[0].rstrip()
            if rule and not rule.startswith("//"):
                bang = "!" if rule.startswith("!") else ""
                encoded.append(bang + rule.lstrip("!").encode("idna").decode("ascii"))
    return lines + encoded


def _list_lines() -> list[str]:
    """The lines of the bundled list."""
    with open(PSLFILE, encoding="utf-8") as source:
        return source.read().splitlines()


def load_suffix_list() -> None:
    """Read the Public Suffix List now (the rules in ASCII, which place nearly every name:
    `suffix_list_for`), so that the first provider looked up does not wait for it."""
    _plain_suffix_list()


def list_version() -> str:
    """The version of the bundled Public Suffix List (its package's), so that the state
    can tell when the providers of stored entries must be worked out again."""
    own = getattr(publicsuffixlist, "__version__", None)  # what its metadata says, read free
    if isinstance(own, str):
        return own
    from importlib.metadata import version  # here: 10 ms to import

    return version("publicsuffixlist")


@lru_cache(maxsize=65536)
def registrable_domain(host: str) -> str | None:
    """The registrable domain of `host` (a host name, any case, a trailing dot allowed, or
    an IDN in Unicode), in lower-case ASCII; None for an IP address, a public suffix,
    a name the Public Suffix List does not place, or anything that is not a host name."""
    name = host.strip().rstrip(".").lower()
    if not name or name.startswith("[") or _is_ip(name):
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.split(".")
    if any(not label or len(label) > 63 or not _label_ok(label) for label in labels):
        return None
    found = suffix_list_for(name).privatesuffix(name)
    return found if isinstance(found, str) else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return all(part.isdigit() for part in name.split("."))  # 127.1 and the like
    return True


def _label_ok(label: str) -> bool:
    return all(c.isalnum() or c == "-" for c in label) and not (
        label.startswith("-") or label.endswith("-")
    )


def provider_key(domain: str | None, url: str | None) -> str | None:
    """The provider of an article: the registrable domain of the seed's `provider.domain`
    when it has one, else of the host of `url`; None when neither does. (Every refresh
    asks it of each member of each story it redoes: the work is cached per domain and
    per host, not per article.)"""
    if domain:
        found = domain_key(domain)
        if found is not None:
            return found
    if url:
        try:
            host = host_of(url)
        except ValueError:
            return None
        return registrable_domain(host)
    return None


@lru_cache(maxsize=8192)
def domain_key(domain: str) -> str | None:
    """The registrable domain of a seed's `provider.domain` (a host name, or written as
    a URL: its host); None when it has none."""
    host = domain.strip()
    if "/" in host:
        host = urlsplit(host if "//" in host else f"//{host}").hostname or ""
    return registrable_domain(host)


def provider_slug(key: str) -> str:
    """The provider's file name (within the providers folder): its domain, which is
    `[a-z0-9.-]` already; one too long, or whose first label is a reserved device
    name, ends with a hash of the domain. It depends on the domain alone."""
    labels = [base_slug(label) for label in key.split(".")]
    slug = ".".join(label for label in labels if label)
    if len(slug) > MAX_SLUG_LENGTH:
        slug = slug[:MAX_SLUG_LENGTH].rstrip(".-") + "-" + slug_suffix(key)
    elif not slug or slug != key or slug.split(".")[0] in RESERVED_SLUGS:
        slug = f"{slug or 'provider'}-{slug_suffix(key)}"
    return slug


def provider_names(counts: Iterable[tuple[str, str | None, int]]) -> dict[str, ProviderName]:
    """Every provider by key, from (key, `provider.name` of some of its articles or None,
    how many articles): named after the commonest name (ties: the one that sorts first),
    else its domain."""
    seen: dict[str, Counter[str]] = {}
    for key, name, count in counts:
        names = seen.setdefault(key, Counter())
        if name and name.strip():
            names[name.strip()] += count
    return {
        key: ProviderName(key, _commonest(names) or key, provider_slug(key))
        for key, names in seen.items()
    }


def _commonest(names: Mapping[str, int]) -> str | None:
    if not names:
        return None
    return min(names.items(), key=lambda item: (-item[1], item[0]))[0]


def provider_feed_of(provider: ProviderName) -> Feed:
    """The feed of `provider`: keyed by its domain, written under `providers/<slug>`,
    named after it."""
    return Feed(provider_feed(provider.key), f"{PROVIDERS_FOLDER}/{provider.slug}", provider.name)
