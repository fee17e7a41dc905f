"""The `postgres` destination kind: its settings (`destination.table`) and how a run opens it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import field_validator

from sync_job.destinations.registry import DestinationSettings, RunContext, register

if TYPE_CHECKING:
    from sync_job.destinations.base import Destination


class PostgresSettings(DestinationSettings):
    kind: Literal["postgres"] = "postgres"
    table: str = "orders"

    @field_validator("table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        parts = value.split(".")
        if not all(p.replace("_", "a").isalnum() and not p[:1].isdigit() for p in parts) or len(parts) > 2:
            raise ValueError("must be a plain SQL identifier like 'orders' or 'crm.orders'")
        return value


def open_postgres(own: PostgresSettings, run: RunContext) -> Destination:
    # psycopg loads here, when a run opens the table, not when a config naming it is validated.
    from sync_job.config import mapping_of, postgres_dsn
    from sync_job.destinations.postgres import PostgresDestination
    from sync_job.errors import ConfigError

    if run.config.persons.fields:
        raise ConfigError(
            "persons.fields is not supported by the postgres destination (one row per order): map customer columns "
            "under deals.fields"
        )
    return PostgresDestination(postgres_dsn(), own.table, field_mapping=mapping_of(run.config))


# The table is rewritten in one transaction from the whole source (upsert by order id): a per-row update-only or
# delete mode has no meaning there yet, so the config refuses them rather than ignore them.
register("postgres", PostgresSettings, open_postgres, modes=("upsert",))
