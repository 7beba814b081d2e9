"""What only the PostgreSQL store has: its migration lock, its connection errors, the URL
it shows. (Everything else is the storage contract, tests/test_store_contract.py.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.errors import StateError
from aggregator.store import SqliteStore, StateStore, is_postgres_url, open_store
from aggregator.store.postgres import SCHEMA_VERSION, PostgresStore, redact
from tests.postgres import SCRATCH


@pytest.fixture(scope="module", autouse=True)
def _postgres_scratch() -> Iterator[None]:
    """Drop the scratch PostgreSQL database once this module's tests are done."""
    yield
    SCRATCH.drop()


def test_two_stores_opening_a_new_database_at_once_migrate_it_once() -> None:
    url = SCRATCH.schema_url()
    start = threading.Barrier(4)
    opened: list[StateStore] = []
    failed: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            opened.append(PostgresStore(url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failed == []
        assert len(opened) == 4
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
            assert [row[0] for row in rows] == list(range(1, SCHEMA_VERSION + 1))
        for store in opened:
            assert store.counts().seeds == 0
    finally:
        for store in opened:
            store.close()


def test_a_database_from_a_newer_version_is_refused() -> None:
    url = SCRATCH.schema_url()
    PostgresStore(url).close()
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    newer = rf"newer aggregator \(schema {SCHEMA_VERSION + 1}, this one knows {SCHEMA_VERSION}\)"
    with pytest.raises(StateError, match=newer):
        PostgresStore(url)


def test_an_unreachable_database_is_one_line_naming_the_url_without_its_password() -> None:
    url = "postgresql://aggregator:s3cret-word@127.0.0.1:1/state"
    with pytest.raises(StateError) as caught:
        open_store(url)
    message = str(caught.value)
    assert "s3cret-word" not in message
    assert message.startswith(
        "postgresql://aggregator:***@127.0.0.1:1/state: cannot connect to the state database ("
    )
    assert "\n" not in message


def test_open_store_takes_a_postgres_url() -> None:
    url = SCRATCH.schema_url()
    store = open_store(url)
    try:
        assert isinstance(store, PostgresStore)
        assert store.path == url
    finally:
        store.close()
    other = open_store(url.replace("postgresql://", "postgres://", 1))
    try:
        assert isinstance(other, PostgresStore)
    finally:
        other.close()


def test_a_query_error_is_a_state_error_and_the_store_goes_on() -> None:
    store = PostgresStore(SCRATCH.schema_url())
    try:
        with pytest.raises(StateError, match="state database error"), store._db.writing() as db:
            db.execute("SELECT * FROM no_such_table")
        assert store.counts().seeds == 0
    finally:
        store.close()


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("postgresql://u@h/db", True),
        ("postgres://u:p@h:5432/db", True),
        ("state/aggregator.sqlite3", False),
        ("/var/lib/postgresql://x", False),
        ("sqlite://x", False),
        ("", False),
    ],
)
def test_which_locations_are_postgres_urls(location: str, expected: bool) -> None:
    assert is_postgres_url(location) is expected


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u:pw@h:5433/db?sslmode=require",
            "postgresql://u:***@h:5433/db?sslmode=require",
        ),
        ("postgres://:pw@h/db", "postgres://:***@h/db"),
        ("postgresql:///db", "postgresql:///db"),
        # libpq takes the password as a parameter too
        ("postgresql://h/db?password=pw&user=u", "postgresql://h/db?password=***&user=u"),
        (
            "postgresql://u@h/db?sslmode=require&PASSWORD=pw",
            "postgresql://u@h/db?sslmode=require&PASSWORD=***",
        ),
        ("postgresql://u:a@h/db?password=b", "postgresql://u:***@h/db?password=***"),
    ],
)
def test_redact_hides_the_password_only(url: str, shown: str) -> None:
    assert redact(url) == shown


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~%", min_size=1, max_size=20),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12),
)
def test_redact_never_shows_a_password(password: str, user: str) -> None:
    shown = redact(f"postgresql://{user}:{password}@db.example:5432/state")
    assert shown == f"postgresql://{user}:***@db.example:5432/state"
    shown = redact(f"postgresql://db.example/state?user={user}&password={password}")
    assert shown == f"postgresql://db.example/state?user={user}&password=***"


def test_a_file_path_still_opens_sqlite(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.sqlite3")
    try:
        assert isinstance(store, SqliteStore)
    finally:
        store.close()
