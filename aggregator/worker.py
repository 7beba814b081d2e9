"""What parse worker processes run: read one seed and prepare its stored record.

Kept apart, with light imports (YAML, the parser, the record helpers; no
pydantic, feedgen, uvicorn or sqlite3), because workers start from a fork
server that imports only this module: each stays small, and none inherits a
copy of the service's memory or threads.
"""

from __future__ import annotations

from aggregator.model import LoadedSeed
from aggregator.plan import to_record
from aggregator.scan import SeedFile, read_seed


def load_seed(file: SeedFile, max_bytes: int) -> LoadedSeed:
    """Read, parse and prepare one seed for the state store."""
    result = read_seed(file, max_bytes)
    record = to_record(result.article) if result.article is not None else None
    return LoadedSeed(result.source, result.digest, record, result.error, result.warnings)
