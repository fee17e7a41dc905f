"""Classifying PostgreSQL failures by what the caller does next (pure: built exceptions, no server)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg_errors

from sync_job.destinations.postgres_errors import classify
from sync_job.errors import EXIT_INPUT, EXIT_LOCKED, AuthError, DataError, SyncError, Unavailable

DSN = "host=db user=sync password=s3cret-pw"


@pytest.mark.parametrize(
    ("exc", "kind", "exit_code"),
    [
        (psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"), Unavailable, 1),
        (psycopg.OperationalError("connection failed: ... failed: Connection refused"), Unavailable, 1),
        (psycopg.OperationalError("failed to resolve host 'db': Name or service not known"), Unavailable, 1),
        (psycopg.OperationalError("failed: FATAL:  the database system is starting up"), Unavailable, 1),
        (psycopg.OperationalError("failed: FATAL:  sorry, too many clients already"), Unavailable, 1),
        (psycopg.OperationalError("FATAL:  terminating connection due to administrator command"), Unavailable, 1),
        (psycopg.OperationalError('failed: FATAL:  password authentication failed for user "sync"'), AuthError, 2),
        (psycopg.OperationalError('failed: FATAL:  role "sync" does not exist'), AuthError, 2),
        (psycopg.OperationalError('failed: FATAL:  database "crm" does not exist'), SyncError, 2),
        (pg_errors.AdminShutdown("terminating connection due to administrator command"), Unavailable, 1),
        (pg_errors.SerializationFailure("could not serialize access"), Unavailable, 1),
        (pg_errors.DeadlockDetected("deadlock detected"), Unavailable, 1),
        (pg_errors.DiskFull("could not extend file"), Unavailable, 1),
        (pg_errors.QueryCanceled("canceling statement due to statement timeout"), Unavailable, 1),
        (pg_errors.LockNotAvailable("canceling statement due to lock timeout"), SyncError, EXIT_LOCKED),
        (pg_errors.NotNullViolation('null value in column "region"'), SyncError, EXIT_INPUT),
        (pg_errors.InsufficientPrivilege("permission denied for table orders"), SyncError, EXIT_INPUT),
        (pg_errors.RaiseException("order 15 is frozen"), SyncError, EXIT_INPUT),
        (pg_errors.NumericValueOutOfRange("numeric field overflow"), DataError, EXIT_INPUT),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_what_may_pass_on_a_later_run_is_exit_1_and_what_needs_a_human_is_exit_2(
    exc: psycopg.Error, kind: type[SyncError], exit_code: int
) -> None:
    error = classify(exc, "PostgreSQL table orders, applying", DSN)
    assert isinstance(error, kind)
    assert error.exit_code == exit_code
    assert str(error).startswith("PostgreSQL table orders, applying: ")


def test_a_message_is_one_line_without_the_password() -> None:
    exc = psycopg.OperationalError("connection to server failed: password=s3cret-pw\n\tIs the server running?")
    message = str(classify(exc, "cannot connect", DSN))
    assert "s3cret-pw" not in message
    assert "\n" not in message
    assert message.endswith("Is the server running?")
