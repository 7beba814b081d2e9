"""A scratch PostgreSQL database for the store tests: one database per test process, one
fresh schema per store.

The server is the one at AGGREGATOR_TEST_POSTGRES (default: 127.0.0.1:5432, user postgres,
database test). When it cannot be reached the PostgreSQL tests are skipped, unless
AGGREGATOR_REQUIRE_POSTGRES is set (CI sets it when a server runs): then they fail.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import quote

import psycopg
import pytest

SERVER = os.environ.get("AGGREGATOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRED = bool(os.environ.get("AGGREGATOR_REQUIRE_POSTGRES"))


class Scratch:
    """One database created on first use (`agg_<random>`) and dropped by `drop()`."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.problem: str | None = None

    def _server(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(SERVER, autocommit=True, connect_timeout=3)

    def database(self) -> str:
        """The URL of the scratch database (created on first use); skips the test (fails it
        when PostgreSQL is required) when the server cannot be reached."""
        if self.name is None and self.problem is None:
            name = f"agg_{secrets.token_hex(6)}"
            try:
                with self._server() as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                self.name = name
            except psycopg.Error as exc:
                self.problem = str(exc).strip().splitlines()[0]
        if self.name is None:
            message = f"PostgreSQL at {SERVER} cannot be reached ({self.problem})"
            if REQUIRED:
                pytest.fail(f"{message}, and AGGREGATOR_REQUIRE_POSTGRES is set")
            pytest.skip(message)
        return SERVER.rsplit("/", 1)[0] + f"/{self.name}"

    def usable(self) -> bool:
        """True when the scratch database can be had; False when the server cannot be
        reached and PostgreSQL is not required (when required: fails the test)."""
        try:
            self.database()
        except pytest.skip.Exception:
            return False
        return True

    def schema_url(self) -> str:
        """The URL of a fresh, empty schema of the scratch database (its search_path)."""
        url = self.database()
        schema = f"s_{secrets.token_hex(6)}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return f"{url}?options={quote(f'-csearch_path={schema}')}"

    def drop(self) -> None:
        """Drop the scratch database, if it was created."""
        if self.name is not None:
            with self._server() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.name = None


SCRATCH = Scratch()
