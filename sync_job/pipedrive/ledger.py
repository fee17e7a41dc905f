"""What this job spent of Pipedrive's daily token budget today, kept in the workdir across the day's runs.

Pipedrive resets the budget "at midnight at server's timezone", which it does not name; the job counts days in
UTC by Pipedrive's own clock (its Date header), so the share it keeps is right to within the timezone offset.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from sync_job import staging

log = logging.getLogger(__name__)

FILE_NAME = "pipedrive-budget.json"


@dataclass(frozen=True, slots=True)
class Spent:
    day: str  # YYYY-MM-DD, UTC, Pipedrive's clock
    tokens: int

    def on(self, day: str) -> int:
        """Tokens spent on `day` (nothing when the record is of another day)."""
        return self.tokens if self.day == day else 0


def path_in(workdir: Path) -> Path:
    return workdir / "state" / FILE_NAME


def load(path: Path) -> Spent | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Spent(day=str(data["day"]), tokens=int(data["tokens"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s cannot be read (%s): counting today's spending from zero", path, exc)
        return None


def save(path: Path, spent: Spent) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with staging.staged([path]) as (tmp,):
        tmp.write_text(json.dumps({"day": spent.day, "tokens": spent.tokens}), encoding="utf-8")
