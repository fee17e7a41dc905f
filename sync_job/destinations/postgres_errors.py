"""PostgreSQL failures sorted by what the caller does next: SQLSTATE class -> sync-job exception (no I/O).

    may pass on a later run (exit 1, Unavailable)
        no SQLSTATE      the client lost or never got a connection (refused, timeout, closed mid-COPY)
        08 / 57P0x       connection exception; the server shut down, crashed or is starting (pg_terminate_backend)
        40               serialization failure, deadlock: the transaction was rolled back by the server
        53 / 58          insufficient resources (too many connections, out of memory, disk full), I/O error
        57014            a statement timeout set on the server
    another writer holds the table (exit 3, LockHeld)
        55P03            lock_timeout ran out
    a human must fix something (exit 2)
        28               AuthError: credentials rejected
        22               DataError: a value does not fit its column
        anything else    ConfigError: the table's definition (23 NOT NULL, CHECK, foreign key), privileges
                         (42), a trigger that raises (P0), a database that does not exist (3D) ...

Messages carry only the server's primary message and the names it reports (column, constraint): its DETAIL and
CONTEXT quote whole rows ("Failing row contains (11, 239575, Amy, Müller, ...)"), which are personal data.
"""

from __future__ import annotations

import re

import psycopg
from psycopg.conninfo import conninfo_to_dict

from sync_job.errors import AuthError, ConfigError, DataError, LockHeld, SyncError, Unavailable

_LATER = ("08", "40", "53", "58", "57P01", "57P02", "57P03", "57014")
# libpq passes on some of the server's FATAL answers (to a connection attempt, or ending one) as text only:
# the SQLSTATE the server sent, by its message (PostgreSQL 12-17).
_FATAL_TEXTS = {
    "57P01": ("terminating connection due to administrator command",),
    "57P03": ("the database system is starting up", "the database system is shutting down",
              "the database system is in recovery mode", "the database system is not yet accepting connections"),
    "53300": ("too many clients already", "connection slots are reserved", "too many connections for"),
    "28000": ("authentication failed", "no pg_hba.conf entry", 'FATAL:  role "'),
}  # fmt: skip


def classify(exc: psycopg.Error, where: str, dsn: str) -> SyncError:
    """The exception to raise for `exc`, its message `where: <what the server said>`, one line, no secrets."""
    message = f"{where}: {describe(exc, dsn)}"
    state = exc.sqlstate or _fatal_state(exc)
    if state is None:
        # No answer from a server: a network or server outage (or a DSN typo the next run repeats, but a
        # refused or dropped connection is far more often a restart, a failover or a blip).
        return Unavailable(message) if isinstance(exc, psycopg.OperationalError) else ConfigError(message)
    if state.startswith(_LATER):
        return Unavailable(message)
    if state == "55P03":
        return LockHeld(message)
    if state.startswith("28"):
        return AuthError(message)
    if state.startswith("22"):
        return DataError(message)
    return ConfigError(message)


def _fatal_state(exc: psycopg.Error) -> str | None:
    """The SQLSTATE of a FATAL answer that reached us as text only; None when no server answered."""
    text = str(exc)
    if "FATAL:" not in text:
        return None
    for state, phrases in _FATAL_TEXTS.items():
        if any(phrase in text for phrase in phrases):
            return state
    return "3D000" if "does not exist" in text else "XX000"  # no such database, or a reason of the server's own


def describe(exc: psycopg.Error, dsn: str) -> str:
    """The server's primary message plus the column or constraint it names; never DETAIL, CONTEXT or the password."""
    diag = exc.diag
    text = diag.message_primary if exc.sqlstate and diag.message_primary else str(exc)
    names = [f"{label} {value}" for label, value in (("column", diag.column_name),
             ("constraint", diag.constraint_name)) if value and value not in text]  # fmt: skip
    if names:
        text = f"{text} ({', '.join(names)})"
    return redact(text, dsn)


def redact(text: str, dsn: str) -> str:
    """One line, with every spelling of the DSN's password replaced (libpq messages name host and user only)."""
    secrets = set(re.findall(r"password\s*=\s*'?([^\s']+)", dsn)) | set(re.findall(r"://[^:/@]*:([^@]*)@", dsn))
    try:
        password = conninfo_to_dict(dsn).get("password")
        if password:
            secrets.add(str(password))
    except psycopg.Error:
        pass
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return " ".join(re.sub(r"password\s*=\s*\S+", "password=***", text).split())
