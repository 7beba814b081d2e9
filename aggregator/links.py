"""Link checking decisions: pure functions of what a check saw and `now`.

    address_allowed     may the checker connect to this IP (SSRF rules)?
    url_allowed         may the checker request this URL (scheme, port)?
    politeness_key      which server a host name stands for, so its spellings share limits
    classify            what one check says: alive, dead, unknown, blocked, suspect
    advance             the stored state of a URL after a check (dead only when confirmed)
    network_down        did most hosts of a run fail the same way (our network, not theirs)?
    retry_after         a Retry-After header in seconds, capped
    host_pauses         the Retry-After pauses kept across runs, by host name and server

Outcomes: `alive` (2xx, 304), `dead` (404, 410, a name that does not resolve,
a refused connection; confirmed over `dead_after` consecutive failures spread
over `dead_min_hours`), `unknown` (timeouts, 5xx, 401/403/429/999, TLS and
protocol errors), `suspect` (alive, but redirected to the site's front page or
a much shorter section path: the usual sign of a removed article), `blocked`
(refused by the SSRF rules; never fetched). Only a confirmed `dead` changes a
feed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

import msgspec
from msgspec import structs

from aggregator.urls import host_of, origin_of

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"),)
_NEVER_V6 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "64:ff9b:1::/48",  # local-use NAT64: its layout varies, so its target cannot be known
        "2001::/32",  # Teredo tunnels
        "fec0::/10",  # site-local (deprecated, still routed in places)
        "::ffff:0:0:0/96",  # IPv4-translated
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
    )
)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
MAX_RETRY_AFTER = 3600.0


class Outcome(StrEnum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"
    SUSPECT = "suspect"
    BLOCKED = "blocked"


class Failure(StrEnum):
    """How a check that got no HTTP answer failed."""

    DNS = "dns"  # the name does not resolve
    REFUSED = "refused"  # connection refused
    UNREACHABLE = "unreachable"  # no route, network unreachable
    TIMEOUT = "timeout"
    TLS = "tls"
    PROTOCOL = "protocol"  # reset, malformed answer, huge headers
    REDIRECTS = "redirects"  # loop, or more than the allowed hops
    BLOCKED = "blocked"  # refused by our rules: not fetched at all
    INVALID = "invalid"  # not a URL we can request


DEAD_CODES = frozenset({404, 410})
DEAD_FAILURES = frozenset({Failure.DNS, Failure.REFUSED})
PERMANENT_REDIRECTS = frozenset({301, 308})


# -- where the checker may go -------------------------------------------------------


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries: mapped, compatible, 6to4, NAT64, Teredo."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in net for net in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _public(ip: IPAddress) -> bool:
    return ip.is_global and not ip.is_multicast and ip not in _CGNAT


def address_allowed(ip: IPAddress, allow: Sequence[IPNetwork] = ()) -> bool:
    """Whether the checker may connect to `ip`.

    Refused: loopback, private, link-local, CGNAT, multicast, reserved,
    unspecified and every other non-global address, also when an IPv6
    address embeds one; unless a network in `allow` holds it.
    """
    if any(ip.version == net.version and ip in net for net in allow):
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _NEVER_V6):
            return False
        inner = embedded_ipv4(ip)
        if inner:
            if not all(address_allowed(v4, allow) for v4 in inner):
                return False
            opened = all(any(v4 in n for n in allow if n.version == 4) for v4 in inner)
            return opened or _public(ip)
    return _public(ip)


def politeness_key(name: str, addresses: Iterable[IPAddress], allow: Sequence[IPNetwork]) -> str:
    """The server that per-host limits (concurrency, spacing, pauses) count against.

    That is the address connected to, not the name in the URL: `127.1`,
    `2130706433`, `localhost` and `[::ffff:127.0.0.1]` are one server, and
    counting them apart multiplies what one server gets. Of several allowed
    addresses the lowest is taken, whatever order DNS gave them in; an IPv4
    address mapped into IPv6 counts as itself. `name` when no address is
    allowed (the check fails without a request anyway).
    """
    usable = [
        ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        for ip in addresses
        if address_allowed(ip, allow)
    ]
    if not usable:
        return name
    return str(min(usable, key=lambda ip: (ip.version, int(ip))))


def url_allowed(url: str, ports: Iterable[int]) -> str | None:
    """None when the checker may request `url`; otherwise why not."""
    try:
        scheme, host, port = origin_of(url)
    except ValueError:
        return "malformed URL"
    if scheme not in ("http", "https"):
        return f"scheme {scheme or '(none)'} is not checked"
    if not host:
        return "no host"
    if port is None:
        port = 443 if scheme == "https" else 80
    if port not in set(ports):
        return f"port {port} is not allowed"
    return None


# -- what one check says ----------------------------------------------------------------


class Hop(msgspec.Struct, frozen=True):
    url: str
    status: int


class Attempt(msgspec.Struct, frozen=True):
    """What one check of one URL saw."""

    url: str
    status: int | None = None
    """The last HTTP status received (None when no answer came)."""
    failure: Failure | None = None
    detail: str = ""
    hops: tuple[Hop, ...] = ()
    """Each redirect answer on the way, in order."""
    final_url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    retry_after: float | None = None
    body: bytes | None = None
    """The body of a 200 answer to a request that keeps it (`Request.keep`), when it fit."""

    @property
    def host(self) -> str:
        return host_of(self.url)

    @property
    def permanent(self) -> bool:
        """Every redirect on the way was permanent (301/308)."""
        return bool(self.hops) and all(h.status in PERMANENT_REDIRECTS for h in self.hops)


class Request(msgspec.Struct, frozen=True):
    """One URL to check, with the validators stored from its last answer."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    confirm: bool = False
    """A check that may confirm a failure: a HEAD 404/410 is always asked again with GET."""
    keep: int = 0
    """With keep > 0: a fetch, not a check. GET at once and keep a body of up to this many
    bytes (a longer one is a failure)."""


@dataclass
class RunResult:
    """What one run of the checker gave."""

    attempts: list[Attempt] = field(default_factory=list)
    deferred: dict[str, float] = field(default_factory=dict)
    """URL → seconds to wait: not checked, because its host asked for a pause."""
    servers: dict[str, str] = field(default_factory=dict)
    """Host name → the server its URLs were paced by (`politeness_key`)."""


def host_pauses(
    pauses: Mapping[str, datetime], result: RunResult, now: datetime
) -> dict[str, datetime]:
    """The pauses hosts asked for (429/503 with Retry-After), this run's added, the ones
    over dropped: a pause holds across runs, link checks and image fetches alike.

    A pause is kept under the host name it was asked under and under the server
    that name led to, so that in later runs every spelling of that server
    (`127.1`, `localhost`...) waits too, once the checker has looked it up."""
    kept = {host: until for host, until in pauses.items() if until > now}
    asked = [(a.host, a.retry_after) for a in result.attempts if a.status in (429, 503)]
    asked += [(host_of(url), s) for url, s in result.deferred.items()]
    for host, seconds in asked:
        if seconds:
            until = now + timedelta(seconds=seconds)
            for key in {host, result.servers.get(host, host)}:
                kept[key] = max(kept.get(key, until), until)
    return kept


def pauses_left(pauses: Mapping[str, datetime], now: datetime) -> dict[str, float]:
    """Host name or server → seconds its pause has still to run at `now` (the ones over
    left out): what the checker leaves alone, whatever name a URL reaches it by."""
    return {key: (until - now).total_seconds() for key, until in pauses.items() if until > now}


def is_paused(url: str, pauses: Mapping[str, datetime], now: datetime) -> bool:
    try:
        host = host_of(url)
    except ValueError:
        return False
    return pauses.get(host, now) > now


def is_suspect(original: str, final: str) -> bool:
    """A redirect from an article to its site's front page or a much shorter section path."""
    if original == final:
        return False
    before, after = urlsplit(original), urlsplit(final)
    old_path = before.path.rstrip("/")
    new_path = after.path.rstrip("/")
    if not old_path:
        return False  # the original was a front page itself
    if not new_path:
        return True
    old_parts = [p for p in old_path.split("/") if p]
    new_parts = [p for p in new_path.split("/") if p]
    return len(new_parts) < len(old_parts) and len(new_path) * 2 <= len(old_path)


def classify(attempt: Attempt) -> Outcome:
    """The outcome of one check, before any confirmation over time."""
    if attempt.failure is Failure.BLOCKED or attempt.failure is Failure.INVALID:
        return Outcome.BLOCKED
    status = attempt.status
    if status is not None and (200 <= status < 300 or status == 304):
        if attempt.final_url and is_suspect(attempt.url, attempt.final_url):
            return Outcome.SUSPECT
        return Outcome.ALIVE
    if status in DEAD_CODES or attempt.failure in DEAD_FAILURES:
        return Outcome.DEAD
    return Outcome.UNKNOWN


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), at most an hour."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdecimal():
        return min(float(text), MAX_RETRY_AFTER)
    from email.utils import parsedate_to_datetime  # here: rare, and 5 ms to import

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER)


def network_down(attempts: Sequence[Attempt], min_hosts: int = 3, share: float = 0.8) -> bool:
    """Whether most hosts of a run failed the same way: the fault is our network, not theirs.

    Then nothing may be declared dead, or one outage would empty every feed.
    """
    by_host: dict[str, set[Failure | None]] = {}
    for attempt in attempts:
        if attempt.failure not in (Failure.BLOCKED, Failure.INVALID):
            by_host.setdefault(attempt.host, set()).add(attempt.failure)
    if len(by_host) < min_hosts:
        return False
    uniform = Counter(
        next(iter(kinds)) for kinds in by_host.values() if len(kinds) == 1 and None not in kinds
    )
    network_kinds = (Failure.DNS, Failure.REFUSED, Failure.UNREACHABLE, Failure.TIMEOUT)
    worst = max((uniform[k] for k in network_kinds), default=0)
    return worst >= share * len(by_host)


# -- the stored state of a URL ------------------------------------------------------------


class Policy(msgspec.Struct, frozen=True):
    recheck_hours: float = 24
    dead_after: int = 3
    dead_min_hours: float = 48
    unknown_retry_hours: float = 1
    dead_recheck_hours: float = 24 * 7


class LinkState(msgspec.Struct, frozen=True):
    url: str
    status: Outcome
    """The verdict feeds see: it only turns `dead` once confirmed."""
    code: int | None = None
    final_url: str | None = None
    hops: tuple[Hop, ...] = ()
    permanent: bool = False
    etag: str | None = None
    last_modified: str | None = None
    first_checked: datetime | None = None
    last_checked: datetime | None = None
    next_check: datetime | None = None
    failures: int = 0
    """Consecutive checks that said dead (unknowns neither count nor reset)."""
    failing_since: datetime | None = None
    unknown_streak: int = 0
    last_error: str | None = None
    history: tuple[tuple[str, str, int | None], ...] = ()
    """Recent checks: (time, outcome seen, status), newest last."""


HISTORY = 10


def _spread(url: str, hours: float) -> timedelta:
    """A stable jitter of up to ±10% of `hours` per URL, so rechecks spread out."""
    digest = int.from_bytes(hashlib.blake2b(url.encode(), digest_size=4).digest(), "big")
    return timedelta(hours=hours * (0.9 + 0.2 * digest / 0xFFFFFFFF))


def advance(
    previous: LinkState | None,
    attempt: Attempt,
    now: datetime,
    policy: Policy,
    network_is_down: bool = False,
) -> LinkState:
    """The state of a URL after `attempt`. Transient failures never become a final verdict."""
    seen = classify(attempt)
    if network_is_down and seen is Outcome.DEAD and attempt.failure is not None:
        seen = Outcome.UNKNOWN  # our outage, not theirs
    base = previous or LinkState(attempt.url, Outcome.UNKNOWN, first_checked=now)
    history = (*base.history, (now.isoformat(timespec="seconds"), seen.value, attempt.status))
    state = structs.replace(
        base,
        code=attempt.status,
        last_checked=now,
        first_checked=base.first_checked or now,
        last_error=attempt.detail or None,
        history=history[-HISTORY:],
    )
    if seen in (Outcome.ALIVE, Outcome.SUSPECT):
        return structs.replace(
            state,
            status=seen,
            final_url=attempt.final_url,
            hops=attempt.hops,
            permanent=attempt.permanent,
            etag=attempt.etag or (base.etag if attempt.status == 304 else None),
            last_modified=attempt.last_modified
            or (base.last_modified if attempt.status == 304 else None),
            failures=0,
            failing_since=None,
            unknown_streak=0,
            next_check=now + _spread(attempt.url, policy.recheck_hours),
        )
    if seen is Outcome.BLOCKED:
        return structs.replace(
            state,
            status=Outcome.BLOCKED,
            next_check=now + _spread(attempt.url, policy.dead_recheck_hours),
        )
    if seen is Outcome.DEAD:
        failures = base.failures + 1
        since = base.failing_since or now
        confirmed = failures >= policy.dead_after and now - since >= timedelta(
            hours=policy.dead_min_hours
        )
        if confirmed:
            wait = policy.dead_recheck_hours
        else:  # spread the confirming checks over dead_min_hours
            wait = policy.dead_min_hours / max(policy.dead_after - 1, 1)
        return structs.replace(
            state,
            status=Outcome.DEAD if confirmed or base.status is Outcome.DEAD else base.status,
            final_url=attempt.final_url,
            hops=attempt.hops,
            failures=failures,
            failing_since=since,
            unknown_streak=0,
            next_check=now + _spread(attempt.url, wait),
        )
    streak = base.unknown_streak + 1
    wait = min(policy.unknown_retry_hours * 2 ** (streak - 1), policy.recheck_hours)
    if attempt.retry_after is not None:
        wait = max(wait, attempt.retry_after / 3600)
    return structs.replace(
        state, unknown_streak=streak, next_check=now + _spread(attempt.url, wait)
    )


# -- what a verdict does to an entry ----------------------------------------------------------


class LinkRules(msgspec.Struct, frozen=True):
    on_dead: str = "fallback"
    """fallback | drop | keep"""
    follow_permanent: bool = True


DEFAULT_LINK_RULES = LinkRules()


def effective_link(
    original: str | None,
    web: str | None,
    states: Mapping[str, LinkState],
    rules: LinkRules,
) -> str | None:
    """The link an entry shows, given what is known of its URLs; None: the entry leaves the feeds.

    Only a confirmed `dead` changes anything: `fallback` swaps a dead
    `originalUrl` for a `webUrl` not known dead and drops the entry when every
    URL is dead; `drop` drops it when `originalUrl` is dead; `keep` only
    records. A permanent redirect (301/308 all the way) may update the link.
    """

    def dead(url: str | None) -> bool:
        state = states.get(url) if url else None
        return state is not None and state.status is Outcome.DEAD

    chosen = original or web
    if chosen is None:
        return None
    if rules.on_dead == "drop" and original and dead(original):
        return None
    if rules.on_dead == "fallback":
        urls = [u for u in (original, web) if u]
        if all(dead(u) for u in urls):
            return None
        if dead(chosen):
            chosen = next(u for u in urls if not dead(u))
    state = states.get(chosen)
    if (
        rules.follow_permanent
        and state is not None
        and state.permanent
        and state.status is Outcome.ALIVE
        and state.final_url
    ):
        return state.final_url
    return chosen


def state_to_json(state: LinkState) -> str:
    data = {
        "status": state.status.value,
        "code": state.code,
        "final_url": state.final_url,
        "hops": [[h.url, h.status] for h in state.hops],
        "permanent": state.permanent,
        "etag": state.etag,
        "last_modified": state.last_modified,
        "first_checked": _iso(state.first_checked),
        "last_checked": _iso(state.last_checked),
        "next_check": _iso(state.next_check),
        "failures": state.failures,
        "failing_since": _iso(state.failing_since),
        "unknown_streak": state.unknown_streak,
        "last_error": state.last_error,
        "history": [list(h) for h in state.history],
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def state_from_json(url: str, text: str) -> LinkState:
    data = json.loads(text)
    return LinkState(
        url=url,
        status=Outcome(data["status"]),
        code=data["code"],
        final_url=data["final_url"],
        hops=tuple(Hop(u, s) for u, s in data["hops"]),
        permanent=data["permanent"],
        etag=data["etag"],
        last_modified=data["last_modified"],
        first_checked=_moment(data["first_checked"]),
        last_checked=_moment(data["last_checked"]),
        next_check=_moment(data["next_check"]),
        failures=data["failures"],
        failing_since=_moment(data["failing_since"]),
        unknown_streak=data["unknown_streak"],
        last_error=data["last_error"],
        history=tuple((t, o, c) for t, o, c in data["history"]),
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
