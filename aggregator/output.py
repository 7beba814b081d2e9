"""The output directory: atomic, write-if-changed files, and nothing outside it.

A file is replaced only when its bytes differ, through a temp file in the same
directory that is fsynced and renamed into place; a reader (or the HTTP
server) sees the old file or the new one, never half of one, and an unchanged
file keeps its mtime and so its ETag.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import stat
import tempfile
import time
from pathlib import Path

from aggregator.errors import OutputError
from aggregator.formats import FILE_KINDS

TEMP_PREFIX = ".tmp-"
_STALE_TEMP_SECONDS = 600


GZIP_SUFFIXES = tuple(suffix for suffix, kind in FILE_KINDS.items() if kind.compressible)
"""The kinds of file that get a `.gz` sidecar (when asked): the text ones."""


class OutputDir:
    """The directory the feeds are written to and served from.

    With `gzip_sidecars`, each text file also gets a `<name>.gz` beside it
    (deterministic bytes), for servers such as nginx's `gzip_static`. Both
    files are compared and written on their own, so a crash between the two
    writes is repaired by the next write of the same content.
    """

    def __init__(self, root: Path, gzip_sidecars: bool = False) -> None:
        self.gzip_sidecars = gzip_sidecars
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.root = root.resolve(strict=True)
        except OSError as exc:
            raise OutputError(
                f"{root}: cannot create the output directory ({exc.strerror})"
            ) from None
        self._mode = 0o666 & ~_umask()

    def path(self, relative: str) -> Path:
        """The absolute path of `relative`, refused when it would leave the directory."""
        target = (self.root / relative).resolve()
        if not target.is_relative_to(self.root) or target == self.root:
            raise OutputError(f"{relative!r}: refusing to write outside {self.root}")
        return target

    def write(self, relative: str, data: bytes) -> bool:
        """Put `data` at `relative` unless it is already there; True when the file changed."""
        if relative.endswith(GZIP_SUFFIXES):
            sidecar = relative + ".gz"
            if self.gzip_sidecars:
                self._write(sidecar, gzip.compress(data, compresslevel=9, mtime=0))
            else:  # left from when sidecars were on: it would go stale
                with contextlib.suppress(FileNotFoundError):
                    self.path(sidecar).unlink()
        return self._write(relative, data)

    def _write(self, relative: str, data: bytes) -> bool:
        target = self.path(relative)
        try:
            if target.read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OutputError(f"{target}: cannot read ({exc.strerror})") from None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fchmod(handle.fileno(), self._mode)
                    os.fsync(handle.fileno())
                os.replace(temp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            _fsync_dir(target.parent)
        except OSError as exc:
            raise OutputError(f"{target}: cannot write ({exc.strerror})") from None
        return True

    def head(self, relative: str, size: int) -> bytes | None:
        """The first `size` bytes of the regular file at `relative`; None when there is none."""
        try:
            with open(self.path(relative), "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    return None
                return handle.read(size)
        except OSError:
            return None

    def prune(self, folder: str, suffix: str, keep: set[str]) -> list[str]:
        """Remove files ending in `suffix` under `folder` that are not in `keep`.

        Also clears temp files left by an interrupted write. Returns the
        relative paths removed.
        """
        directory = self.path(folder)
        removed: list[str] = []
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return removed
        except OSError as exc:
            raise OutputError(f"{directory}: cannot list ({exc.strerror})") from None
        now = time.time()
        for entry in entries:
            relative = f"{folder}/{entry.name}"
            if not entry.is_file(follow_symlinks=False):
                continue
            stale_temp = entry.name.startswith(TEMP_PREFIX) and (
                now - entry.stat(follow_symlinks=False).st_mtime > _STALE_TEMP_SECONDS
            )
            unwanted = entry.name.endswith(suffix) and relative not in keep
            orphan = entry.name.endswith(suffix + ".gz") and relative[:-3] not in keep
            if stale_temp or unwanted or orphan:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise OutputError(f"{entry.path}: cannot remove ({exc.strerror})") from None
                if not stale_temp:
                    removed.append(relative)
        if removed:
            _fsync_dir(directory)
        return removed

    def folders(self, folder: str) -> list[str]:
        """Names of the folders (not symlinks) directly inside `folder`."""
        try:
            with os.scandir(self.path(folder)) as entries:
                return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise OutputError(f"{self.path(folder)}: cannot list ({exc.strerror})") from None

    def remove_empty(self, folder: str) -> None:
        """Remove `folder` and then its parents inside the directory, as long as they are empty."""
        target = self.path(folder)
        while target != self.root:
            try:
                target.rmdir()
            except OSError:
                return  # not empty (or already gone): leave it
            target = target.parent


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
