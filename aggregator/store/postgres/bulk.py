"""Many short rows in one statement: each column sent as one text array, which the server
`unnest`s back into rows. One statement and one round trip for any number of rows, where
`executemany` sends one statement per row; for narrow rows of short text (topic spellings,
feed memberships, URLs) that per-row cost dominated."""

from __future__ import annotations

from collections.abc import Sequence

from aggregator.store.postgres.db import Connection


def insert_text(db: Connection, into: str, rows: Sequence[tuple[str, ...]], then: str = "") -> None:
    """`INSERT INTO {into} SELECT * FROM unnest(%s::text[], …) {then}` with `rows` (tuples of
    text, of `into`'s columns, in order); nothing when there are no rows. `then`: an ON
    CONFLICT DO NOTHING clause, if any (DO UPDATE cannot change a row twice in one
    statement)."""
    if not rows:
        return
    width = len(rows[0])
    arrays = ", ".join(["%s::text[]"] * width)
    columns = [[row[number] for row in rows] for number in range(width)]
    db.execute(f"INSERT INTO {into} SELECT * FROM unnest({arrays}) {then}", columns)
