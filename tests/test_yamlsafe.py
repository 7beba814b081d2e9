"""The one YAML loader: safe, the C one when there is one, the same answers as PyYAML's."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from aggregator import yamlsafe
from aggregator.parse import SeedLoader


@pytest.fixture(autouse=True)
def _fast_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """rapidyaml reads the plain subset here, as in a parse worker (`read_fast_here`)."""
    module = yamlsafe.rapidyaml()
    monkeypatch.setattr(yamlsafe, "ryml", module)
    monkeypatch.setattr(yamlsafe, "_fast_here", module is not None)


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


# rapidyaml reads documents of the seeds' plain block style (see `yamlsafe`): each one
# must come out as PyYAML makes it, and everything near the edges of that style too,
# whichever parser reads it. Which one does is part of the spec: the fast path must
# stay in use for what the seeds are made of, and out of the way of the rest.

_SEED_STYLE = """\
category: news
title: "Court: battery record # 1 & <b>tags</b> — café “quoted” 🚀"
excerpt: "Model new funding experts: a colon"
publishedDateTime: 2026-09-13T04:58:13Z
webUrl: "https://www.vazotor.example/news/2026/research-battery-0"
quality: 92
heat: -1
published: true

provider:
  name: Dannar Wire
  domain: vazotor.example

topics:
  - AI
  - Künstliche Intelligenz

images:
  - url: "https://cdn.vazotor.example/img/c3b2744ab1fc.jpg"
    width: 636
    isCached: false
related:
  - title: "Public security"
    provider:
      name: Zolonar Post
    images:
      - url: "https://cdn.tormi.example/img/293e229be150.jpg"
secured: "mBeYefRF0S5o/y+DJxY63eyQClt4Igoy+brfbqZJ8c27DvwSa2/kRlkPiTTbw5s6hr1Tw1HmbSQ"
"""

_READ_FAST = [
    _SEED_STYLE,
    'a: "quoted: text # not a comment, [x] {y} &z *w !t |l >f %d @a `b"\n',
    'a: "it\'s \\"quoted\\", a \\\\ backslash\\nnew line\\ttab \\u00e9 \\u2028"\n',
    'a: "café 人工智能 🚀 \u00a0 \ufffd"\nb: Künstliche Intelligenz\nc: 人工智能\n',
    "a: x:y\nb: https://h.example/p/a.html\nc: a-b_c/d+e.f\n",
    "# a comment\na: value # a comment\n  # an indented comment\nb: 2 # c\n",
    'a: "x" # a "quoted" word\nb: 1 # it"s odd\nc: "y" # "\nd: "z # "\n',
    "a:\nb:   \nc: word\n",
    "a: 1\na: 2\nb: 3\na: 4\n",
    "a: 1\nb: -2\nc: 1.5\nd: -0.25\ne: 1e3\nf: 1.0e3\ng: 1.5e+3\nh: 0\ni: -0\nj: 10.50\n",
    "a: 99999999999999999999999999\nb: 1-2\nc: 1a\nd: -1x\n",
    "a: true\nb: false\nc: null\nd: True is not false\n",
    'secured: "' + "x" * 100_000 + '"\n',
    "a: " + " ".join(["word"] * 5_000) + "\n",
    'a: x   \nb: "y"   \nc:   \n  - z   \n',
    "- a\n- 1\n-\n- b: c\n  d: e\n-   f: g\n    h:\n      - i\n",
    "a:\n" + "".join("  " * depth + f"k{depth}:\n" for depth in range(1, 60)) + " " * 120 + "x: 1",
    "a:\n\n\n  b: 1\n\n  c:\n\n    - 2\n\n",
]
"""Documents rapidyaml reads."""

_INVALID_IN_STYLE = [
    "a:\n  b: 1\n c: 2\n",
    "a: 1\n- b\n",
    "- a\nb: 1\n",
    "a:\n  - x\n - y\n",
    "a:\n  b: 1\n    c: 2\n",
    "a: 1\n  b: 2\n",
    'a: "x"\n  b: 2\n',
    'a:\n  - "x"\n    b:\n',
    "a: b: c\n",
]
"""Documents of the style that are not YAML: rapidyaml refuses them too, libyaml says why."""

_READ_BY_LIBYAML = [
    "a: yes\n",
    'a: "yes"\n',
    'a: "12"\n',
    'a: ""\n',
    "a: ~\n",
    "a: Null\n",
    "a: TRUE\n",
    "Yes: 1\n",
    "null: 1\n",
    "on: 1\n",
    "a: 1:20\n",
    "a: 0x1F\n",
    "a: 012\n",
    "a: 1_000\n",
    "a: .5\n",
    "a: 1.\n",
    "a: +1\n",
    "a: -.inf\n",
    "a: 1\r\nb: 2\r\n",
    "\ufeffa: 1\n",
    "a:\tb\n",
    "a: b\t\n",
    "---\na: 1\n",
    "a: 1\n...\n",
    "a: 1\n---\nb: 2\n",
    "%YAML 1.1\n---\na: 1\n",
    "a: 'single'\n",
    "a: 'it''s'\n",
    "a: |\n  literal\n",
    "a: >\n  folded\n",
    "a: [1, 2]\n",
    "a: {b: 1}\n",
    "a: &x 1\nb: *x\n",
    "a: !!str 1\n",
    "? a\n: b\n",
    "<<: {a: 1}\n",
    "a: x\n  continued\n",
    'a: "two\n  lines"\n',
    'a: "two\nb: lines"\n',
    'a: "x\n  y" # "\nb: "z"\n',
    'a: "x\n  y"\nb: "z" # "\n',
    'a: "\\ud800"\n',
    'a: "\\x41 \\U0001F600 \\N \\_ \\e \\0 \\/"\n',
    'a: "\\u0000"\n',
    'a: "\x01"\n',
    "a: x\x85y\n",
    "a: x\u2028y\n",
    "a: x\ufeffy\n",
    "a: x#y\n",
    "a: x #y\n  b: 1\n",
    'a: "x"#y\n',
    "a: ?x\n",
    "a: :x\n",
    "a: -x\n",
    "a: x?\n",
    "a:\n- x\n- y\n",
    "a: # nothing\n- x\n",
    "- a:\n  - x\n",
    'b:\n  c:\n  - "x"\n   t: 1\nz: 1\n',
    "k" * 1025 + ": v\n",
    "a:  x  y\n",
    "",
    "\n\n",
    "plain scalar",
    "- - x\n",
]
"""Documents libyaml reads: rapidyaml could read them otherwise, or their types need the text."""


@pytest.mark.parametrize("text", _READ_FAST)
def test_rapidyaml_reads_the_plain_block_style(text: str) -> None:
    assert yamlsafe.reads_fast(text, SeedLoader)
    for loader in (yamlsafe.SafeLoader, SeedLoader):
        _same_as_pyyaml(text, loader)


@pytest.mark.parametrize("text", _INVALID_IN_STYLE)
def test_invalid_documents_of_the_style_get_libyamls_error(text: str) -> None:
    assert not yamlsafe.reads_fast(text, SeedLoader)
    with pytest.raises(yamlsafe.YAMLError):
        yamlsafe.load(text, SeedLoader)
    _same_as_pyyaml(text, SeedLoader)


@pytest.mark.parametrize("text", _READ_BY_LIBYAML)
def test_libyaml_reads_what_rapidyaml_could_read_otherwise(text: str) -> None:
    assert not yamlsafe.reads_fast(text, SeedLoader)
    for loader in (yamlsafe.SafeLoader, SeedLoader):
        _same_as_pyyaml(text, loader)


def test_the_seeds_timestamps_are_text_only_for_the_seeds_loader() -> None:
    text = "when: 2026-09-13T04:58:13Z\n"
    assert yamlsafe.reads_fast(text, SeedLoader)
    assert not yamlsafe.reads_fast(text, yamlsafe.SafeLoader)
    assert yamlsafe.load(text, SeedLoader) == {"when": "2026-09-13T04:58:13Z"}


def test_a_loader_with_constructors_of_its_own_is_left_to_libyaml() -> None:
    class TextBooleans(yamlsafe.SafeLoader):
        pass

    TextBooleans.add_constructor("tag:yaml.org,2002:bool", lambda loader, node: node.value)
    assert not yamlsafe.reads_fast("a: true\n", TextBooleans)
    assert yamlsafe.load("a: true\n", TextBooleans) == {"a": "true"}


def test_without_rapidyaml_libyaml_reads_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsafe, "ryml", None)
    assert not yamlsafe.reads_fast(_SEED_STYLE, SeedLoader)
    _same_as_pyyaml(_SEED_STYLE, SeedLoader)


_KEYS = st.sampled_from(["a", "b", "key", "x_y", "on", "null", "Y", "k" * 99])
_VALUES = st.sampled_from(
    [
        *("1", "-1", "-0", "1.5", "1e3", "1.5e+3", "00", "0x1F", "1:20", "1_0", ".5", "1."),
        *("true", "True", "yes", "no", "null", "~", "word", "two words", "x:y", "a/b"),
        *("2024-01-01", "2026-09-13T04:58:13Z", "Künstliche Intelligenz", "-x", "x # c"),
        *('""', '"q"', '"yes"', '"1"', '"a: b"', '"# x"', '"\\"q\\" \\\\ \\u00e9"', '" lead"'),
    ]
)


@st.composite
def _block(draw: st.DrawFn, indent: int = 0, depth: int = 0) -> list[str]:
    """Lines of a block collection at `indent`, some lines shifted off their column."""
    lines = []
    sequence = draw(st.booleans())
    for _ in range(draw(st.integers(1, 3))):
        column = max(0, indent + draw(st.sampled_from([0] * 12 + [-1, 1, 2])))
        head = " " * column + ("- " if sequence else draw(_KEYS) + ":")
        choice = draw(st.integers(0, 3 if depth < 3 else 1))
        if choice == 0:
            lines.append(head + ("" if sequence else " ") + draw(_VALUES))
        elif choice == 1:
            lines.append(head.rstrip())
        elif choice == 2 and sequence:  # `- key: value` and the rest of that mapping
            inner = draw(_block(column + 2, depth + 1))
            lines.append(head + inner[0].lstrip(" "))
            lines.extend(inner[1:])
        else:
            lines.append(head.rstrip())
            step = draw(st.sampled_from([2, 2, 4, 1, 0]))
            lines.extend(draw(_block(column + step, depth + 1)))
    return lines


@given(_block(), st.sampled_from([yamlsafe.SafeLoader, SeedLoader]), st.sampled_from(["\n", ""]))
def test_load_gives_what_pyyaml_gives_for_any_block_document(
    lines: list[str], loader: type[yamlsafe.SafeLoader], end: str
) -> None:
    _same_as_pyyaml("\n".join(lines) + end, loader)


def test_only_a_process_that_asks_reads_with_rapidyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsafe, "_fast_here", False)  # the service's own threads
    assert not yamlsafe.reads_fast(_SEED_STYLE, SeedLoader)
    assert yamlsafe.load(_SEED_STYLE, SeedLoader) == yaml.load(
        _SEED_STYLE, Loader=_reference(SeedLoader)
    )


def test_what_rapidyaml_refuses_leaves_nothing_on_standard_error(
    capfd: pytest.CaptureFixture[str],
) -> None:
    text = "a: 1\n  b: 2\n"  # of the subset's lines, but not YAML
    _same_as_pyyaml(text, SeedLoader)
    deep = "x:\n" + "".join("  " * (level + 1) + f"k{level}:\n" for level in range(70))
    _same_as_pyyaml(deep, SeedLoader)  # rapidyaml parses it; its JSON emitter refuses it
    os.write(2, b"still here\n")
    assert capfd.readouterr().err == "still here\n"


def test_a_workers_batch_hides_rapidyaml_once_and_gives_standard_error_back(
    capfd: pytest.CaptureFixture[str],
) -> None:
    refused = "a: 1\n  b: 2\n"  # of the subset's lines, but not YAML: rapidyaml complains
    with yamlsafe.parse_errors_hidden():
        _same_as_pyyaml(refused, SeedLoader)
        os.write(2, b"hidden\n")  # the block's, not given back by the document read in it
        _same_as_pyyaml(refused, SeedLoader)
    os.write(2, b"still here\n")
    assert capfd.readouterr().err == "still here\n"


def test_a_process_that_reads_only_with_libyaml_hides_nothing(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(yamlsafe, "_fast_here", False)  # the service's own threads log there
    with yamlsafe.parse_errors_hidden():
        os.write(2, b"a log line\n")
    assert capfd.readouterr().err == "a log line\n"


def _resident_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_reading_fast_keeps_no_memory_per_document() -> None:
    assert yamlsafe.reads_fast(_SEED_STYLE, SeedLoader)
    for _ in range(200):  # the buffers and caches it keeps, at their size
        yamlsafe.load(_SEED_STYLE, SeedLoader)
    before = _resident_kib()
    for _ in range(6000):
        yamlsafe.load(_SEED_STYLE, SeedLoader)
    assert _resident_kib() - before < 6 * 1024  # rapidyaml's emit_json lost 3.6 KB a time
