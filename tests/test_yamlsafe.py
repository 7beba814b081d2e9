"""The one YAML loader: safe, the C one when there is one, the same answers as PyYAML's."""

from __future__ import annotations

import contextlib

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from aggregator import yamlsafe
from aggregator.parse import SeedLoader


def test_the_loader_is_the_c_one_when_pyyaml_has_it() -> None:
    assert yamlsafe.SafeLoader is getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    assert issubclass(SeedLoader, yamlsafe.SafeLoader)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("# only a comment\n", None),
        ("a: 1\nb: [x, 2.5, true, null]\n", {"a": 1, "b": ["x", 2.5, True, None]}),
        (b"title: caf\xc3\xa9\n", {"title": "café"}),
        ("{}", {}),
        ("- 1\n- two\n", [1, "two"]),
        ("'quoted: text'", "quoted: text"),
        ("0x10", 16),
        ("when: 2024-05-01", {"when": yaml.safe_load("2024-05-01")}),
    ],
)
def test_load_reads_yaml(text: str | bytes, expected: object) -> None:
    assert yamlsafe.load(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['true']",
        "!!python/name:os.system",
        "a: !!python/object:builtins.object {}",
        "a: [never closed",
        "a: 'unterminated\n",
        "a: 1\n a: 2\n",
    ],
)
def test_load_refuses_what_is_not_safe_yaml(text: str) -> None:
    with pytest.raises(yamlsafe.YAMLError):
        yamlsafe.load(text)


def test_a_subclass_passed_in_keeps_its_own_constructors() -> None:
    assert yamlsafe.load("when: 2024-05-01", SeedLoader) == {"when": "2024-05-01"}
    assert yamlsafe.load("when: 2024-05-01") != {"when": "2024-05-01"}


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")))
"""Text PyYAML writes and reads back as it was (it folds line breaks and controls)."""
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@given(_values)
def test_load_reads_back_what_pyyaml_writes(value: object) -> None:
    assert yamlsafe.load(yaml.safe_dump(value, allow_unicode=True)) == value


@given(st.text(max_size=60))
def test_any_text_loads_or_is_a_yaml_error(text: str) -> None:
    """Callers catch `YAMLError` only: nothing else may come out of short text."""
    with contextlib.suppress(yamlsafe.YAMLError):
        yamlsafe.load(text)
