"""How a run ended: the status, message and exit code, decided once from what happened.

The order of the checks in `decide` is the contract, most serious first:

    failed            an exception ended the run              its exit code (2 input, 1 partial, 70 bug, ...)
    interrupted       a signal before any write               1
    budget_exhausted  reading did not fit in the budget       1
    dry_run           the plan was made, nothing sent         0
    interrupted       a signal while applying                 1
    budget_exhausted  the budget ran out while applying       1
    partial           failed records, held deletes, remote duplicates (in that order)   1
    ok                everything planned was applied          0
"""

from __future__ import annotations

from dataclasses import dataclass

from sync_job.config import RunStatus
from sync_job.errors import EXIT_INTERNAL, EXIT_OK, EXIT_PARTIAL, first_line


@dataclass(frozen=True, slots=True)
class Failure:
    """The exception that ended a run, as much of it as the report keeps."""

    line: str
    exit_code: int

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        # Anything that is not a SyncError is a bug: exit 70, as the CLI maps it.
        return cls(first_line(exc), getattr(exc, "exit_code", EXIT_INTERNAL))


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What happened in one run, gathered as it went; no judgement in here.

    A message field is None when that thing did not happen, and the exception's text when it did.
    """

    dry_run: bool = False  # the plan was made and, as asked, not applied
    error: Failure | None = None  # an exception ended the run
    interrupted: str | None = None  # a signal before any write (fetching, reading, or a destination that wrote nothing)
    budget_before_plan: str | None = None  # not even the reading fitted in the API budget
    stopped: bool = False  # a signal while applying: in-flight work finished, no new work taken
    budget_while_applying: str | None = None  # the budget ran out part way through the writes
    failed_records: int = 0
    held_line: str = ""  # the mirror guard kept deletes back: the line that says so
    duplicates: int = 0  # external ids that exist more than once in the destination (left alone)


@dataclass(frozen=True, slots=True)
class Verdict:
    status: RunStatus
    message: str
    exit_code: int


def decide(facts: RunFacts) -> Verdict:
    """The run's status, message and exit code (see the module docstring for the order)."""
    if facts.error is not None:
        return Verdict("failed", facts.error.line, facts.error.exit_code)
    if facts.interrupted is not None:
        return Verdict("interrupted", facts.interrupted, EXIT_PARTIAL)
    if facts.budget_before_plan is not None:
        return Verdict("budget_exhausted", f"partial: nothing applied: {facts.budget_before_plan}", EXIT_PARTIAL)
    if facts.dry_run:
        return Verdict("dry_run", "", EXIT_OK)
    if facts.stopped:
        return Verdict("interrupted", "interrupted: stopped taking new work on a signal", EXIT_PARTIAL)
    if facts.budget_while_applying is not None:
        return Verdict("budget_exhausted", f"partial: {facts.budget_while_applying}", EXIT_PARTIAL)
    if facts.failed_records:
        return Verdict("partial", f"partial: {facts.failed_records} record(s) failed", EXIT_PARTIAL)
    if facts.held_line:
        return Verdict("partial", f"partial: {facts.held_line}", EXIT_PARTIAL)
    if facts.duplicates:
        message = f"partial: {facts.duplicates} external id(s) exist more than once in the destination: left alone"
        return Verdict("partial", message, EXIT_PARTIAL)
    return Verdict("ok", "", EXIT_OK)
