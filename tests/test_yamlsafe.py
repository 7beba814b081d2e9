"""The one YAML loader: safe, the C one when there is one, the same answers as PyYAML's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from aggregator import yamlsafe
from aggregator.parse import SeedLoader


def test_the_loader_is_the_c_one_when_pyyaml_has_it() -> None:
    assert issubclass(yamlsafe.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
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


# `load` builds the plain shape itself and hands the rest to PyYAML: every document must
# come out exactly as PyYAML's own safe loader makes it (the same values of the same types,
# or the same error), with the loader's own constructors (the seeds keep dates as text).

_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _reference(loader: type[yamlsafe.SafeLoader]) -> type[yaml.SafeLoader]:
    """PyYAML's own safe loader, untouched, with the constructors of `loader`."""
    return type("Reference", (_BASE,), {"yaml_constructors": loader.yaml_constructors})


def _outcome(load: Callable[[], object]) -> tuple[str, str]:
    """What a load gives: the exact value (types included, via repr), or the error."""
    try:
        value = load()
    except RecursionError:
        return ("RecursionError", "")
    except Exception as exc:  # noqa: BLE001 - whatever PyYAML raises, the same must come out
        return (type(exc).__name__, str(exc))
    return ("value", _shape(value))


def _shape(value: object) -> str:
    """repr, plus which collections are the same object (aliases share them in PyYAML)."""
    ids: dict[int, int] = {}

    def walk(item: object) -> str:
        if isinstance(item, dict | list | set):
            number = ids.setdefault(id(item), len(ids))
            if isinstance(item, dict):
                inner = ", ".join(f"{walk(k)}: {walk(v)}" for k, v in item.items())
            elif isinstance(item, set):
                inner = ", ".join(sorted(walk(v) for v in item))
            else:
                inner = ", ".join(walk(v) for v in item)
            return f"{type(item).__name__}#{number}({inner})"
        return f"{type(item).__name__}:{item!r}"

    try:
        return walk(value)
    except RecursionError:  # a recursive collection: compare its outer repr
        return f"recursive {type(value).__name__}"


def _same_as_pyyaml(text: str, loader: type[yamlsafe.SafeLoader]) -> None:
    ours = _outcome(lambda: yamlsafe.load(text, loader))
    theirs = _outcome(lambda: yaml.load(text, Loader=_reference(loader)))
    assert ours == theirs


_UNUSUAL = [
    "a: &x [1, 2]\nb: *x\n",
    "a: &x {k: v}\nb: *x\nc: *x\n",
    "&x [*x]",
    "&x {a: *x}",
    "a: &s text\nb: *s\n",
    "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n",
    "<<: [{a: 1}, {b: 2}]\nc: 3\n",
    "<<: 5\n",
    "=: value key\n",
    "? [a, b]\n: list key\n",
    "? {a: 1}\n: map key\n",
    "[1, 2]: flow list key\n",
    "a: !!binary aGVsbG8=\n",
    "a: !!binary '%%%'\n",
    "a: !!set {x, y}\n",
    "a: !!omap [a: 1, b: 2]\n",
    "a: !!pairs [a: 1, a: 2]\n",
    "a: !!omap {a: 1}\n",
    "a: !!str [x]\n",
    "a: !!map [x]\n",
    "a: !!seq {x: 1}\n",
    "a: !!int text\n",
    "a: !!float text\n",
    "a: !!bool maybe\n",
    "a: !!null text\n",
    "a: !!timestamp 2024-13-45\n",
    "a: !!str 12\n",
    "a: !!int '12'\n",
    "a: !!float '1_0.5'\n",
    "a: !custom x\n",
    "a: !!python/object:builtins.object {}\n",
    "a: !!python/tuple [1, 2]\n",
    "a: ! 12\n",
    "a: !<tag:yaml.org,2002:str> 12\n",
    "a: 1\na: 2\n",
    "1: int key\n1.5: float key\ntrue: bool key\n~: null key\n2024-01-01: date key\n",
    ".nan: x\n",
    "a: [.inf, -.Inf, .NaN, 0o17, 017, 0x1F, 0b101, 1_000, 190:20:30, -1:30, +12, 1e3, 6.8e+3]\n",
    "a: [yes, No, ON, off, y, n, True, FALSE, null, Null, NULL, ~, '']\n",
    "a: [2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10 -5, 2002-12-14, 2002-1-1]\n",
    "a: " + "9" * 5000 + "\n",
    "a: -" + "9" * 5000 + "\n",
    "a: 1e999999\n",
    "[" * 2000 + "]" * 2000,
    "{a: " * 2000 + "1" + "}" * 2000,
    "- " * 500 + "x\n",
    "a: |\n  literal\n  text\nb: >\n  folded\n  text\n",
    "a: 'it''s'\nb: \"tab\\there \\u00e9 \\U0001F600\"\n",
    "? complex\n: value\n",
    "a: [1, 2,\n",
    "---\na: 1\n---\nb: 2\n",
    "a: b: c\n",
    "\ufeffa: bom\n",
    "",
    "# only a comment\n",
    "~",
    "plain scalar",
    "- list\n- at top\n",
]


@pytest.mark.parametrize("text", _UNUSUAL)
@pytest.mark.parametrize("loader", [yamlsafe.SafeLoader, SeedLoader])
def test_load_gives_what_pyyaml_gives_for_unusual_documents(
    text: str, loader: type[yamlsafe.SafeLoader]
) -> None:
    _same_as_pyyaml(text, loader)


def test_the_bundled_seeds_load_as_pyyaml_loads_them() -> None:
    seeds = sorted(Path(__file__).parent.parent.joinpath("seeds").rglob("*.md"))
    assert seeds
    for path in seeds:
        text = path.read_text(encoding="utf-8")
        _same_as_pyyaml(text.split("\n---", 1)[0].removeprefix("---\n"), SeedLoader)


_PIECES = [
    "1",
    "-2",
    "0x1f",
    "0o7",
    "017",
    "1_0",
    "3.5",
    "1e3",
    ".inf",
    "-.inf",
    ".nan",
    "1:30",
    "yes",
    "no",
    "on",
    "Off",
    "true",
    "null",
    "~",
    "",
    "2024-05-01",
    "2024-05-01T10:00:00Z",
    "2024-5-1 1:2:3",
    "text",
    "'quoted'",
    '"dq \\u00e9"',
    "<<",
    "=",
    "!!str 1",
    "!!int 7",
    "!!float 2",
    "!!bool yes",
    "!!null",
    "!!binary aGk=",
    "!!timestamp 2020-01-01",
    "!custom x",
    "!!python/none",
    "&a 1",
    "*a",
    "&b [1]",
    "*b",
    "&c {k: v}",
    "*c",
]


@st.composite
def _flow(draw: st.DrawFn, depth: int = 0) -> str:
    """A flow-style YAML value made of pieces PyYAML builds in every way it can."""
    choice = draw(st.integers(0, 3 if depth < 4 else 0))
    if choice == 0:
        return draw(st.sampled_from(_PIECES))
    items = draw(st.lists(_flow(depth + 1), max_size=4))
    if choice == 1:
        return "[" + ", ".join(items) + "]"
    tag = draw(st.sampled_from(["", "", "", "!!set ", "!!omap ", "!!pairs ", "&m ", "!!map "]))
    keys = draw(st.lists(_flow(depth + 1), min_size=len(items), max_size=len(items)))
    if tag in ("!!omap ", "!!pairs "):
        return (
            tag + "[" + ", ".join(f"{{{k}: {v}}}" for k, v in zip(keys, items, strict=True)) + "]"
        )
    return tag + "{" + ", ".join(f"{k}: {v}" for k, v in zip(keys, items, strict=True)) + "}"


@given(_flow(), st.sampled_from([yamlsafe.SafeLoader, SeedLoader]))
def test_load_gives_what_pyyaml_gives_for_any_mix(
    text: str, loader: type[yamlsafe.SafeLoader]
) -> None:
    _same_as_pyyaml(text, loader)
    _same_as_pyyaml("a: " + text + "\nb: *a\n", loader)
