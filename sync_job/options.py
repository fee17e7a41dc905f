"""What a caller may ask of one run (`sync.run`): flags from the command line, and what the demo and tests inject."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sync_job.progress import NullProgress, Progress

if TYPE_CHECKING:
    import httpx

    from sync_job.reporters import Reporter


@dataclass(frozen=True, slots=True)
class RunOptions:
    dry_run: bool = False
    max_tokens: int | None = None
    # What a person sees while the run goes on: the CLI passes its rich/JSON console; a library caller sees nothing.
    progress: Progress = field(default_factory=NullProgress)
    # The demo and tests point a run at an in-process sandbox; production leaves these unset.
    token: str | None = None
    base_url: str | None = None
    transport: httpx.AsyncBaseTransport | None = None
    grace_seconds: float = 20.0
    full_read: bool = False  # read the whole CRM even when the snapshot allows an incremental read
    recreate_fields: bool = False  # accept that an id custom field deleted in the CRM is created again
    allow_deletes: bool = False  # mirror mode: delete even beyond max_delete_fraction (the user checked the source)
    reporter: Reporter | None = None  # None: the standard set (HTML report, pruning, alert, metrics)
