"""Config file validation: precise one-line errors, environment overrides, secrets only from the environment."""

from __future__ import annotations

import os
import re
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


# ---- hostile config files: each a ConfigError naming the file, never a hang, a crash or a traceback ------

BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_yaml_anchors_expanding_a_billion_times_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sync\.yaml: YAML anchors and aliases expand to more than 10,000 values"):
        config.load(write(tmp_path, BILLION_LAUGHS))


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expand to more than"):
        config.load(write(tmp_path, "a: &a [1, *a]\n"))


def test_a_few_anchors_in_a_real_config_are_fine(tmp_path: Path) -> None:
    text = "sources:\n  customers: &c data/c.csv\n  orders: *c\n  payments: *c\n"
    assert config.load(write(tmp_path, text)).sources.orders == str(tmp_path / "data" / "c.csv")


def test_yaml_nested_past_the_recursion_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        config.load(write(tmp_path, "sources: " + "[" * 50_000 + "]" * 50_000 + "\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty config file"),
        ("# only a comment\n\n", "empty config file"),
        ("- a\n- b\n", "expected a mapping of settings at the top level, not a list"),
        ("just a sentence\n", "expected a mapping of settings at the top level, not a str"),
        ("---\nworkdir: a\n---\nworkdir: b\n", "malformed YAML at line 3"),
    ],
    ids=["empty", "comment-only", "list", "scalar", "two-documents"],
)
def test_a_config_that_is_not_one_mapping_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.load(write(tmp_path, text))


def test_unknown_keys_at_every_level_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'fetch\.max_atempts' \(did you mean 'max_attempts'\?\)"):
        config.load(write(tmp_path, GOOD + "fetch:\n  max_atempts: 3\n"))
    with pytest.raises(ConfigError, match=r"unknown key 'colour' \(valid keys: (\w+, )*destination, fetch, "):
        config.load(write(tmp_path, GOOD + "colour: blue\n"))


def test_a_binary_file_is_refused_naming_the_first_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 1\): is it a binary file\?"):
        config.load(path)


def test_a_control_character_in_utf8_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"character #x0000 at character 9 is not allowed in YAML"):
        config.load(write(tmp_path, "sources:\0\n"))


def test_a_config_larger_than_a_mebibyte_is_refused_without_parsing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        config.load(write(tmp_path, GOOD + "#" * config.MAX_CONFIG_BYTES))


def test_a_folder_a_device_and_a_fifo_are_refused_without_reading(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, expected a YAML config file"):
        config.load(tmp_path)
    with pytest.raises(ConfigError, match="/dev/zero: not a regular file"):
        config.load(Path("/dev/zero"))
    fifo = tmp_path / "sync.yaml"
    os.mkfifo(fifo)  # opening it would block until a writer came
    with pytest.raises(ConfigError, match="not a regular file"):
        config.load(fifo)


def test_a_long_bad_value_is_cut_short_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, GOOD + f"fetch:\n  max_attempts: {'9' * 5000}x\n"))
    assert len(str(caught.value)) < 300


# ---- values that cannot work against Pipedrive: refused before anything is sent -----------------------


@pytest.mark.parametrize(
    ("currency", "hint"),
    [("usd", " (did you mean 'USD'?)"), ("US", ""), ("US$", ""), ("EURO", ""), (" EUR", " (did you mean 'EUR'?)")],
)
def test_a_currency_that_is_not_three_upper_case_letters_is_refused(tmp_path: Path, currency: str, hint: str) -> None:
    expected = (
        f"invalid value for 'pipedrive.currency': must be a 3-letter upper-case currency code like 'USD' or 'EUR'{hint}"
    )
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config.load(write(tmp_path, GOOD + f"pipedrive:\n  currency: '{currency}'\n"))


def test_a_currency_code_of_three_upper_case_letters_is_accepted(tmp_path: Path) -> None:
    """Custom currencies of an account have codes outside ISO 4217: the form is checked, not the list."""
    assert config.load(write(tmp_path, GOOD + "pipedrive:\n  currency: EUR\n")).pipedrive.currency == "EUR"


@pytest.mark.parametrize("url", ["api.pipedrive.com", "ftp://api.pipedrive.com", "https://", "http://host:port"])
def test_a_base_url_that_is_not_http_is_refused(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"invalid value for 'pipedrive\.base_url'"):
        config.load(write(tmp_path, GOOD + f"pipedrive:\n  base_url: '{url}'\n"))
    settings = config.load(write(tmp_path, GOOD))
    monkeypatch.setenv(config.BASE_URL_ENV, url)
    with pytest.raises(ConfigError, match=r"PIPEDRIVE_BASE_URL: "):
        _ = settings.base_url


@pytest.mark.parametrize(
    ("token", "kind", "position"),
    [
        ("abc\u2019def", "a non-ASCII character", 4),
        ("abc\ndef", "a line break", 4),
        ("abc def", "a space or control character", 4),
        ("abcdef\x7f", "a space or control character", 7),
    ],
    ids=["non-ascii", "newline", "space", "delete"],
)
def test_a_token_that_cannot_be_sent_as_a_header_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, token: str, kind: str, position: int
) -> None:
    monkeypatch.setenv(config.TOKEN_ENV, token)
    with pytest.raises(ConfigError) as caught:
        config.api_token()
    assert str(caught.value).startswith(f"PIPEDRIVE_API_TOKEN contains {kind} at position {position}: ")
    assert "abc" not in str(caught.value)


def test_a_token_with_a_trailing_newline_from_a_secret_file_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.TOKEN_ENV, "0123456789abcdef\n")
    assert config.api_token() == "0123456789abcdef"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("deals:\n  mode: mirorr\n", r"invalid value for 'deals\.mode': Input should be 'upsert', 'update' or"),
        (
            "deals:\n  mode: mirror\n  max_delete_fraction: 1.5\n",
            r"invalid value for 'deals\.max_delete_fraction': Input should be less than or equal to 1",
        ),
        (
            "persons:\n  mode: mirror\n  max_delete_fraction: -0.1\n",
            r"invalid value for 'persons\.max_delete_fraction': Input should be greater than or equal to 0",
        ),
        (
            "persons:\n  max_delete_fraction: 0.2\n",
            r"invalid value for 'persons': max_delete_fraction only applies to mode 'mirror' \(mode is 'upsert'\)",
        ),
        (
            "destination:\n  kind: postgres\ndeals:\n  mode: update\n",
            r"invalid settings: deals\.mode 'update' is not supported by the postgres destination \(only 'upsert'\)",
        ),
    ],
)
def test_a_wrong_sync_mode_setting_is_one_config_error(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        config.load(write(tmp_path, GOOD + extra))
    assert "\n" not in str(caught.value)


def test_modes_default_to_upsert_and_mirror_to_a_tenth(tmp_path: Path) -> None:
    settings = config.load(write(tmp_path, GOOD + "deals:\n  mode: mirror\npersons:\n  mode: update\n"))
    assert (settings.deals.mode, settings.deals.delete_fraction) == ("mirror", 0.1)
    assert settings.persons.mode == "update"
    assert config.load(write(tmp_path, GOOD)).deals.mode == "upsert"
