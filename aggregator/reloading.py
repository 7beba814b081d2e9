"""What a config means for the running service (pure): which changes a reload
refuses, which it takes but that only a restart puts into effect, how often each
periodic job runs and which a reload schedules again, and whether the public URL is
the built-in server's own loopback address.

The daemon reads these answers and logs them; it decides nothing about the config
itself. Nothing here touches the file system beyond resolving paths, or logs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aggregator.config import Config, server_url
from aggregator.urls import host_of


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The settings that differ between `old` and `new` and that a reload cannot change,
    by their dotted names in a fixed order; empty when the reload may go ahead.

    Moving the seeds, output or state would make the service take every seed for
    gone (or write a second output beside the one served, holding no lock on it),
    and a new public URL rewrites every self link: those need a restart. Raises
    nothing (paths that do not exist resolve as they are).
    """
    pairs: list[tuple[str, object, object]] = [
        ("seeds.dir", old.seeds.dir.resolve(), new.seeds.dir.resolve()),
        ("output.dir", old.output.dir.resolve(), new.output.dir.resolve()),
        ("state.path", old.state.path.resolve(), new.state.path.resolve()),
        ("state.url", old.state.url, new.state.url),
        ("site.public_url", old.site.public_url, new.site.public_url),
        ("server.host", old.server.host, new.server.host),
        ("server.port", old.server.port, new.server.port),
    ]
    return [key for key, before, after in pairs if before != after]


def pending_restart(old: Config, new: Config) -> list[str]:
    """The settings that differ between `old` and `new` that a reload takes but that only
    change what the service does once it restarts (whether it serves, whether it watches
    the seed directory, how it takes part in leader elections), by their dotted names in
    a fixed order. Raises nothing."""
    pairs: list[tuple[str, object, object]] = [
        ("server.enabled", old.server.enabled, new.server.enabled),
        ("scan.watch", old.scan.watch, new.scan.watch),
        ("cluster.lease", old.cluster.lease, new.cluster.lease),
        ("cluster.retry", old.cluster.retry, new.cluster.retry),
        ("cluster.catch_up", old.cluster.catch_up, new.cluster.catch_up),
    ]
    return [key for key, before, after in pairs if before != after]


def advertises_loopback(config: Config) -> bool:
    """True when the public URL is the built-in server's own loopback address, as it is
    when `site.public_url` is not set and the server listens on loopback or everywhere.
    Raises nothing."""
    url = config.site.public_url
    if url != server_url(config.server.host, config.server.port):
        return False
    host = host_of(url)
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


RESCAN = "rescan"
LINKS = "links"
THUMBNAILS = "thumbnails"
NETWORK_JOBS = (LINKS, THUMBNAILS)
"""The periodic jobs that go out to other hosts, in the order they first run."""


@dataclass(frozen=True, slots=True)
class Every:
    """How often a periodic job runs: every `seconds`, plus up to `jitter` at random."""

    seconds: float
    jitter: float


def periodic_jobs(config: Config) -> dict[str, Every]:
    """How often each periodic job of the service runs under `config`, by job id: the
    rescan first, then the network jobs (their jitter: a tenth of the interval, at most
    30 s). Raises nothing."""
    links, thumbnails = config.links.interval, config.thumbnails.interval
    return {
        RESCAN: Every(config.scan.interval, config.scan.jitter),
        LINKS: Every(links, min(30.0, links / 10)),
        THUMBNAILS: Every(thumbnails, min(30.0, thumbnails / 10)),
    }


def rescheduled(old: Config, new: Config) -> dict[str, Every]:
    """The periodic jobs a reload from `old` to `new` schedules again, with their new
    schedule, in the order of `periodic_jobs`: the rescan when anything in the `scan`
    section changed, a network job when its interval did. Raises nothing."""
    before, after = periodic_jobs(old), periodic_jobs(new)
    return {
        job: every
        for job, every in after.items()
        if (old.scan != new.scan if job == RESCAN else every.seconds != before[job].seconds)
    }
