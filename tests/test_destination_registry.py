"""Destinations register by kind: a new one is one module, and config and sync find it without being edited."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pytest
from typer.testing import CliRunner

from sync_job import config, sync
from sync_job.cli import app
from sync_job.destinations import registry
from sync_job.destinations.base import Destination, EntityPlan, Plan, RecordResult
from sync_job.destinations.registry import DestinationSettings, RunContext
from sync_job.errors import EXIT_INPUT, EXIT_OK, ConfigError
from tests import test_bad_input
from tests.e2e import settings_for, write_sources

_restore_logging = test_bad_input._restore_logging  # autouse: the CLI test below re-points the root logger

# ---- a whole destination in a few lines: append each new order to a CSV file ---------------------------------


class CsvSettings(DestinationSettings):
    kind: Literal["csv-test"] = "csv-test"
    path: Path


class CsvDestination:
    kind = "csv-test"

    def __init__(self, path: Path) -> None:
        self.path = path

    async def plan(self, combined: pl.DataFrame, customers: pl.DataFrame) -> Plan:
        written = pl.read_csv(self.path, columns=["order_id"]) if self.path.exists() else None
        creates = combined if written is None else combined.join(written, on="order_id", how="anti")
        none = pl.DataFrame(schema={"key": pl.Utf8, "ids": pl.List(pl.Int64)})
        updates = pl.DataFrame(schema={"order_id": pl.Int64, "id": pl.Int64, "changed": pl.List(pl.Utf8)})
        unchanged = combined.height - creates.height
        return Plan((EntityPlan("row", "order_id", creates, updates, unchanged, none),))

    async def apply(self, plan: Plan, on_result: Callable[[RecordResult], None], stop: asyncio.Event) -> None:
        creates = plan.entities[0].creates
        with self.path.open("a", encoding="utf-8") as out:
            creates.write_csv(out, include_header=out.tell() == 0)
        for order_id in creates["order_id"]:
            on_result(RecordResult("row", str(order_id), "create", "ok"))

    def usage(self) -> dict[str, object]:
        return {}

    async def aclose(self) -> None:
        pass


def open_csv(own: CsvSettings, run: RunContext) -> Destination:
    return CsvDestination(own.path if own.path.is_absolute() else run.config.workdir / own.path)


# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def csv_kind() -> Iterator[registry.Registration]:
    yield registry.register("csv-test", CsvSettings, open_csv, modes=("upsert",))
    registry.unregister("csv-test")


CUSTOMERS = [(1, "Ada", "Lovelace"), (2, "Grace", "Hopper")]
ORDERS = [(10, 1, "2018-01-01", "placed"), (11, 2, "2018-01-02", "completed")]
PAYMENTS = [(1, 10, "card", 1250), (2, 11, "card", 500)]


def test_a_destination_registered_in_one_module_runs_end_to_end(tmp_path: Path, csv_kind: object) -> None:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    settings = settings_for(tmp_path, "http://unused.invalid", destination={"kind": "csv-test", "path": "out.csv"})
    assert isinstance(settings.destination, CsvSettings)

    first = sync.run(settings, sync.RunOptions())
    assert (first.exit_code, first.report.status, first.report.destination) == (EXIT_OK, "ok", "csv-test")
    assert first.report.counts == {"row": {"create:ok": 2}}
    out = settings.workdir / "out.csv"
    assert sorted(pl.read_csv(out).select("order_id", "value").rows()) == [(10, 12.5), (11, 5.0)]

    write_sources(tmp_path, CUSTOMERS, [*ORDERS, (12, 1, "2018-01-03", "placed")], PAYMENTS)
    second = sync.run(settings, sync.RunOptions())
    assert second.report.counts == {"row": {"create:ok": 1}}
    assert sorted(pl.read_csv(out)["order_id"].to_list()) == [10, 11, 12]
    assert json.loads((settings.workdir / "report.json").read_text())["destination"] == "csv-test"


def test_a_registered_kinds_own_keys_are_checked_by_its_own_model(tmp_path: Path, csv_kind: object) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'destination\.paht' \(did you mean 'path'\?\)"):
        settings_for(tmp_path, "http://unused.invalid", destination={"kind": "csv-test", "path": "o", "paht": "o"})
    with pytest.raises(ConfigError, match=r"missing required key 'destination\.path'"):
        settings_for(tmp_path, "http://unused.invalid", destination={"kind": "csv-test"})


def test_a_mode_the_registered_kind_does_not_honour_is_refused(tmp_path: Path, csv_kind: object) -> None:
    message = r"invalid settings: persons\.mode 'mirror' is not supported by the csv-test destination \(only 'upsert'\)"
    with pytest.raises(ConfigError, match=message):
        settings_for(
            tmp_path, "http://x.invalid", destination={"kind": "csv-test", "path": "o"}, persons={"mode": "mirror"}
        )


def test_an_unknown_kind_is_one_config_error_listing_the_registered_kinds(tmp_path: Path, csv_kind: object) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_for(tmp_path, "http://unused.invalid", destination={"kind": "s3"})
    assert str(caught.value).endswith(
        "invalid value for 'destination.kind': "
        "must be a registered destination kind: 'csv-test' or 'pipedrive' or 'postgres' (got str 's3')"
    )
    assert caught.value.exit_code == EXIT_INPUT


def test_the_command_exits_2_on_an_unknown_kind_with_one_line(tmp_path: Path) -> None:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    (tmp_path / "sync.yaml").write_text(
        "sources:\n  customers: raw_customers.csv\n  orders: raw_orders.csv\n  payments: raw_payments.csv\n"
        "destination:\n  kind: bigquery\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["run", "--config", str(tmp_path / "sync.yaml"), "--log-format", "json"])
    assert result.exit_code == EXIT_INPUT
    assert "must be a registered destination kind: 'pipedrive' or 'postgres' (got str 'bigquery')" in result.output
    assert result.output.count("\n") == 1


def test_every_existing_destination_section_still_loads(tmp_path: Path) -> None:
    sections: list[dict[str, Any]] = [
        {},
        {"kind": "pipedrive"},
        {"kind": "postgres"},
        {"kind": "postgres", "table": "crm.orders"},
    ]
    sections.append({"kind": "pipedrive", "table": "orders"})  # once shared by both kinds: accepted, unused
    kinds = [settings_for(tmp_path, "http://x.invalid", destination=s).destination.kind for s in sections]
    assert kinds == ["pipedrive", "pipedrive", "postgres", "postgres", "pipedrive"]


def test_the_same_kind_claimed_by_another_model_is_refused(csv_kind: object) -> None:
    class Other(DestinationSettings):
        kind: str = "csv-test"

    with pytest.raises(ValueError, match="already registered"):
        registry.register("csv-test", Other, open_csv)  # type: ignore[arg-type]


def test_validating_a_config_loads_no_destination_stack(tmp_path: Path) -> None:
    """Registering pipedrive and postgres imports neither httpx nor psycopg: only opening one for a run does."""
    code = (
        "import json, sys\nfrom pathlib import Path\nfrom sync_job import config\n"
        "for kind in ('pipedrive', 'postgres'):\n"
        "    raw = {'sources': {'customers': 'a', 'orders': 'b', 'payments': 'c'}, 'destination': {'kind': kind}}\n"
        "    config.parse(raw, origin=Path('sync.yaml'))\n"
        "print(json.dumps(sorted({m.partition('.')[0] for m in sys.modules} & {'httpx', 'psycopg', 'rich'})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(done.stdout) == []


def test_a_config_names_the_destination_by_kind_only(tmp_path: Path) -> None:
    """config.load sees the registry's models: the postgres table comes back typed, with its default."""
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    path = tmp_path / "sync.yaml"
    path.write_text(
        "sources:\n  customers: raw_customers.csv\n  orders: raw_orders.csv\n  payments: raw_payments.csv\n"
        "destination:\n  kind: postgres\n",
        encoding="utf-8",
    )
    destination = config.load(path).destination
    assert (destination.kind, getattr(destination, "table", None)) == ("postgres", "orders")
