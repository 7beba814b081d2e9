"""What the last build rendered, and whether a build that finds nothing changed may keep it.

A build renders every feed: a new process knows nothing of the output. When the state,
the config, the code and the output directory are all as the last build left them, and
no held-back article or digest has fallen due since, every file would come out the same;
the build then renders nothing and reports what the last one did. The record says so:

    after a build's render   the record: a key (config and code), when the output next
                             falls due, a fingerprint of the output directory, and what
                             the render reported (files, topics with a feed)
    any app that writes      drops the record before its first write to the state, so a
                             record found means nothing wrote the state since that render

Only SQLite states keep a record (several instances sharing a PostgreSQL state publish
through the state, and always render). `current` is the pure decision; `code_fingerprint`
reads the metadata of the package's own files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

SETTING = "last_build"
"""Under this name the state records the last build's `LastBuild` (JSON; "": none)."""


@dataclass(frozen=True)
class LastBuild:
    """What one build rendered, and under which conditions it stays current."""

    key: str
    """`render_key` of the config and code it rendered with."""
    due_us: int | None
    """When its output falls due though nothing changes (microseconds; None: never)."""
    output: str
    """The output directory's fingerprint (`OutputDir.fingerprint`) after the render."""
    files: int
    """Files the render wrote or found unchanged."""
    topics: int
    """Topics with a feed."""

    def to_text(self) -> str:
        """Returns the record as stored (compact JSON)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str | None) -> LastBuild | None:
        """Returns the record stored as `text`; None for none, or one this code cannot read."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError):
            return None


def render_key(config_json: str, code: str) -> str:
    """Returns the key of a render with the config (`config.config_json`) and code
    (`code_fingerprint()`) given (pure)."""
    return hashlib.blake2b(f"{config_json}\0{code}".encode(), digest_size=16).hexdigest()


def current(record: LastBuild | None, key: str, now_us: int, output: str) -> bool:
    """Whether the output `record` describes is what a render now would write (pure): same
    key, nothing fallen due, the output directory untouched. The caller knows the state
    is unchanged (no seed read or gone, no entry changed, nothing else wrote it)."""
    return (
        record is not None
        and record.key == key
        and (record.due_us is None or now_us < record.due_us)
        and record.output == output
    )


def code_fingerprint() -> str | None:
    """Returns a digest of what renders: the name, size and modification time of every file
    of this package, and the version of feedgen, whose output is part of the rendered bytes
    (an upgrade, or an edited source file, renders everything again); None when the
    package's files cannot be listed (from a zip file: every build then renders)."""
    package = Path(__file__).resolve().parent
    found: list[str] = []
    pending = [str(package)]
    try:
        while pending:
            folder = pending.pop()
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name == "__pycache__":
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                        continue
                    info = entry.stat()
                    found.append(f"{entry.path}\0{info.st_size}\0{info.st_mtime_ns}")
    except OSError:
        return None
    # From feedgen's own module: importlib.metadata takes 10 ms to import, in every build.
    from feedgen.version import version_str

    found.append(f"feedgen\0{version_str}")
    text = "\n".join(sorted(found))
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
