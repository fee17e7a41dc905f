"""A Pipedrive plan stands alone: a destination that did not make it applies it exactly (real HTTP to the sandbox)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import polars as pl

from sync_job import combined as combined_module
from sync_job import config
from sync_job.destinations.base import RecordResult
from sync_job.destinations.pipedrive import PipedriveDestination
from sync_job.sandbox import Sandbox, SandboxOptions
from tests.e2e import write_sources
from tests.test_pipedrive_sandbox import TOKEN, new_client

CUSTOMERS = [(1, "Ann", "Lee"), (2, "Bo", "Ray")]
ORDERS = [(10, 1, "2020-01-01", "completed"), (11, 2, "2020-01-02", "placed")]
PAYMENTS = [(1, 10, "coupon", 1250)]


def test_a_plan_made_by_one_destination_is_applied_by_another_with_no_state_left_behind(tmp_path: Path) -> None:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    settings = config.parse(
        {
            "sources": {n: str(tmp_path / f"raw_{n}.csv") for n in ("customers", "orders", "payments")},
            "deals": {
                "fields": {"Order status": {"value": "status", "type": "enum"}, "expected_close_date": "order_date"}
            },
        },
        origin=tmp_path / "sync.yaml",
    )
    mapped = config.mapping_of(settings)
    paths = {n: tmp_path / f"raw_{n}.csv" for n in ("customers", "orders", "payments")}
    result = combined_module.build_combined(paths, tmp_path, mapped.value_expression)
    rows = combined_module.read_combined(result.combined_path)
    customers = combined_module.read_customers(result.customers_path)

    async def scenario(url: str) -> list[RecordResult]:
        planner = PipedriveDestination(new_client(url), settings.pipedrive, field_mapping=mapped)
        plan = await planner.plan(rows, customers)
        await planner.aclose()
        applier = PipedriveDestination(new_client(url), settings.pipedrive, field_mapping=mapped)
        results: list[RecordResult] = []
        await applier.apply(plan, results.append, asyncio.Event())
        await applier.aclose()
        return results

    with Sandbox(SandboxOptions(token=TOKEN, burst=1000, search_burst=1000)) as sandbox:
        results = asyncio.run(scenario(sandbox.url))
        assert sorted((r.entity, r.action, r.outcome) for r in results) == [
            ("deal", "create", "ok"),
            ("deal", "create", "ok"),
            ("person", "create", "ok"),
            ("person", "create", "ok"),
        ]
        deals = pl.DataFrame(sandbox.deals()).sort("id")
        assert sorted(deals["expected_close_date"].to_list()) == ["2020-01-01", "2020-01-02"]
        assert deals["person_id"].null_count() == 0
