"""Config file validation: precise one-line errors, environment overrides, secrets only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_job import config
from sync_job.errors import ConfigError

GOOD = """
sources:
  customers: data/c.csv
  orders: https://example.test/o.csv
  payments: s3://bucket/p.csv
workdir: out
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sync.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    settings = config.load(write(tmp_path, GOOD))
    assert settings.sources.customers == str(tmp_path / "data" / "c.csv")
    assert settings.sources.orders == "https://example.test/o.csv"
    assert settings.sources.payments == "s3://bucket/p.csv"
    assert settings.workdir == tmp_path / "out"
    assert settings.value == "amount_cents / 100"


def test_unknown_key_names_the_closest_valid_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'workdri' \(did you mean 'workdir'\?\)"):
        config.load(write(tmp_path, GOOD + "workdri: x\n"))


def test_unknown_nested_key_names_the_closest_valid_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'pipedrive.base_ur' \(did you mean 'base_url'\?\)"):
        config.load(write(tmp_path, GOOD + "pipedrive:\n  base_ur: http://x\n"))


def test_missing_source_is_named(tmp_path: Path) -> None:
    text = "sources:\n  customers: a.csv\n  orders: b.csv\n"
    with pytest.raises(ConfigError, match=r"missing source 'sources.payments'"):
        config.load(write(tmp_path, text))


def test_wrong_type_names_the_key_and_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid value for 'pipedrive.concurrency'.*'many'"):
        config.load(write(tmp_path, GOOD + "pipedrive:\n  concurrency: many\n"))


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+"):
        config.load(write(tmp_path, "sources: [unclosed\n  x: 1\n"))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.yaml")


def test_token_in_the_file_is_rejected_as_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'pipedrive\.api_token'"):
        config.load(write(tmp_path, GOOD + "pipedrive:\n  api_token: abc\n"))


def test_environment_base_url_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = config.load(write(tmp_path, GOOD + "pipedrive:\n  base_url: http://from-file\n"))
    assert settings.base_url == "http://from-file"
    monkeypatch.setenv(config.BASE_URL_ENV, "http://from-env")
    assert settings.base_url == "http://from-env"


def test_missing_token_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError, match="PIPEDRIVE_API_TOKEN is not set"):
        config.api_token()


def test_bad_table_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"destination\.table"):
        config.load(write(tmp_path, GOOD + "destination:\n  kind: postgres\n  table: 'x; drop table y'\n"))
