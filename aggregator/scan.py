"""Finding and reading seed files: the file-system edge of the pipeline.

`scan` walks the seed directory and lists the files worth parsing, with their
size and mtime, so later stages can tell what changed without opening
anything. `read_seed` reads one file safely and hands its bytes to the pure
parser.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from aggregator.errors import SeedDirError
from aggregator.model import SeedResult
from aggregator.parse import parse_seed
from aggregator.text import printable

DEFAULT_EXTENSIONS = (".txt", ".md", ".yaml", ".yml")
DEFAULT_MAX_FILE_BYTES = 1024 * 1024
_BACKUP_SUFFIXES = ("~", ".swp", ".swo", ".swx", ".tmp", ".bak")


@dataclass(frozen=True, slots=True)
class SeedFile:
    path: str
    """Absolute path to open."""
    source: str
    """Path relative to the seed directory, with `/` separators: the file's name in messages."""
    size: int
    mtime_ns: int


@dataclass(slots=True)
class ScanResult:
    files: list[SeedFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """One line per directory or entry that could not be read."""
    skipped: int = 0
    """Entries passed over on purpose: hidden, backups, other extensions, links outside."""

    @property
    def complete(self) -> bool:
        """True when every directory could be read, so a missing file really is gone."""
        return not self.problems


def is_candidate(name: str, extensions: Iterable[str]) -> bool:
    """Whether a directory entry's name looks like a seed document (pure)."""
    if name.startswith(".") or name.endswith(_BACKUP_SUFFIXES):
        return False
    if name.startswith("#") and name.endswith("#"):
        return False
    lower = name.lower()
    return any(lower.endswith(ext) for ext in extensions)


def scan(root: Path, extensions: Iterable[str] = DEFAULT_EXTENSIONS) -> ScanResult:
    """List the seed files below `root`, sorted by their relative path.

    Hidden files and folders, editor backups, non-regular files and symbolic
    links that lead outside `root` are skipped. Raises `SeedDirError` when
    `root` itself cannot be read; problems below it are collected instead.
    """
    exts = tuple(e.lower() for e in extensions)
    try:
        real_root = root.resolve(strict=True)
        if not real_root.is_dir():
            raise SeedDirError(f"{root}: not a directory")
        os.scandir(real_root).close()
    except OSError as exc:
        raise SeedDirError(f"{root}: cannot read the seed directory ({exc.strerror})") from None
    result = ScanResult()
    seen_dirs = {real_root}
    stack: list[tuple[str, str]] = [(str(real_root), "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError as exc:
            result.problems.append(f"{printable(prefix or '.')}: cannot read ({exc.strerror})")
            continue
        for entry in entries:
            _visit(entry, prefix, real_root, exts, seen_dirs, stack, result)
    result.files.sort(key=lambda f: f.source)
    return result


def _visit(
    entry: os.DirEntry[str],
    prefix: str,
    real_root: Path,
    exts: tuple[str, ...],
    seen_dirs: set[Path],
    stack: list[tuple[str, str]],
    result: ScanResult,
) -> None:
    name = entry.name
    source = prefix + name
    if name.startswith("."):
        result.skipped += 1
        return
    try:
        is_link = entry.is_symlink()
        info = entry.stat(follow_symlinks=True)
    except OSError as exc:
        result.skipped += 1
        if not entry.is_symlink():
            result.problems.append(f"{printable(source)}: cannot stat ({exc.strerror})")
        return
    path = entry.path
    if is_link:
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(real_root):
            result.skipped += 1
            return
        path = str(target)
    if stat.S_ISDIR(info.st_mode):
        real = Path(os.path.realpath(path))
        if real in seen_dirs:
            result.skipped += 1
            return
        seen_dirs.add(real)
        stack.append((path, source + "/"))
    elif stat.S_ISREG(info.st_mode) and is_candidate(name, exts):
        result.files.append(SeedFile(path, source, info.st_size, info.st_mtime_ns))
    else:
        result.skipped += 1


def read_seed(file: SeedFile, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> SeedResult:
    """Read and parse one seed file; every failure becomes the result's `error`."""
    if file.size > max_bytes:
        return _refused(file, f"file is {file.size} bytes, over the {max_bytes}-byte limit")
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the scan must not hang us.
        fd = os.open(file.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return _refused(file, f"cannot open ({exc.strerror})")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return _refused(file, "not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        return _refused(file, f"cannot read ({exc.strerror})")
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        return _refused(file, f"file is over the {max_bytes}-byte limit")
    return replace(parse_seed(data, file.source), digest=content_digest(data))


def content_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _refused(file: SeedFile, reason: str) -> SeedResult:
    return SeedResult(file.source, None, reason)
