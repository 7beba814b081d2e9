"""Pure link decisions: SSRF address rules, confirmation over time, outages."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.links import (
    Attempt,
    Failure,
    LinkState,
    Outcome,
    Policy,
    RunResult,
    address_allowed,
    advance,
    host_pauses,
    is_suspect,
    network_down,
    pauses_left,
    politeness_key,
    retry_after,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "0.0.0.0",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "::127.0.0.1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "ff02::1",
    ],
)
def test_non_public_addresses_are_refused_in_every_spelling(address: str) -> None:
    assert not address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(ipaddress.ip_address(address))


def test_allow_networks_open_chosen_ranges_only() -> None:
    allow = [ipaddress.ip_network("10.20.0.0/16")]
    assert address_allowed(ipaddress.ip_address("10.20.3.4"), allow)
    assert not address_allowed(ipaddress.ip_address("10.21.3.4"), allow)
    assert address_allowed(ipaddress.ip_address("::ffff:10.20.3.4"), allow)


def test_every_spelling_of_a_server_has_one_politeness_key() -> None:
    def key(name: str, *addresses: str, allow: tuple[str, ...] = ("127.0.0.0/8",)) -> str:
        nets = [ipaddress.ip_network(n) for n in allow]
        return politeness_key(name, [ipaddress.ip_address(a) for a in addresses], nets)

    assert key("127.1", "127.0.0.1") == key("localhost", "::1", "127.0.0.1") == "127.0.0.1"
    assert key("::ffff:127.0.0.1", "::ffff:127.0.0.1") == "127.0.0.1"
    # DNS may answer in any order: the key does not follow it.
    assert key("a.example", "8.8.8.8", "1.1.1.1") == key("b.example", "1.1.1.1", "8.8.8.8")
    assert key("intranet.example", "10.0.0.1") == "intranet.example"  # never connected to


def test_a_url_is_dead_only_after_consecutive_failures_spread_over_time() -> None:
    policy = Policy(dead_after=3, dead_min_hours=48)
    state = advance(None, Attempt("https://a.example/x", 200), T0, policy)
    assert state.status is Outcome.ALIVE
    gone = Attempt("https://a.example/x", 404)
    state = advance(state, gone, T0 + timedelta(hours=1), policy)
    state = advance(state, gone, T0 + timedelta(hours=2), policy)
    state = advance(state, gone, T0 + timedelta(hours=3), policy)
    assert state.status is Outcome.ALIVE and state.failures == 3  # too soon
    timeout = Attempt("https://a.example/x", failure=Failure.TIMEOUT)
    state = advance(state, timeout, T0 + timedelta(hours=30), policy)
    assert state.failures == 3  # an unknown neither counts nor resets
    state = advance(state, gone, T0 + timedelta(hours=50), policy)
    assert state.status is Outcome.DEAD
    back = advance(state, Attempt("https://a.example/x", 200), T0 + timedelta(hours=60), policy)
    assert back.status is Outcome.ALIVE and back.failures == 0


def test_unknown_never_becomes_a_verdict_and_backs_off() -> None:
    policy = Policy(unknown_retry_hours=1, recheck_hours=24)
    state: LinkState | None = None
    waits = []
    for n in range(6):
        now = T0 + timedelta(hours=n)
        state = advance(state, Attempt("https://a.example/y", 503), now, policy)
        assert state.status is Outcome.UNKNOWN
        assert state.next_check is not None
        waits.append((state.next_check - now).total_seconds() / 3600)
    assert waits == sorted(waits) and waits[-1] <= 24 * 1.1


def test_an_outage_of_our_own_network_declares_nothing_dead() -> None:
    attempts = [Attempt(f"https://site{n}.example/a", failure=Failure.DNS) for n in range(10)]
    assert network_down(attempts)
    state = advance(None, attempts[0], T0, Policy(dead_after=1, dead_min_hours=0), True)
    assert state.status is Outcome.UNKNOWN and state.failures == 0
    mixed = attempts[:2] + [Attempt(f"https://ok{n}.example/", 200) for n in range(8)]
    assert not network_down(mixed)


def test_suspect_redirects_and_retry_after() -> None:
    assert is_suspect("https://n.example/2024/05/some-long-story", "https://n.example/")
    assert is_suspect(
        "https://n.example/politics/2024/05/long-story-slug", "https://n.example/politics"
    )
    assert not is_suspect("http://n.example/a/story", "https://n.example/a/story")
    assert not is_suspect("https://n.example/a/story", "https://n.example/a/story-renamed")
    assert retry_after("120", T0) == 120
    assert retry_after("999999", T0) == 3600
    assert retry_after("Sun, 01 Nov 2026 00:01:00 GMT", T0) == 60
    assert retry_after("soon", T0) is None


def test_a_pause_is_kept_under_the_name_asked_and_the_server_it_led_to() -> None:
    busy = Attempt("http://localhost:8080/a", status=429, retry_after=120)
    result = RunResult([busy], {"http://127.1:8080/b": 90}, {"localhost": "127.0.0.1"})
    kept = host_pauses({"gone.example": T0 - timedelta(seconds=1)}, result, T0)
    assert kept == {
        "localhost": T0 + timedelta(seconds=120),
        "127.0.0.1": T0 + timedelta(seconds=120),  # the longer of the two asked
        "127.1": T0 + timedelta(seconds=90),
    }
    assert pauses_left(kept, T0 + timedelta(seconds=100)) == {"localhost": 20, "127.0.0.1": 20}
