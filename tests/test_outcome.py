"""The run's outcome, decided once from what happened: every status, and which fact wins when several happened."""

from __future__ import annotations

import pytest

from sync_job.errors import EXIT_INPUT, EXIT_INTERNAL, EXIT_OK, EXIT_PARTIAL, ConfigError, Unavailable
from sync_job.outcome import Failure, RunFacts, Verdict, decide

HELD = "3 deal deletes held back: more than max_delete_fraction 0.1 (run with --allow-deletes)"


def test_a_run_that_applied_everything_is_ok_and_exits_0() -> None:
    assert decide(RunFacts()) == Verdict("ok", "", EXIT_OK)


def test_a_dry_run_that_planned_is_dry_run_and_exits_0() -> None:
    assert decide(RunFacts(dry_run=True)) == Verdict("dry_run", "", EXIT_OK)


def test_an_exception_fails_the_run_with_its_first_line_and_exit_code() -> None:
    failure = Failure.of(ConfigError("PIPEDRIVE_API_TOKEN is not set\nsecond line"))
    assert decide(RunFacts(error=failure)) == Verdict("failed", "PIPEDRIVE_API_TOKEN is not set", EXIT_INPUT)
    assert decide(RunFacts(error=Failure.of(Unavailable("Pipedrive unreachable")))).exit_code == EXIT_PARTIAL


def test_an_exception_that_is_not_a_sync_error_is_a_bug_exit_70_named_by_its_type_when_it_has_no_message() -> None:
    assert decide(RunFacts(error=Failure.of(KeyError()))) == Verdict("failed", "KeyError", EXIT_INTERNAL)


def test_a_signal_before_any_write_is_interrupted_with_the_exceptions_message() -> None:
    facts = RunFacts(interrupted="interrupted while reading: nothing was written")
    assert decide(facts) == Verdict("interrupted", "interrupted while reading: nothing was written", EXIT_PARTIAL)


def test_a_budget_too_small_for_the_reading_applies_nothing_and_says_so() -> None:
    verdict = decide(RunFacts(budget_before_plan="daily budget spent"))
    assert verdict == Verdict("budget_exhausted", "partial: nothing applied: daily budget spent", EXIT_PARTIAL)


def test_a_signal_while_applying_is_interrupted_after_finishing_in_flight_work() -> None:
    verdict = decide(RunFacts(stopped=True))
    assert verdict == Verdict("interrupted", "interrupted: stopped taking new work on a signal", EXIT_PARTIAL)


def test_a_budget_spent_while_applying_is_budget_exhausted() -> None:
    verdict = decide(RunFacts(budget_while_applying="--max-tokens 100 reached"))
    assert verdict == Verdict("budget_exhausted", "partial: --max-tokens 100 reached", EXIT_PARTIAL)


def test_failed_records_make_the_run_partial_with_their_count() -> None:
    assert decide(RunFacts(failed_records=2)) == Verdict("partial", "partial: 2 record(s) failed", EXIT_PARTIAL)


def test_held_deletes_make_the_run_partial_with_the_guards_line() -> None:
    assert decide(RunFacts(held_line=HELD)) == Verdict("partial", f"partial: {HELD}", EXIT_PARTIAL)


def test_remote_duplicates_make_the_run_partial() -> None:
    verdict = decide(RunFacts(duplicates=4))
    message = "partial: 4 external id(s) exist more than once in the destination: left alone"
    assert verdict == Verdict("partial", message, EXIT_PARTIAL)


# Everything that can go wrong in an apply at once; each row below adds one more serious fact.
APPLY_TROUBLE = RunFacts(stopped=True, budget_while_applying="spent", failed_records=1, held_line=HELD, duplicates=1)


@pytest.mark.parametrize(
    ("facts", "status", "message"),
    [
        (RunFacts(failed_records=1, held_line=HELD, duplicates=1), "partial", "partial: 1 record(s) failed"),
        (RunFacts(held_line=HELD, duplicates=1), "partial", f"partial: {HELD}"),
        (RunFacts(budget_while_applying="spent", failed_records=1), "budget_exhausted", "partial: spent"),
        (APPLY_TROUBLE, "interrupted", "interrupted: stopped taking new work on a signal"),
        (RunFacts(dry_run=True, held_line=HELD, duplicates=3), "dry_run", ""),
        (RunFacts(budget_before_plan="spent", dry_run=True), "budget_exhausted", "partial: nothing applied: spent"),
        (RunFacts(interrupted="interrupted while reading", budget_before_plan="spent"), "interrupted", None),
        (RunFacts(error=Failure("disk full", EXIT_INPUT), interrupted="x", dry_run=True), "failed", "disk full"),
        (RunFacts(error=Failure("boom", EXIT_INTERNAL), stopped=True, failed_records=9), "failed", "boom"),
    ],
    ids=[
        "failed-records-before-held-deletes",
        "held-deletes-before-duplicates",
        "budget-while-applying-before-failed-records",
        "signal-while-applying-before-everything-in-the-apply",
        "a-dry-run-ignores-held-deletes-and-duplicates",
        "budget-before-plan-before-dry-run",
        "signal-before-any-write-before-budget",
        "an-exception-before-everything",
        "an-exception-after-an-apply",
    ],
)
def test_the_more_serious_fact_decides_the_outcome(facts: RunFacts, status: str, message: str | None) -> None:
    verdict = decide(facts)
    assert verdict.status == status
    if message is not None:
        assert verdict.message == message


def test_only_ok_and_dry_run_exit_0() -> None:
    assert {decide(f).exit_code for f in (RunFacts(), RunFacts(dry_run=True))} == {EXIT_OK}
    partial = (RunFacts(stopped=True), RunFacts(budget_while_applying="x"), RunFacts(duplicates=1))
    assert {decide(f).exit_code for f in partial} == {EXIT_PARTIAL}
