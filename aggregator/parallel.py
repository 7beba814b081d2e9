"""Work handed to worker processes, its results taken back in order (`in_order`).

A cold build keeps its parse workers for the refresh (`aggregator.refresh`) and
the render (`aggregator.publish`): each gives them independent jobs and writes
the results itself, in the jobs' order, while the workers work on the next ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # what runs without workers imports no pool
    from concurrent.futures import Executor, Future

Job = TypeVar("Job")
Result = TypeVar("Result")


def in_order(
    pool: Executor, work: Callable[[Job], Result], jobs: Iterable[Job], ahead: int
) -> Iterator[Result]:
    """`work` of each job in `pool`, yielded in the jobs' order, with at most `ahead` jobs
    given out at a time; what is still running when the caller stops is cancelled."""
    running: deque[Future[Result]] = deque()
    try:
        for job in jobs:
            running.append(pool.submit(work, job))
            if len(running) >= ahead:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
    finally:
        for future in running:
            future.cancel()
