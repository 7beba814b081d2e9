"""Topic names: merging, aliases, filters, and slugs that are always safe file names."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from aggregator.topics import (
    ALL_SLUG,
    TopicRules,
    assign_slugs,
    base_slug,
    display_names,
    topic_key,
)

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def slugs_for(*names: str) -> dict[str, str]:
    topics = assign_slugs({topic_key(n): n for n in names})
    return {t.name: t.slug for t in topics.values()}


def test_spellings_merge_case_insensitively_with_a_stable_display_name() -> None:
    rules = TopicRules.build()
    seen = ["AI", " ai ", "Ai", "AI", "machine  learning"]
    spellings = [(*hit, 1) for hit in map(rules.resolve, seen) if hit]
    names = display_names(spellings, rules)
    assert names == {"ai": "AI", "machine learning": "machine learning"}
    # Order of reading does not change the choice.
    assert display_names(reversed(spellings), rules) == names


def test_aliases_map_to_the_configured_name_and_filters_apply_after_them() -> None:
    rules = TopicRules.build(
        aliases={"Artificial Intelligence": "AI", "KI": "AI"},
        include=["ai", "Space"],
        exclude=["space"],
    )
    assert rules.resolve("artificial  intelligence") == ("ai", "AI")
    assert rules.resolve("ki") == ("ai", "AI")
    assert rules.resolve("Space") is None  # excluded wins over included
    assert rules.resolve("Robotics") is None  # not included


def test_unicode_names_give_readable_slugs() -> None:
    assert base_slug("人工智能") == "ren-gong-zhi-neng"
    assert base_slug("Künstliche Intelligenz") == "kunstliche-intelligenz"
    assert base_slug("Défense & Sécurité") == "defense-and-securite"
    assert base_slug("AR/VR") == "ar-vr"
    assert base_slug("C++") == "c-plus-plus"
    assert base_slug("Москва") == "moskva"


def test_hostile_names_never_leave_the_feeds_folder() -> None:
    hostile = ["../..", "/", "..", "CON", "nul", "All", "x" * 300, "🚀", "a/../../etc"]
    slugs = slugs_for(*hostile)
    assert len(set(slugs.values())) == len(hostile)
    for slug in slugs.values():
        assert SLUG.match(slug), slug
        assert slug != ALL_SLUG and slug not in {"con", "nul"}
        assert len(slug) <= 80


def test_colliding_slugs_get_a_short_stable_suffix_and_the_ascii_name_keeps_the_bare_one() -> None:
    first = slugs_for("Machine Learning", "Machine-Learning", "Machine Learning!")
    assert first["Machine Learning"] != first["Machine-Learning"]
    bare = [s for s in first.values() if s == "machine-learning"]
    assert len(bare) == 1
    assert slugs_for("Machine Learning", "Machine-Learning", "Machine Learning!") == first
    # A look-alike with a non-ASCII name arriving later does not move the ASCII topic.
    assert slugs_for("Resume", "Résumé")["Resume"] == "resume"


@given(st.lists(st.text(min_size=1, max_size=400), min_size=1, max_size=20))
def test_any_names_give_unique_safe_slugs(names: list[str]) -> None:
    keys = {topic_key(n): n for n in names if topic_key(n)}
    topics = assign_slugs(keys)
    slugs = [t.slug for t in topics.values()]
    assert len(slugs) == len(set(slugs))
    for slug in slugs:
        assert SLUG.match(slug), slug
        assert slug != ALL_SLUG


def test_existing_slugs_are_kept_and_never_handed_to_a_newcomer() -> None:
    names = {topic_key("C Plus Plus"): "C Plus Plus", topic_key("C++"): "C++"}
    before = {topic_key("C++"): "c-plus-plus"}
    topics = assign_slugs(names, before)
    assert topics[topic_key("C++")].slug == "c-plus-plus"
    assert topics[topic_key("C Plus Plus")].slug.startswith("c-plus-plus-")
    # A topic that went away keeps its slug reserved.
    again = assign_slugs({topic_key("c plus plus"): "c plus plus"}, before)
    assert again[topic_key("c plus plus")].slug != "c-plus-plus"
