"""Helpers for end-to-end tests: a workdir of CSVs, a config, and an expectation computed with the csv module."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync_job import config, sync
from sync_job.config import Settings

TOKEN = "e2e-token-0123456789abcdef0123456789abcdef"


@dataclass
class Expected:
    persons: dict[str, str]  # customer id -> "First Last"
    deals: dict[str, tuple[str, float, str]]  # order id -> (title, value, customer id)


def write_sources(
    folder: Path, customers: list[tuple[Any, ...]], orders: list[tuple[Any, ...]], payments: list[tuple[Any, ...]]
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, header, rows in (
        ("raw_customers.csv", ("id", "first_name", "last_name"), customers),
        ("raw_orders.csv", ("id", "user_id", "order_date", "status"), orders),
        ("raw_payments.csv", ("id", "order_id", "payment_method", "amount"), payments),
    ):
        with (folder / name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)


def settings_for(folder: Path, base_url: str, **extra: Any) -> Settings:
    raw: dict[str, Any] = {
        "sources": {
            "customers": str(folder / "raw_customers.csv"),
            "orders": str(folder / "raw_orders.csv"),
            "payments": str(folder / "raw_payments.csv"),
        },
        "workdir": str(folder / "work"),
        "pipedrive": {"base_url": base_url, "concurrency": 4, "max_attempts": 6, **extra.pop("pipedrive", {})},
        **extra,
    }
    return config.parse(raw, origin=folder / "sync.yaml")


def run_in(folder: Path, sandbox: Any, **options: Any) -> sync.RunOutcome:
    """One `sync.run` of the sources in `folder` against the sandbox (options: RunOptions fields)."""
    return sync.run(settings_for(folder, sandbox.url), sync.RunOptions(token=TOKEN, base_url=sandbox.url, **options))


def expected_from_csv(folder: Path, value_factor: float = 1.0) -> Expected:
    """What the CRM must hold, computed independently of the project's Polars code."""
    with (folder / "raw_customers.csv").open(encoding="utf-8-sig", newline="") as fh:
        customers = {r["id"]: (r["first_name"], r["last_name"]) for r in csv.DictReader(fh)}
    with (folder / "raw_payments.csv").open(encoding="utf-8-sig", newline="") as fh:
        cents: dict[str, int] = defaultdict(int)
        for r in csv.DictReader(fh):
            cents[r["order_id"]] += int(r["amount"])
    deals = {}
    with (folder / "raw_orders.csv").open(encoding="utf-8-sig", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["user_id"] in customers:
                first, last = customers[r["user_id"]]
                deals[r["id"]] = (f"{last} {first}", round(cents[r["id"]] / 100 * value_factor, 2), r["user_id"])
    persons = {cid: f"{first} {last}" for cid, (first, last) in customers.items()}
    return Expected(persons, deals)


def crm_state(
    sandbox: Any, person_code: str, deal_code: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """Persons and deals of the sandbox grouped by external id (a list per id, so duplicates show)."""
    persons: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in sandbox.persons():
        persons[str(p["custom_fields"].get(person_code))].append(p)
    deals: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in sandbox.deals():
        deals[str(d["custom_fields"].get(deal_code))].append(d)
    return persons, deals


def field_code(sandbox: Any, entity: str, name: str) -> str:
    matches = [f.code for f in sandbox.store.fields[entity].custom_fields() if f.name == name]
    assert len(matches) == 1, f"{entity} field {name}: {len(matches)} definitions"
    return str(matches[0])


def assert_matches(sandbox: Any, expected: Expected, person_code: str, deal_code: str) -> None:
    """Every record exactly once, with every field as expected; nothing else created."""
    persons, deals = crm_state(sandbox, person_code, deal_code)
    assert set(persons) == set(expected.persons)
    assert set(deals) == set(expected.deals)
    person_ids = {}
    for cid, name in expected.persons.items():
        assert len(persons[cid]) == 1, f"customer {cid} has {len(persons[cid])} persons"
        assert persons[cid][0]["name"] == name
        person_ids[cid] = persons[cid][0]["id"]
    for oid, (title, value, cid) in expected.deals.items():
        assert len(deals[oid]) == 1, f"order {oid} has {len(deals[oid])} deals"
        deal = deals[oid][0]
        assert deal["title"] == title
        assert round(float(deal["value"]), 2) == value, (oid, deal["value"], value)
        assert deal["currency"] == "USD"
        assert deal["person_id"] == person_ids[cid]


def writes(sandbox: Any) -> int:
    """Write requests the sandbox has applied (records and custom-field definitions)."""
    return sum(sandbox.stats()["writes"].values())


def codes(sandbox: Any) -> tuple[str, str]:
    """The sandbox's CustomerID and OrderID field codes (each must exist exactly once)."""
    return field_code(sandbox, "person", "CustomerID"), field_code(sandbox, "deal", "OrderID")


def config_file(folder: Path, base_url: str, extra_yaml: str = "") -> Path:
    """folder/sync.yaml over the CSVs write_sources made, workdir folder/work; `extra_yaml` adds top-level keys."""
    path = folder / "sync.yaml"
    path.write_text(
        f"sources:\n  customers: raw_customers.csv\n  orders: raw_orders.csv\n  payments: raw_payments.csv\n"
        f"workdir: work\npipedrive:\n  base_url: {base_url}\n{extra_yaml}",
        encoding="utf-8",
    )
    return path
