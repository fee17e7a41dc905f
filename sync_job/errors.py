"""The exception tree, grouped by what the caller does, and the exit code each branch maps to.

    SyncError                      root: anything sync-job raises on purpose
    ├── InputError        exit 2   a human must change something first; nothing was written
    │   ├── ConfigError            the YAML file, an environment variable, the value expression, --every
    │   ├── SourceError            a source is wrong or refused (404, HTML page, access denied, not a file)
    │   ├── DataError              a source's content is wrong (column, type, duplicate key, empty)
    │   ├── AuthError              the destination rejected the credentials (Pipedrive 401, PostgreSQL auth)
    │   └── WorkdirError           the workdir cannot be written (read-only, not a folder, disk full)
    ├── TransientError    exit 1   worth retrying (429, 5xx, timeouts, refused connections); retried where raised
    ├── Unavailable       exit 1   a server (destination or source) kept failing or was unreachable after retries
    ├── RowError          exit 1   one record rejected by the destination: reported, the run goes on
    ├── BudgetExhausted   exit 1   the daily API budget (or --max-tokens) ran out: partial run
    ├── Interrupted       exit 1   SIGTERM/SIGINT: in-flight work finished, results written
    └── LockHeld          exit 3   another run holds the workdir lock: nothing touched
    anything else         exit 70  a bug: one line on stderr, the traceback with --verbose

The rule for a new failure: would the same run, with nothing changed by a human, pass on a later try?
Then it is exit 1 (Unavailable, or TransientError inside a retry loop): a server down or refusing
connections, a timeout, a dropped connection, a name server that does not answer, a rate limit. If it
cannot pass until someone fixes the config, the data, the credentials, the permissions, the disk or the
destination's schema, it is exit 2 (an InputError subclass). A scheduler retries exit 1 and fails at once
on exit 2 (conf/k8s/cronjob.yaml's podFailurePolicy), so misfiling a network blip as 2 loses a day.

Exit codes are a public contract (README): 0 in sync, 1 partial, 2 input/config, 3 locked, 70 bug.
Messages never contain a secret (API token, DSN): they are built from names and ids, never from headers.
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


class WorkdirError(InputError):
    """The workdir cannot be created or written: read-only, not a folder, no permission, disk or quota full."""


class TransientError(SyncError):
    """A failure worth retrying: rate limit, 5xx, timeout, dropped connection.

    Meant to be retried where it is raised; one that escapes the retries may pass on a later run (exit 1).
    """

    exit_code = EXIT_PARTIAL

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(SyncError):
    """A server (the destination or a source) kept failing, or could not be reached, after bounded retries.

    Nothing a human must fix is known to be wrong: a later run will do the work.
    """

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


def tried(attempts: int) -> str:
    """How a message says what bounded retries did: "tried once", "tried 3 times"."""
    return "tried once" if attempts == 1 else f"tried {attempts} times"
