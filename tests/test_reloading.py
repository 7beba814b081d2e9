"""What a new config means for the running service: the pure answers of `reloading`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.config import Config, config_from
from aggregator.reloading import (
    LINKS,
    NETWORK_JOBS,
    RESCAN,
    THUMBNAILS,
    Every,
    advertises_loopback,
    pending_restart,
    periodic_jobs,
    rescheduled,
    restart_only_changes,
)

RESTART_ONLY = [
    "seeds.dir",
    "output.dir",
    "state.path",
    "state.url",
    "site.public_url",
    "server.host",
    "server.port",
]
PENDING = ["server.enabled", "scan.watch", "cluster.lease", "cluster.retry", "cluster.catch_up"]


def config(**flat: Any) -> Config:
    """A config from dotted settings (`server__port=9000` for `server.port`)."""
    data: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, name = key.split("__")
        data.setdefault(section, {})[name] = value
    return config_from(data)


def value(config: Config, dotted: str) -> object:
    section, name = dotted.split(".")
    found = getattr(getattr(config, section), name)
    return found.resolve() if isinstance(found, Path) else found


@pytest.mark.parametrize(
    ("old", "new", "refused", "pending"),
    [
        ({}, {}, [], []),
        ({}, {"feeds__max_entries": 5, "logging__level": "debug"}, [], []),
        ({}, {"seeds__dir": "./seeds"}, [], []),  # the same directory, spelt otherwise
        ({}, {"seeds__dir": "articles"}, ["seeds.dir"], []),
        ({}, {"output__dir": "www"}, ["output.dir"], []),
        ({}, {"state__path": "state/other.sqlite3"}, ["state.path"], []),
        ({}, {"site__public_url": "https://feeds.example/"}, ["site.public_url"], []),
        # An unset public URL is the server's address: it moves with the port.
        ({}, {"server__port": 9000}, ["site.public_url", "server.port"], []),
        (
            {"site__public_url": "https://feeds.example/"},
            {"site__public_url": "https://feeds.example/", "server__host": "0.0.0.0"},
            ["server.host"],
            [],
        ),
        ({}, {"server__enabled": False}, [], ["server.enabled"]),
        ({}, {"scan__watch": True}, [], ["scan.watch"]),
        ({}, {"state__url": "postgresql://feeds@db.example/agg"}, ["state.url"], []),
        ({}, {"cluster__lease": 10}, [], ["cluster.lease"]),
        (
            {},
            {"scan__watch": True, "server__enabled": False, "output__dir": "www"},
            ["output.dir"],
            ["server.enabled", "scan.watch"],
        ),
    ],
)
def test_what_a_reload_refuses_and_what_waits_for_a_restart(
    old: dict[str, Any], new: dict[str, Any], refused: list[str], pending: list[str]
) -> None:
    before, after = config(**old), config(**new)
    assert restart_only_changes(before, after) == refused
    assert restart_only_changes(after, before) == refused
    assert pending_restart(before, after) == pending


@pytest.mark.parametrize(
    ("settings", "loopback"),
    [
        ({}, True),
        ({"server__host": "0.0.0.0"}, True),  # listening everywhere
        ({"server__host": "::1"}, True),
        ({"server__host": "localhost"}, True),
        ({"server__host": "192.0.2.7"}, False),
        ({"site__public_url": "https://feeds.example/"}, False),
        ({"site__public_url": "http://127.0.0.1:8080/"}, True),  # spelt out, still loopback
        ({"site__public_url": "http://127.0.0.1:9999/"}, False),  # a proxy in front, say
    ],
)
def test_the_public_url_advertises_loopback_only_when_it_is_the_servers_own(
    settings: dict[str, Any], loopback: bool
) -> None:
    assert advertises_loopback(config(**settings)) is loopback


def test_periodic_jobs_run_the_rescan_first_and_jitter_network_jobs_by_a_tenth() -> None:
    jobs = periodic_jobs(
        config(scan__interval=30, scan__jitter=1, links__interval=50, thumbnails__interval=3600)
    )
    assert list(jobs) == [RESCAN, *NETWORK_JOBS] == [RESCAN, LINKS, THUMBNAILS]
    assert jobs == {
        RESCAN: Every(30, 1),
        LINKS: Every(50, 5),
        THUMBNAILS: Every(3600, 30),  # at most 30 s
    }


@pytest.mark.parametrize(
    ("new", "jobs"),
    [
        ({}, []),
        ({"feeds__max_entries": 5}, []),
        ({"scan__interval": 30}, [RESCAN]),
        ({"scan__jitter": 0}, [RESCAN]),
        ({"scan__watch": True}, [RESCAN]),  # anything in `scan`, as the service always did
        ({"links__interval": 60}, [LINKS]),
        ({"links__enabled": False}, []),
        ({"thumbnails__interval": 60, "scan__interval": 5}, [RESCAN, THUMBNAILS]),
    ],
)
def test_a_reload_schedules_again_only_the_jobs_whose_schedule_changed(
    new: dict[str, Any], jobs: list[str]
) -> None:
    after = config(**new)
    again = rescheduled(config(), after)
    assert list(again) == jobs
    assert all(again[job] == periodic_jobs(after)[job] for job in jobs)


_VARIANTS: dict[str, list[object]] = {
    "seeds__dir": ["seeds", "./seeds", "articles"],
    "output__dir": ["public", "www"],
    "state__path": ["state/aggregator.sqlite3", "state/other.sqlite3"],
    "state__url": [None, "postgresql://feeds@db.example/aggregator"],
    "cluster__lease": [5, 10],
    "cluster__retry": [1, 0.5],
    "cluster__catch_up": [2, 5],
    "site__public_url": [None, "https://feeds.example/", "https://other.example/"],
    "server__host": ["127.0.0.1", "0.0.0.0", "192.0.2.7"],
    "server__port": [8080, 9000],
    "server__enabled": [True, False],
    "scan__watch": [False, True],
    "scan__interval": [60, 30],
    "links__interval": [600, 60],
    "thumbnails__interval": [120, 30],
    "feeds__max_entries": [50, 5],
}
configs = st.fixed_dictionaries({key: st.sampled_from(v) for key, v in _VARIANTS.items()}).map(
    lambda flat: config(**flat)
)


@given(configs, configs)
def test_a_reload_names_exactly_the_settings_that_differ(old: Config, new: Config) -> None:
    refused, pending = restart_only_changes(old, new), pending_restart(old, new)
    assert refused == [k for k in RESTART_ONLY if value(old, k) != value(new, k)]
    assert pending == [k for k in PENDING if value(old, k) != value(new, k)]
    assert restart_only_changes(new, old) == refused and pending_restart(new, old) == pending
    assert restart_only_changes(old, old) == [] == pending_restart(old, old)
    assert rescheduled(old, old) == {}
    again = rescheduled(old, new)
    assert list(again) == [job for job in periodic_jobs(new) if job in again]
    for job, every in periodic_jobs(new).items():
        if every.seconds != periodic_jobs(old)[job].seconds:
            assert again[job] == every
