"""Configuration layers: default < file < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.config import Config, load_config
from aggregator.errors import ConfigError

BUNDLED = Path(__file__).parent.parent / "config" / "aggregator.yaml"


def test_the_bundled_config_file_states_the_defaults() -> None:
    assert load_config(BUNDLED, environ={}) == Config()


def test_flags_beat_environment_beats_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("feeds:\n  max_entries: 10\n  max_related: 2\nseeds:\n  dir: from-file\n")
    env = {"AGGREGATOR_FEEDS__MAX_ENTRIES": "20", "AGGREGATOR_SEEDS__EXTENSIONS": "[.md, .TXT]"}
    config = load_config(path, overrides={"feeds.max_entries": 30}, environ=env)
    assert config.feeds.max_entries == 30
    assert config.feeds.max_related == 2
    assert config.seeds.dir == Path("from-file")
    assert config.seeds.extensions == (".md", ".txt")
    assert load_config(path, environ=env).feeds.max_entries == 20


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("site:\n  public_url: https://feeds.example/base\n")
    config = load_config(environ={"AGGREGATOR_CONFIG": str(path)})
    assert config.site.public_url == "https://feeds.example/base/"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("feeds: [1, 2]", "feeds: Input should be"),
        ("site:\n  public_url: javascript:alert(1)", "site.public_url"),
        ("seeds:\n  extensions: [md]", "seeds.extensions"),
        ("feeds:\n  max_entries: 0", "feeds.max_entries"),
        ("nonsense:\n  x: 1", "nonsense: unknown setting"),
        ("- a list", "expected a mapping of sections"),
        ("feeds: {max_entries: [", "not valid YAML"),
    ],
)
def test_bad_config_files_say_where_and_what(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(path, environ={})
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_the_public_url_follows_the_server_address_unless_set() -> None:
    assert load_config(environ={}).site.public_url == "http://127.0.0.1:8080/"
    moved = load_config(overrides={"server.port": 8099, "server.host": "0.0.0.0"}, environ={})
    assert moved.site.public_url == "http://127.0.0.1:8099/"
    fixed = load_config(
        overrides={"server.port": 8099, "site.public_url": "https://f.example/"}, environ={}
    )
    assert fixed.site.public_url == "https://f.example/"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"seeds.dir": "x", "output.dir": "x"}, "overlap"),
        ({"seeds.dir": "x", "output.dir": "x/public"}, "overlap"),
        ({"seeds.dir": "x/seeds", "output.dir": "x"}, "overlap"),
        ({"output.dir": "pub", "state.path": "pub/state.sqlite3"}, "is inside output.dir"),
    ],
)
def test_the_served_directory_cannot_hold_seeds_or_state(
    overrides: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(overrides={k: Path(v) for k, v in overrides.items()}, environ={})
