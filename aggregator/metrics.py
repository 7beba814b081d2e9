"""Prometheus metrics of the service (prometheus-client stays inside this module)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from aggregator.status import LEADER, ClusterStatus


class Metrics:
    """Every metric the service exports, in a registry of its own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.scans = Counter(
            "aggregator_scans", "Scans of the seed directory, by outcome.", ["outcome"], registry=r
        )
        self.scan_seconds = Histogram(
            "aggregator_scan_duration_seconds",
            "Time of one scan, with the rendering it led to.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.seeds = Gauge("aggregator_seeds", "Seed files known.", registry=r)
        self.seeds_rejected = Gauge(
            "aggregator_seeds_rejected", "Seed files whose current content is rejected.", registry=r
        )
        self.articles = Gauge("aggregator_articles", "Articles (entries) known.", registry=r)
        self.topics = Gauge("aggregator_topics", "Topics with a feed.", registry=r)
        self.files_written = Counter(
            "aggregator_files_written", "Files written to the output directory.", registry=r
        )
        self.links_checked = Counter(
            "aggregator_links_checked",
            "URLs checked, by the verdict after the check.",
            ["verdict"],
            registry=r,
        )
        self.http_requests = Counter(
            "aggregator_http_requests", "HTTP requests answered, by status.", ["status"], registry=r
        )
        self._by_status: dict[int, Counter] = {}

    def follow_cluster(self, status: Callable[[], ClusterStatus]) -> None:
        """Export this instance's place among several on a shared state, read at each scrape."""
        r = self.registry
        gauges: dict[str, tuple[str, Callable[[ClusterStatus], float | bool]]] = {
            "aggregator_cluster_leader": (
                "1 while this instance leads, else 0.",
                lambda c: c.role == LEADER,
            ),
            "aggregator_cluster_term": (
                "The latest leader term this instance saw.",
                lambda c: c.term,
            ),
            "aggregator_cluster_behind": (
                "Published changes not mirrored yet.",
                lambda c: c.behind,
            ),
            "aggregator_cluster_lag_seconds": (
                "Age of the oldest published change not mirrored yet.",
                lambda c: c.lag_seconds,
            ),
            "aggregator_cluster_database_up": (
                "1 while the shared state answers, else 0.",
                lambda c: c.database == "ok",
            ),
        }
        for name, (about, read) in gauges.items():
            Gauge(name, about, registry=r).set_function(_reading(status, read))

    def request(self, status: int, count: int = 1) -> None:
        """`count` more requests answered with `status`."""
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.http_requests.labels(str(status))
        child.inc(count)

    def exposition(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


def _reading(
    status: Callable[[], ClusterStatus], read: Callable[[ClusterStatus], float | bool]
) -> Callable[[], float]:
    return lambda: float(read(status()))
