"""Settings: local-first defaults, KEEL_* variables cast by field type, errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel import ConfigError, Settings
from keel.settings import mask_password


def test_defaults_put_sqlite_and_artifacts_under_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    assert s.resolved_store_url == f"sqlite:///{tmp_path / 'keel.db'}"
    assert s.resolved_artifacts_url == str(tmp_path / "artifacts")


def test_from_env_reads_home_store_and_artifacts_urls(tmp_path: Path) -> None:
    env = {
        "KEEL_HOME": str(tmp_path / "h"),
        "KEEL_STORE_URL": "postgresql+psycopg://keel@db/keel",
        "KEEL_ARTIFACTS_URL": "s3://bucket/prefix",
    }
    s = Settings.from_env(env)
    assert s.home == tmp_path / "h"
    assert s.resolved_store_url == "postgresql+psycopg://keel@db/keel"
    assert s.resolved_artifacts_url == "s3://bucket/prefix"


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEEL_HOME", str(tmp_path))
    monkeypatch.setenv("KEEL_SERVER_PORT", "9000")
    s = Settings.from_env()
    assert (s.home, s.server_port) == (tmp_path, 9000)


def test_from_env_parses_artifacts_options_as_json() -> None:
    s = Settings.from_env({"KEEL_ARTIFACTS_OPTIONS": '{"anon": false, "client_kwargs": {"endpoint_url": "http://s3"}}'})
    assert s.artifacts_options == {"anon": False, "client_kwargs": {"endpoint_url": "http://s3"}}


def test_from_env_casts_int_fields() -> None:
    s = Settings.from_env({"KEEL_METRIC_BUFFER_POINTS": "10", "KEEL_GC_GRACE_S": "0"})
    assert (s.metric_buffer_points, s.gc_grace_s) == (10, 0)


def test_empty_variable_keeps_the_default() -> None:
    assert Settings.from_env({"KEEL_SERVER_PORT": "", "KEEL_STORE_URL": ""}) == Settings()


def test_keyword_overrides_win_over_the_environment(tmp_path: Path) -> None:
    s = Settings.from_env({"KEEL_HOME": "/elsewhere"}, home=tmp_path)
    assert s.home == tmp_path


@pytest.mark.parametrize(
    ("var", "raw", "kind"),
    [
        ("KEEL_SERVER_PORT", "80a", "an int"),
        ("KEEL_METRIC_BUFFER_POINTS", "1.5", "an int"),
        ("KEEL_ARTIFACTS_OPTIONS", "{not json", "a JSON object"),
        ("KEEL_ARTIFACTS_OPTIONS", "[1, 2]", "a JSON object"),
    ],
)
def test_unusable_value_raises_config_error_naming_the_variable(var: str, raw: str, kind: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({var: raw})
    assert f"{var}={raw!r}" in str(info.value)
    assert kind in str(info.value)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"KEEL_SERVER_PORT": "eighty"})


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KEEL_SERVER_PORT": "70000"}, "KEEL_SERVER_PORT"),
        ({"KEEL_METRIC_BUFFER_POINTS": "0"}, "KEEL_METRIC_BUFFER_POINTS"),
        ({"KEEL_GC_GRACE_S": "-1"}, "KEEL_GC_GRACE_S"),
        ({"KEEL_LOG_LEVEL": "chatty"}, "KEEL_LOG_LEVEL"),
    ],
)
def test_out_of_range_value_raises_config_error_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(env)


def test_log_level_is_case_insensitive() -> None:
    assert Settings.from_env({"KEEL_LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_home_expands_the_user_directory() -> None:
    assert Settings(home=Path("~/keel-home")).home == Path.home() / "keel-home"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.home = Path("/x")  # type: ignore[misc]


def test_settings_are_hashable_despite_the_options_dict() -> None:
    assert hash(Settings(artifacts_options={"anon": True})) == hash(Settings(artifacts_options={"anon": True}))


def test_repr_hides_store_password_and_cloud_secrets() -> None:
    s = Settings(
        store_url="postgresql+psycopg://keel:hunter2@db:5432/keel",
        artifacts_options={
            "key": "AKIAEXAMPLE",
            "secret": "wJalrXUtnFEMI",
            "client_kwargs": {"endpoint_url": "http://s3"},
        },
    )
    text = repr(s)
    assert "hunter2" not in text and "AKIAEXAMPLE" not in text and "wJalrXUtnFEMI" not in text
    assert "keel:***@db" in text and "http://s3" in text


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://keel:s3cret@db:5432/keel", "postgresql://keel:***@db:5432/keel"),
        ("postgresql://keel:p@ss@db/keel", "postgresql://keel:***@db/keel"),
        ("postgresql://db/keel?password=s3cret&sslmode=require", "postgresql://db/keel?password=***&sslmode=require"),
        (
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        ),
        ("sqlite:////tmp/a@b:c/keel.db", "sqlite:////tmp/a@b:c/keel.db"),
    ],
)
def test_mask_password_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_password(url) == masked


def test_author_longer_than_the_store_allows_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="KEEL_AUTHOR"):
        Settings.from_env({"KEEL_AUTHOR": "x" * 129})
