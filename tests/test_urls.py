"""Which URLs may become links, and the ids derived from them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.links import is_paused
from aggregator.text import clean_line, strip_invalid_xml
from aggregator.urls import (
    InvalidURL,
    _normalized,
    entry_id,
    host_of,
    hostname,
    http_url,
    normalize_url,
    origin_of,
    without_userinfo,
)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "/relative/path",
        "//no-scheme.example/x",
        "ftp://files.example/x",
        "https://",
        "https://exa mple.com/",
        "https://example.com/\x00",
        "https://example.com:99999/",
        "http://[::1/",
        "https://example.com/" + "a" * 5000,
    ],
)
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidURL):
        http_url(url)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Example.COM/a", "example.com"),
        ("http://user:pw@News.Example:8080/x?y#z", "news.example"),
        ("http://[::1]:8080/", "::1"),
        ("http://127.0.0.1/", "127.0.0.1"),
        ("mailto:someone@example.com", ""),
        ("/relative", ""),
    ],
)
def test_host_of_is_the_one_key_for_per_host_state(url: str, host: str) -> None:
    assert host_of(url) == host
    now = datetime(2024, 1, 1, tzinfo=UTC)
    if host:  # a pause kept under that key holds for every spelling of the URL's host
        assert is_paused(url.upper(), {host: now + timedelta(1)}, now)


def test_host_of_refuses_a_malformed_url() -> None:
    with pytest.raises(ValueError):
        host_of("http://[::1/")


def test_http_urls_pass_trimmed() -> None:
    assert http_url("  https://example.com/a?b=c  ") == "https://example.com/a?b=c"
    assert http_url("http://bücher.example/straße") == "http://bücher.example/straße"


def test_normalization_merges_spellings_of_one_article() -> None:
    same = [
        "https://Example.COM/news/1",
        "https://example.com:443/news/1#comments",
        "https://example.com/news/1?utm_source=x&utm_medium=y",
    ]
    assert {normalize_url(u) for u in same} == {"https://example.com/news/1"}
    assert len({entry_id(u) for u in same}) == 1
    assert normalize_url("http://example.com") == "http://example.com/"
    assert normalize_url("https://example.com/a?id=2&utm_x=1") == "https://example.com/a?id=2"
    assert entry_id("https://example.com/a") != entry_id("https://example.com/b")


def test_entry_ids_are_fixed_for_good() -> None:
    # Readers store these; a change in the rules would re-deliver every article.
    expected = "urn:uuid:a172a150-0769-56d6-b156-1be1e94e354e"
    assert entry_id("https://www.jurist.org/news/x/") == expected
    assert entry_id("HTTPS://WWW.JURIST.ORG:443/news/x/?utm_campaign=c#top") == expected


NONCHARACTERS = st.sampled_from(
    ["\ufdd0", "\ufdef", "\ufffe", "\U0001fffe", "\U0010ffff", "\x00", "\x85"]
)


@given(st.lists(st.text() | NONCHARACTERS).map("".join))
def test_cleaned_text_has_no_xml_invalid_characters_or_noncharacters(text: str) -> None:
    for cleaned in (strip_invalid_xml(text), clean_line(text)):
        for char in cleaned:
            code = ord(char)
            assert code in (0x9, 0xA, 0xD) or 0x20 <= code < 0x7F or code > 0x9F
            assert not 0xD800 <= code <= 0xDFFF
            assert not 0xFDD0 <= code <= 0xFDEF and code & 0xFFFE != 0xFFFE
    kept = [c for c in text if not (0xFDD0 <= ord(c) <= 0xFDEF or ord(c) & 0xFFFE == 0xFFFE)]
    assert all(c in strip_invalid_xml(text) for c in kept if ord(c) > 0x9F)


@given(st.text(max_size=80), st.sampled_from(["https://", "http://", "HTTP://a.example", ""]))
def test_entry_ids_are_the_name_based_uuids_of_the_normalized_url(path: str, prefix: str) -> None:
    url = prefix + path
    try:
        name = normalize_url(url)
        expected = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"
    except (ValueError, UnicodeError) as exc:
        with pytest.raises(type(exc)):
            entry_id(url)
        return
    assert entry_id(url) == expected
    assert entry_id(url) == expected  # and again, from the cache


def _hostname_through_idna(value: str) -> str | None:
    """What `hostname` gave when every name went through the IDNA codec."""
    name = value.strip().lower().rstrip(".")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    pattern = r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$"
    if not re.match(pattern, ascii_name) or "." not in ascii_name:
        return None
    return ascii_name


@given(
    st.text(st.sampled_from("aZ09-._ \u00e9\u00fc" + "x" * 5), max_size=80)
    | st.sampled_from(["a..b", "a" * 64 + ".com", ".com", "x.", "Bücher.DE", "-a.b", "a-.b"])
)
def test_host_names_are_read_as_through_idna(value: str) -> None:
    try:
        found: str | None = hostname(value)
    except InvalidURL:
        found = None
    assert found == _hostname_through_idna(value)


@given(st.text(max_size=40), st.sampled_from(["https://", "http://user:pw@", "https://a@"]))
def test_user_info_is_removed_wherever_there_is_some(path: str, prefix: str) -> None:
    url = prefix + "host.example/" + path
    assert "@" not in without_userinfo(url).partition("/")[2].partition("/")[2].partition("/")[0]


@given(
    st.sampled_from(["https://", "http://", "HTTP://", "ftp://", " https://", "https:", "//", ""]),
    st.text(st.sampled_from("aZ09.-@:[]%\t\n _"), max_size=20),
    st.sampled_from(["", "/", "/p?q", "?q", "#f", ":8080/", "\t/x"]),
)
def test_the_host_of_a_url_is_what_urlsplit_says(scheme: str, host: str, rest: str) -> None:
    url = scheme + host + rest
    try:
        expected = (urlsplit(url).hostname or "").lower()
    except ValueError as exc:
        with pytest.raises(type(exc)):
            host_of(url)
        return
    assert host_of(url) == expected


@given(
    st.sampled_from(["https://", "http://", "HTTPS://", "https://user:pw@", "ftp://", ""]),
    st.text(alphabet="aZ0.-:[]", max_size=12),
    st.text(alphabet="aZ09.-:/?#%@!$&'()*+,;=_~ \t", max_size=40),
    st.sampled_from(["", "?utm_source=x", "?a=1&utm_medium=y", "#top", "?"]),
)
def test_urls_already_normal_are_left_as_they_are(
    scheme: str, host: str, rest: str, tail: str
) -> None:
    for url in (scheme + host + rest + tail, f"{scheme}{host}.example/{rest}{tail}"):
        try:
            expected = _normalized(url)  # taken apart and put together again
        except ValueError:
            with pytest.raises(ValueError):
                normalize_url(url)
            continue
        assert normalize_url(url) == expected
    assert normalize_url("https://a.example/x?q=1") == "https://a.example/x?q=1"
    assert normalize_url("https://a.example/x?") == "https://a.example/x"


@given(
    st.sampled_from(["https://", "http://", "HTTP://", "ftp://", " https://", "https:", "//", ""]),
    st.text(st.sampled_from("aZ09.-@:[]%\t\n _"), max_size=20),
    st.sampled_from(["", ":", ":80", ":08080", ":65535", ":65536", ":99999", ":123456", ":8a"]),
    st.sampled_from(["", "/", "/p?q", "?q", "#f", "\t/x", ":1/"]),
)
def test_the_origin_of_a_url_is_what_urlsplit_says(
    scheme: str, host: str, port: str, rest: str
) -> None:
    url = scheme + host + port + rest
    try:
        parts = urlsplit(url)
        expected = (parts.scheme, parts.hostname or "", parts.port)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            origin_of(url)
        return
    assert origin_of(url) == expected
