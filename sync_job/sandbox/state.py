"""The sandbox state as a JSON file a person can read: custom fields and every record (incl. deleted)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sync_job.errors import ConfigError
from sync_job.sandbox.fields import ENTITIES
from sync_job.sandbox.store import Store

FORMAT = 1


def snapshot(store: Store) -> dict[str, Any]:
    with store.lock:
        return {
            "format": FORMAT,
            "fields": {e: store.fields[e].to_state() for e in ENTITIES},
            "next_option_ids": {e: store.fields[e].next_option_id for e in ENTITIES},
            "records": {
                e: [{**t.records[i], "custom_fields": dict(t.records[i]["custom_fields"])} for i in t.ids]
                for e, t in store.tables.items()
            },
        }


def restore(store: Store, state: dict[str, Any]) -> None:
    """Load a snapshot into an empty store (field codes, ids and timestamps kept)."""
    if state.get("format") != FORMAT:
        raise ConfigError(f"sandbox state file has format {state.get('format')!r}, expected {FORMAT}")
    with store.lock:
        for entity in ENTITIES:
            # next_option_ids is newer than format 1: files without it still load (ids then restart after the max)
            next_ids = state.get("next_option_ids", {})
            store.fields[entity].load_state(state["fields"].get(entity, []), int(next_ids.get(entity, 1)))
        for entity in ENTITIES:
            for record in state["records"].get(entity, []):
                store.add_record(entity, record)


def save(store: Store, path: Path) -> int:
    """Write atomically (temp file + rename); returns the store version written."""
    with store.lock:
        version = store.version
        text = json.dumps(snapshot(store), indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return version


def load(store: Store, path: Path) -> bool:
    """Load the file if it exists; a corrupt file is a ConfigError naming it."""
    if not path.exists():
        return False
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        restore(store, state)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a sandbox state file ({exc})") from None
    return True
