"""End to end over real HTTP: external-id fields that already exist in the account with another type are used as
they are (values sent and compared in the field's type), and a type that cannot hold an id stops the run first."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from sync_job.cli import app
from sync_job.errors import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, ConfigError
from sync_job.pipedrive import snapshot
from sync_job.sandbox.server import Sandbox
from tests import test_bad_input
from tests.e2e import TOKEN, assert_matches, config_file, crm_state, expected_from_csv, run_in, write_sources, writes

CUSTOMERS = [(1, "Michael", "P."), (2, "Shawn", "M."), (3, "Kathleen", "P.")]
ORDERS = [(1, 1, "2018-01-01", "returned"), (2, 3, "2018-01-02", "completed"), (3, 2, "2018-01-05", "placed")]
PAYMENTS = [(1, 1, "credit_card", 1000), (2, 2, "coupon", 2050)]

_restore_logging = test_bad_input._restore_logging  # the CLI test points the root logger at CliRunner's stream

# What a value of each id-capable type looks like in Pipedrive's JSON.
JSON_TYPE: dict[str, type] = {"double": int, "varchar": str, "text": str, "varchar_auto": str}


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    return tmp_path


@pytest.mark.parametrize("field_type", ["double", "varchar", "text", "varchar_auto"])
def test_pre_existing_id_fields_of_any_id_capable_type_are_filled_in_their_type_and_a_rerun_writes_nothing(
    sources: Path, sandbox: Sandbox, field_type: str
) -> None:
    person_code = sandbox.store.add_field("person", "CustomerID", field_type)
    deal_code = sandbox.store.add_field("deal", "OrderID", field_type)
    first = run_in(sources, sandbox)
    assert first.exit_code == EXIT_OK, first.report.failures
    assert first.report.counts == {"person": {"create:ok": 3}, "deal": {"create:ok": 3}}
    assert_matches(sandbox, expected_from_csv(sources), person_code, deal_code)
    stored = [p["custom_fields"][person_code] for p in sandbox.persons()]
    stored += [d["custom_fields"][deal_code] for d in sandbox.deals()]
    assert {type(value) for value in stored} == {JSON_TYPE[field_type]}

    before = writes(sandbox)
    again = run_in(sources, sandbox)
    assert again.exit_code == EXIT_OK
    assert writes(sandbox) == before
    assert again.report.counts == {}
    # No snapshot: a full read must match just the same.
    full = run_in(sources, sandbox, full_read=True)
    assert full.exit_code == EXIT_OK
    assert writes(sandbox) == before


@pytest.mark.parametrize("field_type", ["double", "varchar", "text"])
def test_a_hand_edit_next_to_a_typed_id_field_is_put_back_with_one_write(
    sources: Path, sandbox: Sandbox, field_type: str
) -> None:
    person_code = sandbox.store.add_field("person", "CustomerID", field_type)
    deal_code = sandbox.store.add_field("deal", "OrderID", field_type)
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    persons, deals = crm_state(sandbox, person_code, deal_code)
    sandbox.store.patch_record("person", persons["2"][0]["id"], {"name": "Edited By Hand"})
    sandbox.store.patch_record("deal", deals["1"][0]["id"], {"title": "edited by hand"})
    before = writes(sandbox)
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_OK
    assert outcome.report.counts == {"person": {"update:ok": 1}, "deal": {"update:ok": 1}}
    assert writes(sandbox) - before == 2
    assert_matches(sandbox, expected_from_csv(sources), person_code, deal_code)


def test_a_numeric_id_field_holding_ids_written_by_hand_as_floats_matches_them(sources: Path, sandbox: Sandbox) -> None:
    person_code = sandbox.store.add_field("person", "CustomerID", "double")
    sandbox.store.add_record("person", {"name": "Michael P.", "custom_fields": {person_code: 1.0}})
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_OK
    assert outcome.report.counts["person"] == {"create:ok": 2}  # customer 1 is the record typed in by hand
    assert len(sandbox.persons()) == 3


@pytest.mark.parametrize(
    ("field_type", "options"),
    [("enum", ["a"]), ("set", ["a"]), ("date", None), ("monetary", None), ("address", None), ("user", None)],
)
def test_an_id_field_of_a_type_that_cannot_hold_an_id_is_exit_2_naming_it_before_any_write(
    sources: Path, sandbox: Sandbox, field_type: str, options: list[str] | None
) -> None:
    sandbox.store.add_field("deal", "OrderID", field_type, options)  # CustomerID is missing: it must not be created
    with pytest.raises(ConfigError) as info:
        run_in(sources, sandbox)
    assert info.value.exit_code == EXIT_INPUT
    message = str(info.value)
    assert "\n" not in message
    assert "'OrderID'" in message
    assert field_type in message
    assert writes(sandbox) == 0
    assert sandbox.store.fields["person"].custom_fields() == []
    assert sandbox.persons() == []
    assert sandbox.deals() == []


def test_an_id_a_numeric_field_cannot_hold_exactly_fails_that_row_only_naming_row_field_and_value(
    sources: Path, sandbox: Sandbox
) -> None:
    big = 2**53 + 1  # a double would store it as 2**53: another customer's id, so it is never sent
    write_sources(sources, [*CUSTOMERS, (big, "Big", "Id")], ORDERS, PAYMENTS)
    person_code = sandbox.store.add_field("person", "CustomerID", "double")
    note = f"1 id(s) cannot be held by the custom field 'CustomerID' (double), e.g. '{big}': those records will fail"
    dry = run_in(sources, sandbox, dry_run=True)
    assert dry.report.plan["notes"] == [note]
    outcome = run_in(sources, sandbox)
    assert outcome.report.plan["notes"] == [note]
    assert outcome.exit_code == EXIT_PARTIAL
    assert outcome.report.counts["person"] == {"create:ok": 3, "create:failed": 1}
    (failure,) = outcome.report.failures
    assert failure["external_id"] == str(big)
    assert f"the custom field 'CustomerID' (double) cannot hold the id '{big}'" in failure["error"]
    assert sorted(p["custom_fields"][person_code] for p in sandbox.persons()) == [1, 2, 3]


def test_a_snapshot_without_the_id_fields_types_is_not_trusted_and_one_with_them_is(
    sources: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.store.add_field("person", "CustomerID", "double")
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    path = snapshot.path_in(sources / "work")
    taken = snapshot.load(path)
    assert taken is not None
    assert taken.meta.field_types == {"person": "double", "deal": "varchar"}
    # As an older version stored a numeric field's ids ("1.0"), without recording the types.
    older = taken.persons.with_columns(pl.col("external_id") + ".0")
    snapshot.save(
        path, replace(snapshot.with_frames(taken, older, taken.deals), meta=replace(taken.meta, field_types={}))
    )
    before = writes(sandbox)
    with caplog.at_level(logging.INFO):
        assert run_in(sources, sandbox).exit_code == EXIT_OK
    assert "full read of the CRM: the id fields' types differ from the snapshot's" in caplog.text
    assert writes(sandbox) == before
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert run_in(sources, sandbox).exit_code == EXIT_OK
    assert "incremental read of the CRM" in caplog.text
    assert writes(sandbox) == before


@pytest.mark.parametrize("flags", [[], ["--dry-run"]])
def test_the_cli_says_in_one_line_which_id_field_has_which_impossible_type_and_exits_2(
    sources: Path, sandbox: Sandbox, flags: list[str]
) -> None:
    sandbox.store.add_field("person", "CustomerID", "date")
    config = config_file(sources, sandbox.url)
    env = {"PIPEDRIVE_API_TOKEN": TOKEN, "PIPEDRIVE_BASE_URL": sandbox.url}
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--log-format", "json", *flags], env=env)
    assert result.exit_code == EXIT_INPUT, result.output
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: the persons custom field 'CustomerID' has type 'date', which cannot hold an id")
    assert writes(sandbox) == 0
    assert TOKEN not in result.stdout + result.stderr
