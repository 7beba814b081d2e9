"""Text cleaning at the boundary: what may reach XML, HTML and log lines.

Pure functions. Everything a seed says passes through `clean_text` (or
`clean_line`) before it is stored in a record, so no later stage ever sees a
character that XML 1.0 forbids.
"""

from __future__ import annotations

import re
import unicodedata

# XML 1.0 forbids C0 controls other than tab, LF and CR, lone surrogates and
# U+FFFE/U+FFFF; C1 controls, DEL and the other non-characters (U+FDD0-U+FDEF
# and the last two code points of every plane) are allowed but "discouraged",
# make validators and several readers complain, and HTML forbids them, so they
# go too.
_INVALID_XML = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]"
)
_ASTRAL_NONCHARACTERS = re.compile(
    "["
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(1, 17))
    + "]"
)
"""U+1FFFE, U+1FFFF ... U+10FFFF: apart, because astral code points in a character class
make the common case (no such character) about ten times slower."""
_SPACE_RUN = re.compile(r"\s+")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\u2028\u2029]")


def strip_invalid_xml(text: str) -> str:
    """Remove every character XML 1.0 forbids (or discourages)."""
    text = _INVALID_XML.sub("", text)
    if not text.isascii() and max(text) >= "\U0001fffe":
        text = _ASTRAL_NONCHARACTERS.sub("", text)
    return text


def clean_text(text: str) -> str:
    """NFC-normalize, drop XML-invalid characters, trim the ends."""
    if text.isascii() and text.isprintable():  # most text: nothing to normalize or drop
        return text.strip()
    return strip_invalid_xml(unicodedata.normalize("NFC", text)).strip()


def clean_line(text: str) -> str:
    """`clean_text`, with every run of white space (newlines too) made one space."""
    if text.isascii() and text.isprintable() and "  " not in text:
        return text.strip()  # printable ASCII: its only white space is single spaces
    return _SPACE_RUN.sub(" ", clean_text(text))


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, at a word end where one is near."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    space = cut.rfind(" ")
    if space >= limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


def printable(text: str, limit: int = 120) -> str:
    """A one-line, escaped rendering of untrusted text for messages and logs."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", shown)


MAX_LANGUAGE_TAG_CHARS = 64
_LANGUAGE_TAG = re.compile(
    r"(?:[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4,8})"  # language (and extended language)
    r"(?:-[a-z]{4})?"  # script
    r"(?:-(?:[a-z]{2}|[0-9]{3}))?"  # region
    r"(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*"  # variants
    r"(?:-[0-9a-wyz](?:-[a-z0-9]{2,8})+)*"  # extensions
    r"(?:-x(?:-[a-z0-9]{1,8})+)?"  # private use
    r"|x(?:-[a-z0-9]{1,8})+",
    re.ASCII,
)


def language_tag(value: str) -> str:
    """`value` as a well-formed BCP 47 language tag in its conventional case ("en-GB",
    "zh-Hant-TW"); raise ValueError when it is not one. Well-formed only: the subtags
    are not looked up in the IANA registry."""
    tag = value.strip().replace("_", "-").lower()
    if len(tag) > MAX_LANGUAGE_TAG_CHARS or not _LANGUAGE_TAG.fullmatch(tag):
        raise ValueError("not a language tag such as 'en' or 'pt-BR'")
    subtags = tag.split("-")
    for index, subtag in enumerate(subtags[1:], start=1):
        if len(subtag) == 1:  # extensions and private use keep lower case
            break
        if len(subtag) == 2 and subtag.isalpha():
            subtags[index] = subtag.upper()
        elif len(subtag) == 4 and subtag.isalpha():
            subtags[index] = subtag.title()
    return "-".join(subtags)
