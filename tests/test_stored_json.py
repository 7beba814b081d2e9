"""The JSON the state stores (`model.dumps`, `model.loads`): json's text, written by orjson."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from aggregator.model import (
    Article,
    Image,
    Provider,
    Related,
    article_from_json,
    article_to_json,
    dumps,
    loads,
)
from aggregator.parse import parse_seed
from aggregator.plan import shown_hash

REAL_SEED = Path(__file__).parent.parent / "seeds" / "000_792b0d4a2dfad34b.txt"

TEXT = st.text(st.characters(exclude_categories=["Cs"]))  # any code point but a surrogate
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=30,
)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@given(VALUES)
def test_without_floats_dumps_writes_the_text_json_writes(value: object) -> None:
    assert dumps(value) == _json(value)
    assert loads(dumps(value)) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_is_written_as_the_same_number(number: float) -> None:
    read = loads(dumps([number]))[0]
    assert read == number and math.copysign(1, read) == math.copysign(1, number)


def test_every_character_but_a_surrogate_is_written_as_json_writes_it() -> None:
    characters = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(characters), 4096):
        chunk = characters[start : start + 4096]
        assert dumps(chunk) == _json(chunk)


def test_a_lone_surrogate_which_orjson_refuses_goes_through_json() -> None:
    value = {"source": "caf\udce9.md", "title": "x"}  # a file name that is not UTF-8
    assert dumps(value) == _json(value)
    assert loads(dumps(value)) == value


def test_an_article_comes_back_as_it_was_stored() -> None:
    article = Article(
        source="a.md",
        title='Ünïcode “quotes” \\ and "marks" 🚀',
        published=datetime(2026, 9, 13, 4, 58, 13, tzinfo=UTC),
        original_url="https://example.org/a?b=1",
        web_url=None,
        topics=("AI", "Données"),
        excerpt="line\u2028separator",
        provider=Provider("Wire", "example.org"),
        images=(Image("https://cdn.example.org/i.jpg", 640, None),),
        related=(
            Related(
                "Other",
                "https://example.net/b",
                Provider("Net", None),
                "x",
                datetime(2026, 9, 1, tzinfo=UTC),
                1e-7,
            ),
        ),
        quality=92.5,
        heat=1e16,
        is_published=True,
        category="news",
        kind="article",
        language="fr-CA",
    )
    assert article_from_json(article_to_json(article)) == article
    stored = article_to_json(article)
    assert json.loads(stored) == loads(stored)  # the standard library reads it the same


def test_the_hash_of_what_readers_see_is_the_one_states_hold() -> None:
    """Made from `dumps` now, it must stay what the ledgers of existing states hold (made
    from json.dumps): else every entry would look changed to them."""
    article = parse_seed(REAL_SEED.read_bytes(), "real.txt").article
    assert article is not None
    assert shown_hash(article) == "0dd9a8658d7e7d19ed218271a03064c9"
