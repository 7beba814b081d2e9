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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

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
