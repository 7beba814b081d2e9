"""Reading one seed document: what becomes an article, and what is said about the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.model import Article
from aggregator.parse import _CLOSE, _closing, parse_seed
from tests.conftest import seed_text

REAL_SEED = Path(__file__).parent.parent / "seeds" / "000_792b0d4a2dfad34b.txt"


def parse(text: str | bytes) -> tuple[object, str | None, tuple[str, ...]]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    result = parse_seed(data, "x.md")
    return result.article, result.error, result.warnings


def test_the_real_seed_becomes_a_full_article() -> None:
    result = parse_seed(REAL_SEED.read_bytes(), "real.txt")
    article = result.article
    assert result.error is None and result.warnings == ()
    assert article is not None
    assert article.title.startswith("Civil society groups urge UK")
    assert article.published == datetime(2021, 8, 26, 0, 34, tzinfo=UTC)
    assert article.topics == ("Computer Vision", "AI")
    assert article.provider is not None and article.provider.domain == "jurist.org"
    assert len(article.images) == 1 and article.images[0].width == 1200
    assert len(article.related) == 4
    assert article.is_published is False and article.quality == 39
    assert "secured" not in repr(article) and "wmN1XUkA" not in repr(article)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty file"),
        ("   \n\n", "empty file"),
        ("title: no opening line\n", "first line is not '---'"),
        ("---\ntitle: never closed\n", "not closed"),
        ("---\n---\n", "front matter is empty"),
        ("---\ntitle: [unclosed\n---\n", "not valid YAML"),
        ("---\n- a\n- list\n---\n", "is a list, not a mapping"),
        ("---\njust a scalar\n---\n", "is a string, not a mapping"),
        (seed_text(title=None), "title: missing"),
        (seed_text(title="   \x00\x07 "), "title: empty"),
        (seed_text(title=["a", "list"]), "title: expected a string, got a list"),
        (seed_text(originalUrl=None, webUrl=None), "no absolute http(s) URL"),
        (
            seed_text(originalUrl="javascript:alert(1)", webUrl="data:text/html,x"),
            "no absolute http(s) URL",
        ),
        (seed_text(originalUrl="/relative/path", webUrl=None), "no absolute http(s) URL"),
        (seed_text(publishedDateTime=None), "publishedDateTime: missing"),
        (seed_text(publishedDateTime="next tuesday"), "publishedDateTime: not a date-time"),
        (seed_text(publishedDateTime="2021-02-30T10:00:00Z"), "publishedDateTime: not a date"),
        (seed_text(publishedDateTime=12345), "publishedDateTime: expected a date-time"),
    ],
)
def test_a_document_that_cannot_be_an_article_is_rejected_with_one_reason(
    text: str, reason: str
) -> None:
    article, error, _ = parse(text)
    assert article is None
    assert error is not None and reason in error
    assert "\n" not in error


def test_text_that_is_not_utf8_is_reported_with_the_offset() -> None:
    article, error, _ = parse(seed_text(title="Café").encode("utf-8").replace(b"\xc3\xa9", b"\xe9"))
    assert article is None
    assert error is not None and error.startswith("not UTF-8 text (byte 0xe9 at offset")


def test_a_bom_and_crlf_line_endings_are_fine() -> None:
    data = b"\xef\xbb\xbf" + seed_text(title="Windows").replace("\n", "\r\n").encode()
    article, error, _ = parse(data)
    assert error is None and article is not None
    assert article.title == "Windows"  # type: ignore[attr-defined]


def test_python_tags_are_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = (
        "---\ntitle: !!python/object/apply:os.system ['touch " + str(marker) + "']\n"
        "originalUrl: https://a.example/x\npublishedDateTime: 2024-01-01\n---\n"
    )
    article, error, _ = parse(text)
    assert article is None and error is not None
    assert "not valid YAML" in error and "python/object" in error
    assert not marker.exists()


def test_an_alias_bomb_is_refused_or_bounded_quickly() -> None:
    lines = ["---", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    lines += ["title: *a11", "topics: *a11", "related: *a11", "images: *a11", "excerpt: *a11"]
    lines += ["originalUrl: https://a.example/x", "publishedDateTime: 2024-01-01", "---", ""]
    article, error, _ = parse("\n".join(lines))
    assert article is None
    assert error == "title: expected a string, got a list"


def test_deep_nesting_is_a_reason_not_a_crash() -> None:
    text = "---\ntitle: " + "[" * 5000 + "]" * 5000 + "\n---\n"
    article, error, _ = parse(text)
    assert article is None and error is not None


def test_dates_naive_is_utc_and_a_bare_date_is_midnight() -> None:
    naive, _, _ = parse(seed_text(publishedDateTime="2024-03-01T12:30:00"))
    bare, _, _ = parse(
        "---\ntitle: t\noriginalUrl: https://a.example/\npublishedDateTime: 2024-03-01\n---\n"
    )
    offset, _, _ = parse(seed_text(publishedDateTime="2024-03-01T12:30:00+02:00"))
    assert naive.published == datetime(2024, 3, 1, 12, 30, tzinfo=UTC)  # type: ignore[attr-defined]
    assert bare.published == datetime(2024, 3, 1, tzinfo=UTC)  # type: ignore[attr-defined]
    assert offset.published == datetime(2024, 3, 1, 10, 30, tzinfo=UTC)  # type: ignore[attr-defined]


def test_a_single_topic_string_is_one_topic_and_odd_items_are_dropped_with_a_warning() -> None:
    single, _, _ = parse(seed_text(topics="Space"))
    assert single.topics == ("Space",)  # type: ignore[attr-defined]
    mixed, error, warnings = parse(seed_text(topics=["AI", 3, {"a": 1}, "", "Robotics"]))
    assert error is None
    assert mixed.topics == ("AI", "Robotics")  # type: ignore[attr-defined]
    assert "topics[1]: expected a string, got an integer" in warnings
    assert "topics[2]: expected a string, got a mapping" in warnings
    assert "topics[3]: empty topic name" in warnings


@pytest.mark.parametrize(
    ("field", "value", "warning"),
    [
        ("excerpt", ["x"], "excerpt: expected a string, got a list"),
        ("provider", "Reuters", "provider: expected a mapping, got a string"),
        ("images", {"url": "x"}, "images: expected a list, got a mapping"),
        ("images", [{"url": "javascript:x"}], "images[0].url: not an absolute http(s) URL"),
        ("images", [{"url": "https://i.example/a.jpg", "width": "wide"}], "images[0].width"),
        ("related", "none", "related: expected a list, got a string"),
        ("related", [{"title": "no url"}], "related[0]: no absolute http(s) URL"),
        ("related", [[1, 2]], "related[0]: expected a mapping, got a list"),
        ("quality", "high", "quality: expected a number, got a string"),
        ("quality", 250, "quality: 250 is outside 0–100"),
        ("heat", True, "heat: expected a number, got a boolean"),
        ("published", "yes please", "published: expected true or false, got a string"),
        ("category", 7, "category: expected a string, got an integer"),
        ("type", {"k": "v"}, "type: expected a string, got a mapping"),
        ("topics", 42, "topics: expected a list of strings, got an integer"),
        ("originalUrl", "ftp://files.example/x", "originalUrl: not an absolute http(s) URL"),
    ],
)
def test_a_wrong_optional_field_drops_that_field_not_the_article(
    field: str, value: object, warning: str
) -> None:
    article, error, warnings = parse(seed_text(**{field: value}))
    assert error is None and article is not None
    assert any(w.startswith(warning) for w in warnings), warnings


def test_invalid_xml_characters_are_stripped_and_markup_stays_text() -> None:
    article, _, _ = parse(seed_text(title="Bad\x00 \x1b[31mtitle\ufffe <script>alert(1)</script>"))
    assert article.title == "Bad [31mtitle <script>alert(1)</script>"  # type: ignore[attr-defined]


def test_the_secured_blob_never_reaches_messages() -> None:
    _, error, warnings = parse(seed_text(title=None, secured="TOPSECRETVALUE"))
    assert error is not None
    assert "TOPSECRETVALUE" not in error + "".join(warnings)


def test_a_huge_integer_costs_only_its_field() -> None:
    article, error, warnings = parse(
        "---\ntitle: t\noriginalUrl: https://a.example/\npublishedDateTime: 2024-01-01\n"
        f"heat: {'9' * 5000}\n---\n"
    )
    assert error is None and article is not None
    assert any(w.startswith("heat: expected a number") for w in warnings)


def test_long_topic_names_are_cut() -> None:
    article, _, warnings = parse(seed_text(topics=["x" * 5000]))
    assert len(article.topics[0]) <= 100  # type: ignore[attr-defined]
    assert any("cut to 100" in w for w in warnings)


def test_user_names_and_passwords_are_dropped_from_every_url_with_a_warning() -> None:
    article, error, warnings = parse(
        seed_text(
            originalUrl="https://bob:s3cret@news.example/a?x=1#top",
            webUrl="https://alice@news.example/web",
            images=[{"url": "https://bob:s3cret@img.example/1.jpg"}],
            related=[{"title": "R", "originalUrl": "http://bob:s3cret@r.example/r"}],
        )
    )
    assert error is None and isinstance(article, Article)
    assert article.original_url == "https://news.example/a?x=1#top"
    assert article.web_url == "https://news.example/web"
    assert [i.url for i in article.images] == ["https://img.example/1.jpg"]
    assert [r.url for r in article.related] == ["http://r.example/r"]
    plain = parse(seed_text(originalUrl="https://news.example/a?x=1"))[0]
    assert isinstance(plain, Article) and article.id == plain.id  # one article, one id
    fields = [w.split(":")[0] for w in warnings]
    assert fields == ["originalUrl", "webUrl", "images[0].url", "related[0].originalUrl"]
    assert all("user name and password removed" in w for w in warnings)
    assert not any("s3cret" in w or "bob" in w or "alice" in w for w in warnings)


def test_a_bad_url_with_a_password_is_reported_without_it() -> None:
    _, _, warnings = parse(seed_text(webUrl="https://bob:s3cret@news.example/a b"))
    assert len(warnings) == 1 and warnings[0].startswith("webUrl: ")
    assert "s3cret" not in warnings[0] and "bob" not in warnings[0]


def test_a_provider_domain_with_a_password_is_reported_without_it() -> None:
    article, error, warnings = parse(
        seed_text(provider={"name": "Prov", "domain": "carol:S3cretPW5@prov.example"})
    )
    assert error is None and isinstance(article, Article)
    assert len(warnings) == 1 and warnings[0].startswith("provider.domain: not a valid host")
    assert "'prov.example'" in warnings[0]
    assert "S3cret" not in warnings[0] and "carol" not in warnings[0]


LINES = ["---", "...", "----", "--- \t", "...x", "x: 1", "", " ---", "---\r", "..\r", "-", "#."]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(LINES), max_size=8), st.sampled_from(["\n", "\r\n"]))
def test_the_closing_line_is_found_where_the_pattern_finds_it(lines: list[str], end: str) -> None:
    text = "---\n" + end.join(lines)
    found, expected = _closing(text, 4), _CLOSE.search(text, 4)
    assert (found and found.span()) == (expected and expected.span())
