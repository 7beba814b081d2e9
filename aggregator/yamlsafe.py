"""The one YAML loader: PyYAML's safe loader, the C one (libyaml) when PyYAML has it.

Every YAML the project reads (the config file, settings in the environment, seed
front matter) goes through `load`; tags such as `!!python/object` are errors,
never constructors. A module with its own needs (the seeds keep timestamps as
text) subclasses `SafeLoader` and passes its class.

PyYAML's parser (libyaml) composes the document; turning its nodes into Python
objects is where PyYAML spends most of the rest, in generic Python code made for
every case YAML allows (anchors shared between nodes, recursive collections,
merge keys, sets, binary). `load` builds the plain shape that almost every
document has (mappings, sequences and scalars of the core tags, each node once)
directly, calling the loader's own constructor for every scalar that is not
plain text, so each value comes out exactly as PyYAML makes it. Anything else,
and any error, goes to PyYAML's own construction of the same nodes, which gives
its own result or its own error.

Before any of that, a document in the narrow block style the seeds are written in
(one `key: value` or `- value` a line, plain words or double-quoted text, nothing
that YAML 1.1 and 1.2 could read apart: see the comment above `_subset`) is parsed
by rapidyaml, which with the test of the text costs well under half of what
libyaml composing Python nodes does. Its tree comes back through JSON, every number
resolved by this loader's own resolver and built by its own constructors; a string
whose tag the JSON text cannot tell (a quoted "yes" and a plain yes both come back
as the string yes) sends the document to libyaml, as does anything rapidyaml
refuses (rapidyaml then writes its error to the standard error).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

ryml: Any = None
"""rapidyaml, once `read_fast_here` imported it (None: not in this process, or no wheel for
this platform, and then libyaml parses everything). Only parse workers import it: 8 ms
that no other process needs to spend."""

if TYPE_CHECKING:
    _Base = yaml.SafeLoader
else:  # the C loader (libyaml) when PyYAML was built with it: several times faster
    _Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

YAMLError = yaml.YAMLError
"""What `load` raises for a document that is not valid YAML (`MarkedYAMLError` says where)."""

STR = "tag:yaml.org,2002:str"
SEQ = "tag:yaml.org,2002:seq"
MAP = "tag:yaml.org,2002:map"
PLAIN_SCALARS = (
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
)
"""The scalar tags built by calling the loader's constructor for them directly."""


Resolvers = dict[str | None, list[tuple[str, re.Pattern[str]]]]
"""PyYAML's implicit resolvers: (tag, pattern) by the first character of a plain scalar."""


class SafeLoader(_Base):
    """PyYAML's safe loader, with the resolver's per-node work done in fewer calls.

    The parser asks the resolver for every node's tag, and tells it each step down
    and up the tree for path resolvers, which the safe loader has none of. Without
    path resolvers, these give what PyYAML's `Resolver` gives, in one call per node.
    """

    def descend_resolver(self, current_node: Node | None, current_index: Any) -> None:
        if self.yaml_path_resolvers:
            super().descend_resolver(current_node, current_index)

    def ascend_resolver(self) -> None:
        if self.yaml_path_resolvers:
            super().ascend_resolver()

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if self.yaml_path_resolvers:
            return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]
        if kind is ScalarNode:
            if implicit[0]:  # plain: the implicit resolvers for its first character
                resolvers: Resolvers = self.yaml_implicit_resolvers
                for tag, regexp in resolvers.get(value[:1], ()):
                    if regexp.match(value):
                        return tag
                for tag, regexp in resolvers.get(None, ()):
                    if regexp.match(value):
                        return tag
            return self.DEFAULT_SCALAR_TAG
        if kind is SequenceNode:
            return self.DEFAULT_SEQUENCE_TAG
        return self.DEFAULT_MAPPING_TAG


class _Unusual(Exception):
    """The node is not of the plain shape: PyYAML's own construction builds it."""


Scalar = Callable[[SafeLoader, ScalarNode], object]


def load(text: str | bytes, loader: type[SafeLoader] = SafeLoader) -> object:
    """The first document in `text`, built by the safe `loader` (a `SafeLoader` subclass).

    Returns None for an empty document. Raises `YAMLError` for invalid YAML, and
    whatever the loader's constructors raise (`RecursionError` for deep nesting,
    `ValueError` for a value Python will not convert).
    """
    if type(text) is str:
        value = _read_fast(text, loader)
        if value is not _NOT_READ:
            return value
    parser = loader(text)
    try:
        node = parser.get_single_node()
        if node is None:
            return None
        constructors = parser.yaml_constructors
        scalars: dict[str, Scalar] = {
            tag: constructors[tag] for tag in PLAIN_SCALARS if tag in constructors
        }
        try:
            return _build(parser, node, scalars, set())
        except Exception:  # noqa: BLE001 - PyYAML's construction says what is wrong, or builds it
            return parser.construct_document(node)
    finally:
        parser.dispose()


_NOT_READ = object()


def reads_fast(text: str, loader: type[SafeLoader] = SafeLoader) -> bool:
    """Whether `load` reads `text` with rapidyaml (else libyaml reads it)."""
    return _read_fast(text, loader) is not _NOT_READ


_fast_here = False
"""Whether this process reads the plain subset with rapidyaml (`read_fast_here`)."""


def read_fast_here() -> None:
    """From now on, `load` reads documents of the plain subset with rapidyaml in this process.

    rapidyaml writes its parse errors to the process's standard error (file descriptor
    2), with no way to turn that off; `load` points descriptor 2 at /dev/null for the
    moment of each such parse (or a worker for a whole batch: `parse_errors_hidden`).
    Call this only in a process where nothing else writes to
    standard error meanwhile: a parse worker, whose other thread only waits. Elsewhere
    (the service's threads log there), libyaml reads everything."""
    global _fast_here, ryml
    ryml = rapidyaml()
    _fast_here = ryml is not None


def rapidyaml() -> Any:
    """rapidyaml's module, imported now; None where it has no wheel."""
    try:
        import ryml as module  # type: ignore[import-untyped]  # here: see `ryml`
    except ImportError:
        return None
    return module


def _read_fast(text: str, loader: type[SafeLoader]) -> object:
    """`text` read by rapidyaml as `loader` reads it, or `_NOT_READ`: libyaml must read it."""
    if not _fast_here or ryml is None:
        return _NOT_READ
    try:
        data = text.encode()
    except UnicodeEncodeError:  # a lone surrogate: not YAML
        return _NOT_READ
    fast = _Fast.of(loader)
    if fast is None or not _in_subset(text, data):
        return _NOT_READ
    try:
        return fast.load(data)
    except Exception:  # noqa: BLE001 - rapidyaml refused it, or cannot say what PyYAML would
        return _NOT_READ


def _build(parser: SafeLoader, node: Node, scalars: dict[str, Scalar], seen: set[int]) -> object:
    """`node` as PyYAML's safe constructor builds it, for the plain shape; else `_Unusual`."""
    kind, tag = type(node), node.tag
    if kind is ScalarNode:
        if tag == STR:
            return node.value
        scalar = scalars.get(tag)
        if scalar is None:
            raise _Unusual
        return scalar(parser, node)  # type: ignore[arg-type]  # kind is ScalarNode
    if id(node) in seen:  # an alias: PyYAML shares the object (or finds a recursion)
        raise _Unusual
    seen.add(id(node))
    if kind is MappingNode and tag == MAP:
        built: dict[object, object] = {}
        for key_node, value_node in node.value:
            if type(key_node) is not ScalarNode:  # a collection as a key, a merge (<<)
                raise _Unusual
            key_tag = key_node.tag
            if key_tag == STR:
                key = key_node.value
            elif key_tag in scalars:
                key = scalars[key_tag](parser, key_node)
            else:
                raise _Unusual
            built[key] = _build(parser, value_node, scalars, seen)
        return built
    if kind is SequenceNode and tag == SEQ:
        return [_build(parser, item, scalars, seen) for item in node.value]
    raise _Unusual


# The subset rapidyaml reads, as text: every line blank, a comment, or `key:`,
# `key: value`, `- key:`, `- key: value`, `- value` or `-`, indented with spaces,
# maybe with a comment after. Keys are short words (PyYAML wants a simple key within
# 1024 characters). A value is in double quotes, with only the escapes \" \\ \n \t
# \uXXXX (no surrogate), or plain: words of letters, digits, `._/+-` and non-ASCII
# characters, starting with a letter or digit (or `-` and a digit), a `:` only
# inside a word, single spaces between words, not ending with `.` (rapidyaml writes
# `1.` as `1.0`). Nowhere a control character (tab, CR), NEL, LS or PS (line breaks
# to YAML 1.1), BOM or non-character, and no anchor, alias, tag, directive, document
# marker, flow collection, block or multi-line scalar or single quote: YAML 1.1
# (libyaml) and 1.2 (rapidyaml) read some of those differently.
_NOT_KEPT = bytes(byte for byte in range(256) if 0x20 <= byte != 0x7F and byte != 0x22)
"""The bytes but the ASCII control characters, line feed among them, and the double quote:
what `_in_subset` deletes to see the control characters and how quotes fall on lines."""
_UNSAFE_UTF8 = re.compile(rb"\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]|\xef(?:\xbb\xbf|\xbf[\xbe\xbf])")
"""The C1 control characters (NEL among them), LS, PS, BOM, U+FFFE and U+FFFF in UTF-8."""
_ASCII = bytes(range(0x80))
"""The bytes `_in_subset` deletes before looking for `_UNSAFE_UTF8`: no ASCII byte is part of
a character of several bytes in UTF-8, so what is left is those characters whole, one after
the other, and the search finds the same characters in it (in a seed with a few of them,
1.8 µs against 15 for the whole document)."""
_CHARS = r"[^\x00-\x2a\x2c\x3a-\x40\x5b-\x5e\x60\x7b-\x9f]"
"""In a plain value: letters, digits, `._/+-` and every character from U+00A0 on."""
_PLAIN = (
    r"(?:[^\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x9f]|-(?=[0-9]))"  # a letter or digit, or -1
    rf"{_CHARS}*+(?::{_CHARS}++)*+(?: {_CHARS}++(?::{_CHARS}++)*+)*+(?<!\.)"
)
_QUOTED = '"[^"\n]*+"'
"""A double-quoted value in a document without a backslash (the fast way to match one)."""
_QUOTED_ON_ITS_LINE = '"[^"]*+"'
"""`_QUOTED`, for a document whose every line holds an even number of double quotes (see
`_in_subset`), where it cannot run past the end of its line: a third faster to match."""
_ESCAPED = r'"(?:[^"\\\n]++|\\["\\nt]|\\u(?![dD][89a-fA-F])[0-9a-fA-F]{4})*+"'
"""A double-quoted value in a document with a backslash."""
_NAME = r"[A-Za-z_][A-Za-z0-9_\-]{0,99}+:"
_COMMENT = "#[^\n]*+"
_NO_SEQUENCE_AT = rf"(?!(?: *+(?:{_COMMENT})?\n)++{{column}}-(?:[ \n]|\Z))"
"""After `key:` with no value: not a `-` at the key's column (rapidyaml misreads what
follows such an indentless sequence)."""


def _subset(quoted: str) -> re.Pattern[str]:
    """The lines of the subset, each followed by a line feed, with `quoted` values."""
    value = f"(?:{quoted}|{_PLAIN})"
    line = (
        "(?>( *+)"  # 1: the indentation
        + f"(?:-(?:( ++)(?:{_NAME}(?: ++{value}|"  # 2: the spaces after the dash
        + _NO_SEQUENCE_AT.format(column=r"\1 \2")
        + f")|{value}))?+|{_NAME}(?: ++{value}|"
        + _NO_SEQUENCE_AT.format(column=r"\1")
        + f"))?+ *+(?:(?<![^ \n]){_COMMENT})?+)"
    )
    return re.compile(f"(?:{line}\n)*+")


@functools.cache
def _subsets() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The subset with `_QUOTED`, with `_QUOTED_ON_ITS_LINE` and with `_ESCAPED` values,
    compiled when first asked for (3 ms): only a process that reads fast tests it."""
    return _subset(_QUOTED), _subset(_QUOTED_ON_ITS_LINE), _subset(_ESCAPED)


def _in_subset(text: str, data: bytes) -> bool:
    """Whether `text` (`data` in UTF-8) is of the subset rapidyaml reads as libyaml does.

    Without a backslash, a double quote of a document of the subset is one end of a
    quoted value, or is in a comment. A line on which a quoted value begins holds no
    quote before it (an indentation, a dash, a key), nor after it but the one that ends
    it. So where every line holds an even number of quotes, no value of the document
    that the subset with `_QUOTED_ON_ITS_LINE` matches runs past the end of its line,
    and the subset with `_QUOTED` matches it too, the same way; where the latter
    matches, the former does. Otherwise (a value on two lines, a quote in a comment) the
    subset with `_QUOTED` is asked."""
    kept = data.translate(None, _NOT_KEPT)  # control characters, line feeds, quotes
    if kept.translate(None, b'\n"') or (
        not data.isascii() and _UNSAFE_UTF8.search(data.translate(None, _ASCII)) is not None
    ):
        return False
    plain, paired, escaped = _subsets()
    if b"\\" in data:
        subset = escaped
    elif b'"' in kept.replace(b'""', b""):  # a line with an odd number of quotes
        subset = plain
    else:
        subset = paired
    return subset.fullmatch(text + "\n") is not None


JSON_BUFFER = 16 * 1024
"""The first size of the buffer rapidyaml writes a document's JSON into (a seed's is 4 KB)."""
_CACHED = 4096
"""How many numbers' texts `_Fast` keeps the value of, per loader (a seed has a few dozen)."""


@contextlib.contextmanager
def _stderr_hidden() -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block (rapidyaml writes its parse
    errors there), and back where it pointed after it. Inside another such block (a
    worker's batch of seeds: `parse_errors_hidden`) it costs nothing; else four system
    calls. (/dev/null is opened once per process.)"""
    global _null, _hiding
    if _hiding:
        yield
        return
    saved = os.dup(2)
    try:
        if _null is None:
            _null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        os.dup2(_null, 2)
        _hiding = True
        yield
    finally:
        _hiding = False
        os.dup2(saved, 2)
        os.close(saved)


_null: int | None = None
"""The descriptor of /dev/null that `_stderr_hidden` points descriptor 2 at."""
_hiding = False
"""Whether descriptor 2 points at /dev/null now (inside `_stderr_hidden`)."""


def parse_errors_hidden() -> contextlib.AbstractContextManager[None]:
    """Inside the block, descriptor 2 points at /dev/null once for every document read with
    rapidyaml, not once for each (where this process reads with it: `read_fast_here`).

    For a parse worker's batch of seeds: nothing else it does writes to standard error
    (errors are results, sent back), and four system calls a seed were 2–4% of its CPU."""
    return _stderr_hidden() if _fast_here else contextlib.nullcontext()


class _Numbers(dict[str, object]):
    """A plain number's value by its text, as the loader resolves and constructs it."""

    def __init__(self, build: Callable[[str], object]) -> None:
        super().__init__()
        self._build = build

    def __missing__(self, text: str) -> object:
        value = self._build(text)
        if len(self) < _CACHED and len(text) <= 32:
            self[text] = value
        return value


class _Fast:
    """rapidyaml's parse of a document of the subset, built as `loader` builds it, or an exception.

    For a loader with PyYAML's own resolver and PyYAML's own constructors for
    mappings, sequences, strings, booleans and null. rapidyaml's tree comes back as
    JSON: a true, false or null in it is a plain true, false or null (or an empty
    value), which PyYAML reads the same. A number comes back as its text, resolved
    and constructed as the loader does (an int or float constructor is a function
    of the text, so each text's value is kept). A string stays a string unless the
    loader's resolver, as for a plain scalar, gives it a tag that makes something
    else of it: "yes" and yes both come back as the string yes, so any such string
    sends the document to libyaml, which knows whether it was quoted.
    """

    _cache: dict[type[SafeLoader], _Fast | None] = {}  # noqa: RUF012 - by loader class

    @classmethod
    def of(cls, loader: type[SafeLoader]) -> _Fast | None:
        """The fast path for `loader`, or None where it cannot promise the loader's result."""
        try:
            return cls._cache[loader]
        except KeyError:
            fast = None
            if cls._fits(loader):
                try:
                    fast = cls(loader)
                except ValueError:  # a PyYAML whose resolver this does not know
                    fast = None
            cls._cache[loader] = fast
            return fast

    @staticmethod
    def _fits(loader: type[SafeLoader]) -> bool:
        own = SafeConstructor.yaml_constructors
        constructors = loader.yaml_constructors
        return (
            loader.yaml_implicit_resolvers is Resolver.yaml_implicit_resolvers
            and not loader.yaml_path_resolvers
            and all(
                constructors.get(tag) is own[tag]
                for tag in (MAP, SEQ, STR, "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null")
            )
        )

    def __init__(self, loader: type[SafeLoader]) -> None:
        resolvers: Resolvers = loader.yaml_implicit_resolvers
        self._resolvers = resolvers
        constructors = loader.yaml_constructors
        as_text = SafeConstructor.yaml_constructors[STR]
        self._text_tags: set[str | None] = {STR}
        self._text_tags.update(tag for tag, built in constructors.items() if built is as_text)
        self._constructors: dict[str, Scalar] = {
            tag: constructors[tag] for tag in PLAIN_SCALARS if tag in constructors
        }
        # Each JSON string as it stands in the JSON text (no quote or backslash
        # inside, or it came from a quoted value) that PyYAML, were it plain, would make other than
        # text: one alternative per such tag, tried after the characters it starts with.
        firsts: dict[str, set[str]] = {}
        patterns: dict[str, re.Pattern[str]] = {}
        for first, pairs in resolvers.items():
            for tag, regexp in pairs:
                if tag not in self._text_tags:
                    firsts.setdefault(tag, set()).add('"' if first == "" else first or "")
                    patterns[tag] = regexp
        alternatives = []
        for tag, regexp in patterns.items():
            pattern = regexp.pattern
            if not (pattern.startswith("^") and pattern.endswith("$")) or "" in firsts[tag]:
                raise ValueError(f"{loader.__name__}: resolver for {tag} not of a known form")
            verbose = "x" if regexp.flags & re.VERBOSE else ""
            start = re.escape("".join(sorted(firsts[tag])))
            alternatives.append(f"(?=[{start}])(?{verbose}:{pattern[1:-1]})")
        start = re.escape("".join(sorted(set().union(*firsts.values()))))
        self._ambiguous = re.compile(f'"(?=[{start}])(?:' + "|".join(alternatives) + ')"')
        self._numbers = _Numbers(self._number)
        numbers = self._numbers.__getitem__
        # One decoder for every document (`json.loads` with hooks makes one per call).
        self._decoder = json.JSONDecoder(
            parse_int=numbers, parse_float=numbers, parse_constant=self._constant
        )
        self._buffer = bytearray(JSON_BUFFER)
        self._host = loader("")  # scalar constructors read nothing but the node given them
        self._host.dispose()

    def _number(self, text: str) -> object:
        tag = STR
        for candidate, regexp in self._resolvers.get(text[:1], ()):
            if regexp.match(text):
                tag = candidate
                break
        else:
            for candidate, regexp in self._resolvers.get(None, ()):
                if regexp.match(text):
                    tag = candidate
                    break
        if tag in self._text_tags:
            return text
        return self._constructors[tag](self._host, ScalarNode(tag, text))

    @staticmethod
    def _constant(text: str) -> object:
        raise _Unusual  # NaN, Infinity: JSON that rapidyaml writes for no plain scalar

    def _json(self, tree: Any) -> str:
        """rapidyaml's JSON of `tree`, written into a buffer kept for the next document
        (`ryml.emit_json` makes a buffer it never frees: about 3.6 KB lost per document)."""
        try:
            written = ryml.emit_json_in_place(tree, self._buffer)
        except IndexError:  # too small: grow it to what this tree needs
            self._buffer = bytearray(max(2 * len(self._buffer), ryml.compute_json_length(tree)))
            written = ryml.emit_json_in_place(tree, self._buffer)
        return str(written, "utf-8")

    def load(self, data: bytes) -> object:
        """The document in `data` (of the subset), or an exception: libyaml must read it."""
        with _stderr_hidden():  # its emitter complains there too (nesting too deep)
            emitted = self._json(ryml.parse_in_arena(data))
        if not emitted or self._ambiguous.search(emitted):  # empty, or a string to tell
            raise _Unusual
        return self._decoder.decode(emitted)
