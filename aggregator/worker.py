"""What parse worker processes run: read one seed and prepare its stored record.

Kept apart, with light imports (YAML, the parser, the record helpers; not the
config, feedgen, the HTTP server or sqlite3), because workers start from a fork
server that imports only this module: each stays small, and none inherits a
copy of the service's memory or threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import select
import signal
import threading
from collections.abc import Sequence

from aggregator import yamlsafe
from aggregator.model import LoadedSeed
from aggregator.plan import to_record
from aggregator.scan import SeedFile, read_seed


def load_seed(file: SeedFile, max_bytes: int) -> LoadedSeed:
    """Read, parse and prepare one seed for the state store."""
    result = read_seed(file, max_bytes)
    record = to_record(result.article) if result.article is not None else None
    return LoadedSeed(result.source, result.digest, record, result.error, result.warnings)


def load_batch(files: Sequence[SeedFile], max_bytes: int) -> list[LoadedSeed]:
    """`load_seed` for each file, in order, with rapidyaml's error output hidden once for
    the lot (`yamlsafe.parse_errors_hidden`): what a worker is given at a time."""
    with yamlsafe.parse_errors_hidden():
        return [load_seed(file, max_bytes) for file in files]


PR_SET_PDEATHSIG = 1
"""prctl(2): the signal a process gets when the thread that started it ends."""
POLL_SECONDS = 1.0
"""How often a worker looks for its service where pidfd_open(2) is not available."""


def die_with_parent() -> None:
    """Have the kernel send this process SIGKILL when its parent ends (Linux; else nothing).

    The fork server preloads this module's sibling `aggregator.forkserver`, which
    calls this: the service starts the fork server, so `kill -9` of the service
    takes the fork server with it instead of leaving it, and its memory, behind.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


YOUNG_OBJECTS = 10_000
"""A worker's cycle collector looks at its youngest objects after this many allocations
(Python's default: 700). A seed makes a few hundred short-lived objects and no cycles."""


def start_worker(pid: int) -> None:
    """Worker initializer: watch the service (`watch_service`), read the front matter of
    the plain subset with rapidyaml (`yamlsafe.read_fast_here`; nothing else in a worker
    writes to standard error), and spare the cycle collector what the worker inherited
    (moved out of its reach: `gc.freeze`) and most of its passes over the young."""
    watch_service(pid)
    yamlsafe.read_fast_here()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])


def watch_service(pid: int) -> None:
    """Worker initializer: end this worker as soon as process `pid` (the service) ends.

    A worker's parent is the fork server, not the service, so a parent-death
    signal alone is not enough, and a worker waiting for work would otherwise
    wait for ever once the service is killed (`kill -9`, the OOM killer): a
    thread waits on the service's pidfd (or polls it) and ends the process.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)  # the service is gone already
    except (OSError, AttributeError):
        threading.Thread(target=_poll, args=(pid,), name="watch-service", daemon=True).start()
        return
    threading.Thread(target=_wait, args=(fd,), name="watch-service", daemon=True).start()


def _wait(fd: int) -> None:
    select.select([fd], [], [])  # a pidfd becomes readable when its process ends
    os._exit(1)


def _poll(pid: int) -> None:
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass  # it exists
        threading.Event().wait(POLL_SECONDS)
