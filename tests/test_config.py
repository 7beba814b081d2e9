"""Configuration layers: default < file < environment < flags."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from aggregator.config import (
    Config,
    SeedsConfig,
    ServerConfig,
    SiteConfig,
    config_json,
    explain_config,
    load_config,
    settings_lines,
)
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
        ("feeds: [1, 2]", "feeds: expected a mapping of settings (got [1, 2])"),
        ("site:\n  public_url: javascript:alert(1)", "site.public_url"),
        ("seeds:\n  extensions: [md]", "seeds.extensions"),
        ("feeds:\n  max_entries: 0", "feeds.max_entries"),
        ("nonsense:\n  x: 1", "nonsense: unknown key"),
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


def test_every_error_is_listed_once_and_typos_suggest_the_key_they_resemble(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "scan:\n  intervall: 5\n  jitter: -1\nserver:\n  interval: 3\nsede:\n  dir: x\n"
        "links:\n  ondead: drop\n  zzz: 1\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"AGGREGATOR_SCAN__WATHC": "true"})
    assert sorted(caught.value.problems) == sorted(
        [
            f"{path}: scan.intervall: unknown key; did you mean scan.interval? (got 5)",
            f"{path}: scan.jitter: Expected `float` >= 0.0 (got -1)",
            f"{path}: server.interval: unknown key; did you mean scan.interval? (got 3)",
            f"{path}: sede: unknown key; did you mean seeds? (got {{'dir': 'x'}})",
            f"{path}: links.ondead: unknown key; did you mean links.on_dead? (got 'drop')",
            f"{path}: links.zzz: unknown key (got 1)",
            "AGGREGATOR_SCAN__WATHC: scan.wathc: unknown key; did you mean scan.watch? (got True)",
        ]
    )


def test_the_effective_settings_say_where_each_came_from(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("scan:\n  interval: 30\nfeeds:\n  max_entries: 10\n")
    explained = explain_config(
        path,
        overrides={"server.port": 9000, "seeds.dir": None},
        environ={"AGGREGATOR_FEEDS__MAX_ENTRIES": "20"},
    )
    lines = settings_lines(explained, {"server.port": "--port"})
    text = "\n".join(lines)
    # What it prints is a config file with the same settings.
    assert load_config(Path(_write(tmp_path / "shown.yaml", text)), environ={}) == explained.config
    assert f"# config file: {path}" in text

    def source(key: str) -> str:
        section, name = key.split(".")
        start = lines.index(f"{section}:")
        line = next(line for line in lines[start:] if line.startswith(f"  {name}:"))
        return line.split("# ", 1)[1]

    assert source("scan.interval") == "file"
    assert source("feeds.max_entries") == "environment AGGREGATOR_FEEDS__MAX_ENTRIES"
    assert source("server.port") == "flag --port"
    assert source("seeds.dir") == "default"
    assert source("site.public_url") == "default (from server.host and server.port)"
    assert "  port: 9000" in text and "  max_entries: 20" in text


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("key", "env"),
    [("site.public_url", "AGGREGATOR_SITE__PUBLIC_URL"), ("websub.hub", "AGGREGATOR_WEBSUB__HUB")],
)
def test_a_public_url_with_a_password_is_refused_without_showing_it(
    tmp_path: Path, key: str, env: str
) -> None:
    section, name = key.split(".")
    path = tmp_path / "c.yaml"
    path.write_text(f"{section}:\n  {name}: 'https://w:pw@feeds.example/'\n")
    for file, environ, source in (
        (path, {}, str(path)),
        (None, {env: "https://u:pw@h.example/"}, env),
    ):
        with pytest.raises(ConfigError) as caught:
            load_config(file, environ=environ)
        (problem,) = caught.value.problems
        assert problem.startswith(f"{source}: {key}: ")
        assert "user name or password" in problem
        assert "pw@" not in problem
        assert "feeds.example/" in problem or "h.example/" in problem


def test_a_bad_port_is_the_only_error_and_is_blamed_on_its_source(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: 8080\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides={"server.port": 0}, environ={})
    assert caught.value.problems == ("command line: server.port: Expected `int` >= 1 (got 0)",)
    path.write_text("server:\n  port: 70000\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert [p.split(": ")[:2] for p in caught.value.problems] == [[str(path), "server.port"]]
    path.write_text("server:\n  port: '8099'\n")
    assert load_config(path, environ={}).site.public_url == "http://127.0.0.1:8099/"


def test_an_environment_variable_meant_as_a_setting_but_misnamed_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"AGGREGATOR_SCAN_INTERVAL": "3", "AGGREGATOR_SEVER_PORT": "1"})
    assert caught.value.problems == (
        "AGGREGATOR_SCAN_INTERVAL: not a setting (settings are AGGREGATOR_<SECTION>__<KEY>, "
        "two underscores between section and key); did you mean AGGREGATOR_SCAN__INTERVAL?",
        "AGGREGATOR_SEVER_PORT: not a setting (settings are AGGREGATOR_<SECTION>__<KEY>, "
        "two underscores between section and key); did you mean AGGREGATOR_SERVER__PORT?",
    )
    # What the project itself and its tests set is not a setting, and is no error.
    others = ("REQUIRE_NGINX", "REQUIRE_BROWSER", "UPDATE_GOLDEN", "TEST_SESSION")
    assert load_config(environ={f"AGGREGATOR_{name}": "1" for name in others}) == Config()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server:\n  port: " + "1" * 5000 + "\n", "a value that cannot be read"),
        ("feeds: " + "[" * 100_000 + "\n", "not valid YAML"),
    ],
)
def test_a_config_file_python_cannot_build_is_a_config_error(
    tmp_path: Path, text: str, expected: str
) -> None:
    """Valid YAML that Python will not turn into values (an integer of 5,000 digits, lists
    nested 100,000 deep) is a ConfigError naming the file, not a traceback."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_an_environment_setting_python_cannot_build_is_blamed_on_its_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"AGGREGATOR_SERVER__PORT": "1" * 5000})
    assert "server.port" in str(caught.value)
    assert "AGGREGATOR_SERVER__PORT" in str(caught.value)


def _imported(module: str) -> set[str]:
    """The modules importing `module` loads, in a fresh interpreter."""
    code = (
        "import sys; before = set(sys.modules); import " + module + "\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(result.stdout.split())


def test_the_config_does_not_import_the_seed_parser() -> None:
    loaded = _imported("aggregator.config")
    assert not loaded & {"aggregator.scan", "aggregator.parse", "aggregator.model"}, loaded


def test_the_parse_worker_does_not_import_the_config() -> None:
    loaded = _imported("aggregator.worker")
    assert "aggregator.defaults" in loaded
    assert "aggregator.config" not in loaded
    assert "msgspec" in loaded  # the records it makes (aggregator.model), not the config


# -- state.url: a PostgreSQL state ---------------------------------------------------------

SECRET_URL = "postgresql://agg:s3cret-word@db.example:5432/feeds"


def _aggregator(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    import os

    done = subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    "given",
    [
        "mysql://agg:s3cret-word@db.example/feeds",
        "postgresql://agg:s3cret-word@db.example:x/f",
        "postgresql://agg:s3cret-word@db.example",  # no database: libpq would guess one
        "postgresql://db.example/?password=s3cret-word",
    ],
)
def test_a_bad_state_url_is_one_error_line_without_its_password(tmp_path: Path, given: str) -> None:
    path = _write(tmp_path / "c.yaml", f"state:\n  url: '{given}'\n")
    env = "AGGREGATOR_STATE__URL"
    for file, environ, source in ((path, {}, str(path)), (None, {env: given}, env)):
        with pytest.raises(ConfigError) as caught:
            load_config(file, environ=environ)
        (problem,) = caught.value.problems
        assert problem.startswith(f"{source}: state.url: ")
        assert "s3cret-word" not in problem
        assert "\n" not in problem
    code, output = _aggregator("config", "check", "--config", str(path), cwd=tmp_path)
    assert code == 2
    assert "state.url" in output
    assert "s3cret-word" not in output


def test_a_state_url_comes_from_the_file_the_environment_or_the_state_flag(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "c.yaml", f"state:\n  url: '{SECRET_URL}'\n")
    assert load_config(path, environ={}).state.url == SECRET_URL
    assert load_config(path, environ={}).state.shared
    assert load_config(None, environ={}).state.url is None
    assert not load_config(None, environ={}).state.shared
    other = "postgres://agg@other.example/feeds"
    from_env = load_config(path, environ={"AGGREGATOR_STATE__URL": other})
    assert from_env.state.url == other
    assert from_env.state.location == other
    assert load_config(None, environ={"AGGREGATOR_STATE__URL": ""}).state.url is None

    code, shown = _aggregator(
        "config", "show", "--config", str(path), "--state", other, cwd=tmp_path
    )
    assert code == 0, shown
    lines = [" ".join(line.split()) for line in shown.splitlines()]
    assert f"url: '{other}' # flag --state" in lines
    code, shown = _aggregator("config", "show", "--state", "elsewhere.sqlite3", cwd=tmp_path)
    assert code == 0, shown
    lines = [" ".join(line.split()) for line in shown.splitlines()]
    assert "path: elsewhere.sqlite3 # flag --state" in lines
    assert "url: null # flag --state" in lines  # a path given: no URL, whatever else says


def test_config_show_hides_the_password_of_the_state_url(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", f"state:\n  url: '{SECRET_URL}'\n")
    for args, env in (
        (("--config", str(path)), {}),
        ((), {"AGGREGATOR_STATE__URL": SECRET_URL}),
        (("--state", SECRET_URL), {}),
    ):
        code, shown = _aggregator("config", "show", *args, cwd=tmp_path, env=env)
        assert code == 0, shown
        assert "s3cret-word" not in shown
        assert "postgresql://agg:***@db.example:5432/feeds" in shown


def test_the_state_flag_with_a_path_wins_over_a_files_url(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", "state:\n  url: postgresql://feeds@db.example/agg\n")
    code, output = _aggregator(
        "config", "show", "--config", str(path), "--state", "mine.sqlite3", cwd=tmp_path
    )
    assert code == 0, output
    assert "path: mine.sqlite3" in output
    assert "url: null" in output and "db.example" not in output


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("mysql://agg:s3cret@db.example/feeds", "mysql:// is not a state this can use"),
        ("POSTGRESQL://agg:s3cret@db.example/feeds", "write the scheme in lower case"),
        ("postgresql+psycopg://db.example/feeds", "is not a state this can use"),
    ],
)
def test_a_state_flag_that_is_no_usable_url_is_refused_not_taken_for_a_path(
    tmp_path: Path, given: str, problem: str
) -> None:
    code, output = _aggregator("build", "--state", given, cwd=tmp_path)
    assert code == 2
    assert problem in output and "s3cret" not in output
    assert list(tmp_path.iterdir()) == []  # no directory made of the URL


def test_a_state_path_that_is_a_url_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", "state:\n  path: 'sqlite:///var/state.db'\n")
    code, output = _aggregator("config", "check", "--config", str(path), cwd=tmp_path)
    assert code == 2
    assert "state.path" in output and "state.url takes postgresql://" in output


@pytest.mark.parametrize("key", ["server.port", "feeds.max_entries", "scan.interval"])
def test_true_or_false_is_not_a_number(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={key: True}, environ={})
    (problem,) = caught.value.problems
    assert problem.startswith(f"command line: {key}: Expected ")
    assert problem.endswith("(got True)")


def test_a_setting_of_a_few_values_lists_them_when_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"links.on_dead": "delete", "logging.level": "loud"}, environ={})
    assert sorted(caught.value.problems) == [
        "command line: links.on_dead: Invalid enum value 'delete'; "
        "expected one of 'fallback', 'drop', 'keep' (got 'delete')",
        "command line: logging.level: Invalid enum value 'loud'; "
        "expected one of 'debug', 'info', 'warning', 'error' (got 'loud')",
    ]


def test_a_value_nested_too_deeply_to_show_is_still_one_line() -> None:
    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"seeds.extensions": nested}, environ={})
    (problem,) = caught.value.problems
    assert problem.startswith("command line: seeds.extensions: Expected `str`, got `array`")
    assert problem.endswith("(got a value nested too deeply to show)")


def test_a_directory_in_a_loop_of_links_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"seeds.dir": tmp_path / "a" / "seeds"}, environ={})
    (problem,) = caught.value.problems
    assert problem.startswith(f"seeds.dir ({tmp_path / 'a' / 'seeds'}): cannot be resolved: ")


def test_a_server_host_that_makes_no_address_is_blamed_on_the_address_it_makes() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"server.host": "bad host"}, environ={})
    (problem,) = caught.value.problems
    assert problem.startswith("default: site.public_url: expected an absolute http(s) URL")
    assert problem.endswith("(got 'http://bad host:8080/')")


def test_text_that_is_not_utf8_is_refused_but_a_path_may_be_any_bytes() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"AGGREGATOR_SITE__TITLE": "News \udcff"})
    (problem,) = caught.value.problems
    assert problem.startswith("AGGREGATOR_SITE__TITLE: site.title: not valid UTF-8 text")
    config = load_config(environ={"AGGREGATOR_SEEDS__DIR": "seeds-\udcff"})
    assert config.seeds.dir == Path("seeds-\udcff")
    assert '"dir":"seeds-\\\\xff"' in config_json(config)  # the render key can be made


def test_a_whole_number_beyond_64_bits_is_refused() -> None:
    for value in (2**63, -(2**63), int("f" * 4000, 16)):
        with pytest.raises(ConfigError) as caught:
            load_config(overrides={"links.budget": value}, environ={})
        (problem,) = caught.value.problems
        assert problem.startswith("command line: links.budget: ")


def test_a_setting_given_as_its_default_is_the_same_config_and_the_same_json() -> None:
    default = load_config(environ={})
    explicit = load_config(overrides={"scan.interval": 60, "cluster.lease": 5}, environ={})
    assert explicit == default
    assert config_json(explicit) == config_json(default)
    assert default.scan.interval == 60.0 and isinstance(default.scan.interval, float)


def test_a_section_made_in_code_is_converted_and_checked_as_one_read() -> None:
    assert SeedsConfig(dir="x").dir == Path("x")  # type: ignore[arg-type]
    assert SeedsConfig(dir="seeds") == SeedsConfig()  # type: ignore[arg-type]
    assert SiteConfig(public_url="https://f.example").public_url == "https://f.example/"
    with pytest.raises(ValueError, match="port: Expected `int` >= 1"):
        ServerConfig(port=0)
    with pytest.raises(ValueError, match="public_url: expected an absolute http"):
        msgspec.structs.replace(SiteConfig(), public_url="nope")
    assert Config(server=ServerConfig(port=9000)).site.public_url == "http://127.0.0.1:9000/"


def test_a_config_sent_to_another_process_does_not_ask_the_file_system_again(
    tmp_path: Path,
) -> None:
    seeds, out = tmp_path / "seeds", tmp_path / "public"
    seeds.mkdir()
    config = load_config(overrides={"seeds.dir": seeds, "output.dir": out}, environ={})
    sent = pickle.dumps(config)
    out.symlink_to(seeds)  # read now, the two would overlap
    assert pickle.loads(sent) == config


def test_a_path_with_a_line_break_is_shown_on_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"seeds.dir": "a\nb", "output.dir": "a\nb/out"}, environ={})
    (problem,) = caught.value.problems
    assert "\n" not in problem and "overlap" in problem


def test_an_address_that_is_no_url_is_reported_with_the_other_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"server.host": "bad host", "scan.interval": -5}, environ={})
    assert [p.split(": ")[1] for p in caught.value.problems] == ["scan.interval", "site.public_url"]
