"""Text cleaning: the shortcut for plain ASCII gives what the full cleaning gives."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.text import clean_line, clean_text, strip_invalid_xml


def full_clean_text(text: str) -> str:
    return strip_invalid_xml(unicodedata.normalize("NFC", text)).strip()


def full_clean_line(text: str) -> str:
    return re.sub(r"\s+", " ", full_clean_text(text))


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("  A plain title ", "A plain title"),
        ("two  spaces", "two spaces"),
        ("tab\there", "tab here"),
        ("line\nbreak", "line break"),
        ("bell\x07 rings", "bell rings"),
        ("del\x7f", "del"),
        ("cafe\u0301", "café"),
        ("no\u00a0break", "no break"),
        ("", ""),
    ],
)
def test_lines_are_cleaned(text: str, line: str) -> None:
    assert clean_line(text) == line


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)) | st.text())
def test_the_ascii_shortcut_changes_nothing(text: str) -> None:
    assert clean_line(text) == full_clean_line(text)
    assert clean_text(text) == full_clean_text(text)
