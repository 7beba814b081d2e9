"""A real feed reader (the `reader` library) subscribed to a served topic feed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from reader import make_reader

from tests.conftest import seed_text
from tests.service import RunningService


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    svc = RunningService(tmp_path)
    (svc.seeds / "one.md").write_text(
        seed_text(title="One", topics=["AI"], originalUrl="https://r.example/1")
    )
    (svc.seeds / "two.md").write_text(
        seed_text(
            title="Two",
            topics=["AI"],
            originalUrl="https://r.example/2",
            publishedDateTime="2024-04-01T00:00:00Z",
        )
    )
    svc.start()
    with svc:
        yield svc


def test_a_reader_sees_new_modified_and_nothing_else(service: RunningService) -> None:
    reader = make_reader(":memory:")
    url = f"{service.base}/feeds/ai.atom"
    reader.add_feed(url)

    def update() -> tuple[int, int]:
        results = list(reader.update_feeds_iter(feed=url, scheduled=False))
        value = results[0].value
        if value is None:  # not modified: nothing transferred
            return (0, 0)
        assert not isinstance(value, Exception), value
        return (value.new, value.modified)

    assert update() == (2, 0)
    assert update() == (0, 0)  # answered 304
    first_ids = {e.title: e.id for e in reader.get_entries()}

    (service.seeds / "three.md").write_text(
        seed_text(title="Three", topics=["AI"], originalUrl="https://r.example/3")
    )
    service.wait_next_scan()
    assert update() == (1, 0)

    (service.seeds / "one.md").write_text(
        seed_text(
            title="One",
            topics=["AI"],
            originalUrl="https://r.example/1",
            excerpt="An edited excerpt.",
        )
    )
    service.wait_next_scan()
    assert update() == (0, 1)
    edited = reader.get_entry((url, first_ids["One"]))
    assert edited.summary == "An edited excerpt."
    assert {e.title: e.id for e in reader.get_entries()}["Two"] == first_ids["Two"]

    assert service.stop() == 0
    service.start()
    service.wait_next_scan()
    assert update() == (0, 0)  # a restart changes nothing a reader sees
    assert service.stop() == 0
