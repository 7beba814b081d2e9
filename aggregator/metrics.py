"""Prometheus metrics of the service (prometheus-client stays inside this module)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest


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

    def request(self, status: int) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.http_requests.labels(str(status))
        child.inc()

    def exposition(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data
