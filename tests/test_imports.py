"""Each of these third-party libraries is imported by one module of the package only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "aggregator"
ONLY_IN = {
    "apscheduler": "aggregator/daemon.py",
    "watchfiles": "aggregator/watch.py",
    "httpx": "aggregator/checker.py",
    "uvloop": "aggregator/loops.py",
    "httptools": "aggregator/server.py",
    "feedgen": "aggregator/render.py",  # and its version number, in aggregator/lastbuild.py
    "PIL": "aggregator/thumbs.py",
    "orjson": "aggregator/model.py",
}
ONLY_UNDER = {
    "sqlite3": "aggregator/store/sqlite/",
    "psycopg": "aggregator/store/postgres/",
}


def importers(library: str) -> set[str]:
    """The modules of the package that import `library` (or a module of it), anywhere."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            if any(name.split(".")[0] == library for name in names):
                found.add(path.relative_to(PACKAGE.parent).as_posix())
    return found


ALSO_FOR_ITS_VERSION = {"feedgen": "aggregator/lastbuild.py"}
"""A module that reads only the library's version number (`feedgen.version`), no more."""


@pytest.mark.parametrize(("library", "module"), ONLY_IN.items())
def test_a_library_is_imported_by_one_module(library: str, module: str) -> None:
    also = ALSO_FOR_ITS_VERSION.get(library)
    assert importers(library) - {also} == {module}


def test_the_version_reader_imports_the_version_only() -> None:
    for library, module in ALSO_FOR_ITS_VERSION.items():
        tree = ast.parse((PACKAGE.parent / module).read_text(encoding="utf-8"))
        names = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        } | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert {n for n in names if n.split(".")[0] == library} == {f"{library}.version"}


@pytest.mark.parametrize(("library", "folder"), ONLY_UNDER.items())
def test_a_storage_driver_is_imported_by_its_engine_only(library: str, folder: str) -> None:
    found = importers(library)
    assert found and all(module.startswith(folder) for module in found), found
