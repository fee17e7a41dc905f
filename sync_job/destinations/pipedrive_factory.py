"""The `pipedrive` destination kind (the default): how a run opens it; its settings are the top-level `pipedrive:`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sync_job.destinations.registry import DestinationSettings, RunContext, register

if TYPE_CHECKING:
    from sync_job.destinations.base import Destination


class PipedriveKindSettings(DestinationSettings):
    kind: Literal["pipedrive"] = "pipedrive"
    # Accepted and unused: configs from when both kinds shared one `destination:` model may carry it. Kept with
    # its old default so the effective settings, and the config fingerprint in the run history, do not change.
    table: str = "orders"


def open_pipedrive(own: PipedriveKindSettings, run: RunContext) -> Destination:
    # httpx and the client stack load here, when a run opens Pipedrive, not when a config is validated.
    from sync_job.config import api_token, mapping_of
    from sync_job.destinations.pipedrive import PipedriveDestination
    from sync_job.pipedrive import ledger, snapshot
    from sync_job.pipedrive.client import PipedriveClient, make_http_client

    del own  # Pipedrive's settings live in the top-level `pipedrive:` section, where configs have always had them
    settings, options = run.config, run.options
    token = options.token or api_token()
    pd = settings.pipedrive
    http = make_http_client(
        options.base_url or settings.base_url, pd.concurrency, pd.timeout_seconds, transport=options.transport
    )
    client = PipedriveClient(
        http, token, concurrency=pd.concurrency, max_attempts=pd.max_attempts, max_tokens=options.max_tokens
    )
    return PipedriveDestination(
        client,
        pd,
        dry_run=options.dry_run,
        ui=run.progress,
        grace_seconds=options.grace_seconds,
        snapshot_path=snapshot.path_in(settings.workdir),
        ledger_path=ledger.path_in(settings.workdir),
        full_read=options.full_read,
        recreate_fields=options.recreate_fields,
        entity_modes={"person": settings.persons, "deal": settings.deals},
        allow_deletes=options.allow_deletes,
        field_mapping=mapping_of(settings),
    )


register("pipedrive", PipedriveKindSettings, open_pipedrive)
