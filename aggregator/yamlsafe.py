"""The one YAML loader: PyYAML's safe loader, the C one (libyaml) when PyYAML has it.

Every YAML the project reads (the config file, settings in the environment, seed
front matter) goes through `load`; tags such as `!!python/object` are errors,
never constructors. A module with its own needs (the seeds keep timestamps as
text) subclasses `SafeLoader` and passes its class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    SafeLoader = yaml.SafeLoader
else:  # the C loader (libyaml) when PyYAML was built with it: several times faster
    SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

YAMLError = yaml.YAMLError
"""What `load` raises for a document that is not valid YAML (`MarkedYAMLError` says where)."""


def load(text: str | bytes, loader: type[SafeLoader] = SafeLoader) -> object:
    """The first document in `text`, built by the safe `loader` (a `SafeLoader` subclass).

    Returns None for an empty document. Raises `YAMLError` for invalid YAML, and
    whatever the loader's constructors raise (`RecursionError` for deep nesting,
    `ValueError` for a value Python will not convert).
    """
    return yaml.load(text, Loader=loader)  # noqa: S506 - the safe loader, or a subclass of it
