"""The exception tree, grouped by what the caller does, and the exit code each branch maps to.

    SyncError                      root: anything sync-job raises on purpose
    ├── InputError        exit 2   fatal before any write: fix the config or the data, then re-run
    │   ├── ConfigError            the YAML file, an environment variable, the value expression
    │   ├── SourceError            a source could not be fetched (404, HTML page, truncated, timeout)
    │   ├── DataError              a source's content is wrong (column, type, duplicate key, empty)
    │   └── AuthError              the destination rejected the credentials (Pipedrive 401)
    ├── TransientError             worth retrying (429, 5xx, timeouts); never escapes the client's retries
    ├── Unavailable       exit 1   the destination kept failing after retries: nothing more done, try later
    ├── RowError                   one record rejected by the destination: reported, the run goes on
    ├── BudgetExhausted   exit 1   the daily API budget (or --max-tokens) ran out: partial run
    ├── Interrupted       exit 1   SIGTERM/SIGINT: in-flight work finished, results written
    └── LockHeld          exit 3   another run holds the workdir lock: nothing touched

Exit codes are a public contract (README): 0 in sync, 1 partial, 2 input/config, 3 locked.
Messages never contain the API token: they are built from names and ids, never from headers.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_INPUT = 2
EXIT_LOCKED = 3
EXIT_INTERNAL = 70  # an unexpected bug (EX_SOFTWARE): one line on stderr, traceback only with --verbose


class SyncError(Exception):
    """Root of every error sync-job raises on purpose."""

    exit_code: int = EXIT_INTERNAL


class InputError(SyncError):
    """Bad configuration or source data: fatal, raised before anything is written."""

    exit_code = EXIT_INPUT


class ConfigError(InputError):
    """The config file, an environment variable or the value expression is wrong."""


class SourceError(InputError):
    """A source could not be fetched completely."""


class DataError(InputError):
    """A source file's content is invalid (names the file, line or key)."""


class AuthError(InputError):
    """The destination rejected the credentials."""


class TransientError(SyncError):
    """A failure worth retrying: rate limit, 5xx, timeout, dropped connection."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(SyncError):
    """The destination could not be read or reached after bounded retries: a later run will do the work."""

    exit_code = EXIT_PARTIAL


class RowError(SyncError):
    """One record was rejected by the destination; the run goes on."""

    exit_code = EXIT_PARTIAL

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BudgetExhausted(SyncError):
    """The daily API token budget, or the run's --max-tokens cap, ran out."""

    exit_code = EXIT_PARTIAL


class Interrupted(SyncError):
    """The run was asked to stop (SIGTERM/SIGINT) and stopped cleanly."""

    exit_code = EXIT_PARTIAL


class LockHeld(SyncError):
    """Another run holds the workdir lock."""

    exit_code = EXIT_LOCKED


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type's name): enough for a one-line error."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
