"""End to end over real HTTP: the declarative field mapping (`persons.fields` / `deals.fields`) against the sandbox."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from sync_job.errors import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, ConfigError
from sync_job.sandbox.server import Sandbox
from tests.e2e import codes, crm_state, field_code, run_in, write_sources, writes

CUSTOMERS = [(1, "Michael", "P."), (2, "Shawn", "M."), (3, "Kathleen", "P.")]
ORDERS = [
    (1, 1, "2018-01-01", "returned"),
    (2, 3, "2018-01-02", "completed"),
    (3, 2, "2018-01-05", "placed"),
    (4, 2, "2018-01-07", "completed"),
]
PAYMENTS = [(1, 1, "credit_card", 1000), (2, 2, "coupon", 2050), (3, 2, "coupon", 50), (4, 4, "gift_card", 700)]
STATUS = "CASE WHEN status = 'completed' THEN 'won' WHEN status = 'returned' THEN 'lost' ELSE 'open' END"
# The example mapping, plus the deal's status and a person's email from an extra customers column.
FIELDS: dict[str, Any] = {
    "deals": {
        "fields": {
            "expected_close_date": "order_date",
            "Order status": {"value": "status", "type": "enum"},
            "Payments": {"value": "payment_count", "type": "double"},
            "status": STATUS,
        }
    },
    "persons": {"fields": {"emails": "email"}},
}


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    add_email_column(tmp_path)
    return tmp_path


def add_email_column(folder: Path) -> None:
    path = folder / "raw_customers.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    rows[0].append("email")
    for row in rows[1:]:
        row.append(f"customer{row[0]}@example.com")
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)


def by_order(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    _, deals = crm_state(sandbox, *codes(sandbox))
    return {key: records[0] for key, records in deals.items()}


def options(sandbox: Sandbox, name: str) -> dict[int, str]:
    field = next(f for f in sandbox.store.fields["deal"].custom_fields() if f.name == name)
    return {int(o["id"]): str(o["label"]) for o in field.options or []}


def test_the_example_mapping_fills_standard_enum_and_double_fields_and_a_rerun_writes_nothing(
    sources: Path, sandbox: Sandbox
) -> None:
    first = run_in(sources, sandbox)
    assert first.exit_code == EXIT_OK, first.report.failures
    deals = by_order(sandbox)
    status_code, payments_code = field_code(sandbox, "deal", "Order status"), field_code(sandbox, "deal", "Payments")
    labels = options(sandbox, "Order status")
    assert {o: labels[d["custom_fields"][status_code]] for o, d in deals.items()} == {
        "1": "returned",
        "2": "completed",
        "3": "placed",
        "4": "completed",
    }
    assert {o: d["custom_fields"][payments_code] for o, d in deals.items()} == {"1": 1, "2": 2, "3": 0, "4": 1}
    assert {o: d["expected_close_date"] for o, d in deals.items()} == {
        "1": "2018-01-01",
        "2": "2018-01-02",
        "3": "2018-01-05",
        "4": "2018-01-07",
    }
    assert {o: d["status"] for o, d in deals.items()} == {"1": "lost", "2": "won", "3": "open", "4": "won"}
    persons, _ = crm_state(sandbox, *codes(sandbox))
    assert {c: p[0]["emails"][0]["value"] for c, p in persons.items()} == {
        str(c): f"customer{c}@example.com" for c, _, _ in CUSTOMERS
    }

    before = writes(sandbox)
    again = run_in(sources, sandbox)
    assert again.exit_code == EXIT_OK
    assert again.report.counts == {}
    assert writes(sandbox) == before
    full = run_in(sources, sandbox, full_read=True)
    assert full.exit_code == EXIT_OK
    assert writes(sandbox) == before


@pytest.fixture(autouse=True)
def _mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run of this module uses FIELDS unless a test overrides `tests.e2e.settings_for`'s extra keys."""
    from tests import e2e

    original = e2e.settings_for

    def with_fields(folder: Path, base_url: str, **extra: Any) -> Any:
        return original(folder, base_url, **{**FIELDS, **extra})

    monkeypatch.setattr(e2e, "settings_for", with_fields)


def test_a_hand_edit_of_a_mapped_standard_field_and_an_enum_field_is_put_back(sources: Path, sandbox: Sandbox) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    deals = by_order(sandbox)
    status_code = field_code(sandbox, "deal", "Order status")
    labels = {label: option for option, label in options(sandbox, "Order status").items()}
    sandbox.store.patch_record("deal", deals["2"]["id"], {"expected_close_date": "2030-01-01"})
    sandbox.store.patch_record("deal", deals["3"]["id"], {"custom_fields": {status_code: labels["returned"]}})
    before = writes(sandbox)
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_OK, outcome.report.failures
    assert outcome.report.counts == {"deal": {"update:ok": 2}}
    assert writes(sandbox) - before == 2
    deals = by_order(sandbox)
    assert deals["2"]["expected_close_date"] == "2018-01-02"
    assert deals["3"]["custom_fields"][status_code] == labels["placed"]


def test_a_new_enum_value_adds_its_option_before_the_rows_that_need_it(sources: Path, sandbox: Sandbox) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    write_sources(sources, CUSTOMERS, [*ORDERS[:3], (4, 2, "2018-01-07", "shipped")], PAYMENTS)
    add_email_column(sources)
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_OK, outcome.report.failures
    assert outcome.report.counts == {"deal": {"update:ok": 1}}
    labels = options(sandbox, "Order status")
    assert sorted(labels.values()) == ["completed", "placed", "returned", "shipped"]
    status_code = field_code(sandbox, "deal", "Order status")
    assert labels[by_order(sandbox)["4"]["custom_fields"][status_code]] == "shipped"
    assert run_in(sources, sandbox).report.counts == {}


def test_a_value_its_field_cannot_hold_fails_its_row_alone_naming_row_field_and_value(
    sources: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests import e2e

    original = e2e.settings_for
    fields = {"deals": {"fields": {"expected_close_date": "CASE WHEN order_id = 3 THEN 'soon' ELSE '2020-01-01' END"}}}
    monkeypatch.setattr(e2e, "settings_for", lambda folder, url, **extra: original(folder, url, **fields))
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_PARTIAL
    assert outcome.report.counts["deal"] == {"create:ok": 3, "create:failed": 1}
    (failure,) = outcome.report.failures
    assert failure["error"].startswith("deal 3: expected_close_date (a date YYYY-MM-DD) cannot hold 'soon'")
    assert set(by_order(sandbox)) == {"1", "2", "4"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"deals": {"fields": {"expected_close_dat": "order_date"}}}, "did you mean 'expected_close_date'"),
        ({"deals": {"fields": {"add_time": "order_date"}}}, "read-only"),
        ({"deals": {"fields": {"label_ids": "order_date"}}}, "cannot be mapped"),
        ({"deals": {"fields": {"title": {"value": "status", "type": "text"}}}}, "'type' is for custom fields"),
        ({"deals": {"fields": {"Kind": {"value": "status", "type": "daterange"}}}}, "not one the job can write"),
        ({"deals": {"fields": {"Kind": "upper(("}}}, "not a valid SQL expression"),
        ({"deals": {"fields": {"Kind": "nope_column"}}}, "'nope_column'"),
        ({"persons": {"fields": {"emails": "phone"}}}, "'phone'"),
        ({"deals": {"fields": {"status": "'done'"}}}, r"the constant \"'done'\" is not a value status can hold"),
        ({"deals": {"fields": {"expected_close_date": "payment_count"}}}, "gives Int64 values, which"),
        ({"deals": {"fields": {"owner_id": "order_date"}}}, "gives Date values"),
        ({"deals": {"fields": {"Due": {"value": "payment_count > 1", "type": "date"}}}}, "gives Boolean values"),
    ],
)
def test_each_mapping_error_in_the_config_stops_the_run_before_any_write(
    sources: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], message: str
) -> None:
    from tests import e2e

    original = e2e.settings_for
    monkeypatch.setattr(e2e, "settings_for", lambda folder, url, **extra: original(folder, url, **fields))
    with pytest.raises(ConfigError, match=message) as caught:
        run_in(sources, sandbox)
    assert caught.value.exit_code == EXIT_INPUT
    assert "\n" not in str(caught.value)
    assert writes(sandbox) == 0


def use_fields(monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any]) -> None:
    from tests import e2e

    original = e2e.settings_for
    monkeypatch.setattr(e2e, "settings_for", lambda folder, url, **extra: original(folder, url, **fields, **extra))


def test_owner_stage_status_and_lost_reason_are_mappable_and_a_hand_edit_is_put_back(
    sources: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fields(
        monkeypatch,
        {
            "deals": {
                "fields": {
                    "owner_id": "CASE WHEN customer_id = 2 THEN 2 ELSE 1 END",
                    "stage_id": "CASE WHEN status = 'completed' THEN 6 ELSE 2 END",  # stage 6 is pipeline 2's
                    "status": STATUS,
                    "lost_reason": "CASE WHEN status = 'returned' THEN 'Returned by the customer' END",
                }
            }
        },
    )
    first = run_in(sources, sandbox)
    assert first.exit_code == EXIT_OK, first.report.failures
    deals = by_order(sandbox)
    placed = {
        o: (d["owner_id"], d["stage_id"], d["pipeline_id"], d["status"], d["lost_reason"]) for o, d in deals.items()
    }
    assert placed == {
        "1": (1, 2, 1, "lost", "Returned by the customer"),
        "2": (1, 6, 2, "won", None),
        "3": (2, 2, 1, "open", None),
        "4": (2, 6, 2, "won", None),
    }
    assert run_in(sources, sandbox).report.counts == {}
    sandbox.store.patch_record("deal", deals["3"]["id"], {"stage_id": 3, "owner_id": 1})
    again = run_in(sources, sandbox)
    assert again.report.counts == {"deal": {"update:ok": 1}}
    assert (by_order(sandbox)["3"]["stage_id"], by_order(sandbox)["3"]["owner_id"]) == (2, 2)


def test_an_empty_value_leaves_a_standard_field_the_api_cannot_empty_as_it_is(
    sources: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fields(
        monkeypatch,
        {"deals": {"fields": {"expected_close_date": "CASE WHEN order_id = 1 THEN NULL ELSE order_date END"}}},
    )
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    deal = by_order(sandbox)["1"]
    assert deal.get("expected_close_date") is None
    sandbox.store.patch_record("deal", deal["id"], {"expected_close_date": "2031-05-05"})
    before = writes(sandbox)
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_OK
    assert outcome.report.counts == {}
    assert writes(sandbox) == before
    assert by_order(sandbox)["1"]["expected_close_date"] == "2031-05-05"


def test_a_dry_run_lists_the_mapped_values_and_the_fields_it_would_create_without_writing(
    sources: Path, sandbox: Sandbox
) -> None:
    dry = run_in(sources, sandbox, dry_run=True)
    assert dry.exit_code == EXIT_OK
    assert writes(sandbox) == 0
    notes = " | ".join(dry.report.plan["notes"])
    assert "'Order status' (enum) is created with option(s) 'completed', 'placed', 'returned'" in notes
    assert "'Payments' (double) is created" in notes
    deal = next(e for e in dry.report.plan["entities"] if e["entity"] == "deal")
    sample = next(row for row in deal["sample_creates"] if row["external_id"] == "1")
    assert (sample["expected_close_date"], sample["Order status"], sample["status"]) == (
        "2018-01-01",
        "returned",
        "lost",
    )


def test_the_example_config_in_conf_maps_status_and_date_and_runs_with_the_sample_data(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from sync_job import config, sync

    example = Path(__file__).resolve().parents[1] / "conf" / "mapping.yaml"
    settings = config.load(example)
    fields = settings.deals.fields
    assert "status" in fields
    assert fields["expected_close_date"] == "order_date"
    settings = settings.model_copy(update={"workdir": tmp_path / "work"})
    from tests.e2e import TOKEN

    outcome = sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url))
    assert outcome.exit_code == EXIT_OK, outcome.report.failures
    statuses = {d["status"] for d in sandbox.deals()}
    assert statuses == {"open", "won", "lost"}
    assert all(d["expected_close_date"] for d in sandbox.deals())


SET_AND_MONEY: dict[str, Any] = {
    "deals": {
        "fields": {
            "Tags": {
                "value": "CASE WHEN status = 'completed' THEN 'paid, shipped' WHEN status = 'returned' THEN 'paid' END",
                "type": "set",
            },
            "Amount": {"value": "amount_cents / 100", "type": "monetary"},
        }
    }
}


def test_set_and_monetary_custom_fields_are_written_exactly_and_a_rerun_writes_nothing(
    sources: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fields(monkeypatch, SET_AND_MONEY)
    first = run_in(sources, sandbox)
    assert first.exit_code == EXIT_OK, first.report.failures
    tags, amount = field_code(sandbox, "deal", "Tags"), field_code(sandbox, "deal", "Amount")
    labels = options(sandbox, "Tags")
    deals = by_order(sandbox)
    assert {o: sorted(labels[i] for i in d["custom_fields"].get(tags) or []) for o, d in deals.items()} == {
        "1": ["paid"],
        "2": ["paid", "shipped"],
        "3": [],
        "4": ["paid", "shipped"],
    }
    assert {o: d["custom_fields"][amount] for o, d in deals.items()} == {
        "1": {"value": 10.0, "currency": "USD"},
        "2": {"value": 21.0, "currency": "USD"},
        "3": {"value": 0.0, "currency": "USD"},
        "4": {"value": 7.0, "currency": "USD"},
    }
    before = writes(sandbox)
    assert run_in(sources, sandbox).report.counts == {}
    assert run_in(sources, sandbox, full_read=True).report.counts == {}
    assert writes(sandbox) == before
    by_label = {label: option for option, label in labels.items()}
    sandbox.store.patch_record("deal", deals["1"]["id"], {"custom_fields": {tags: [by_label["shipped"]]}})
    again = run_in(sources, sandbox)
    assert again.report.counts == {"deal": {"update:ok": 1}}
    assert [labels[i] for i in by_order(sandbox)["1"]["custom_fields"][tags]] == ["paid"]


def test_pre_existing_set_and_monetary_fields_are_used_as_they_are(
    sources: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.store.add_field("deal", "Tags", "set", options=["shipped", "gift"])
    sandbox.store.add_field("deal", "Amount", "monetary")
    spec = {"deals": {"fields": {"Tags": SET_AND_MONEY["deals"]["fields"]["Tags"]["value"], "Amount": "amount_cents"}}}
    use_fields(monkeypatch, spec)
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_OK, outcome.report.failures
    assert sorted(options(sandbox, "Tags").values()) == ["gift", "paid", "shipped"]
    amount = field_code(sandbox, "deal", "Amount")
    assert by_order(sandbox)["2"]["custom_fields"][amount] == {"value": 2100.0, "currency": "USD"}
    assert run_in(sources, sandbox).report.counts == {}


def test_pre_existing_user_org_and_address_fields_are_filled_and_a_rerun_writes_nothing(
    sources: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.store.add_field("deal", "Account manager", "user")
    sandbox.store.add_field("deal", "Reseller", "org")
    sandbox.store.add_field("person", "Ship to", "address")
    use_fields(
        monkeypatch,
        {
            "deals": {"fields": {"Account manager": "CASE WHEN customer_id = 2 THEN 2 ELSE 1 END", "Reseller": "7"}},
            "persons": {"fields": {"Ship to": "concat_ws(', ', last_name, 'Springfield')"}},
        },
    )
    first = run_in(sources, sandbox)
    assert first.exit_code == EXIT_OK, first.report.failures
    manager, reseller = field_code(sandbox, "deal", "Account manager"), field_code(sandbox, "deal", "Reseller")
    assert {o: (d["custom_fields"][manager], d["custom_fields"][reseller]) for o, d in by_order(sandbox).items()} == {
        "1": (1, 7),
        "2": (1, 7),
        "3": (2, 7),
        "4": (2, 7),
    }
    ship_to = field_code(sandbox, "person", "Ship to")
    persons, _ = crm_state(sandbox, *codes(sandbox))
    assert persons["1"][0]["custom_fields"][ship_to]["value"] == "P., Springfield"
    before = writes(sandbox)
    assert run_in(sources, sandbox).report.counts == {}
    assert run_in(sources, sandbox, full_read=True).report.counts == {}
    assert writes(sandbox) == before
