"""What a failed request means: the error for a response or transport failure, and whether to retry it.

TransientError            retried (stamina, bounded in attempts and time, with jitter)
├── NotSent               connect error / connect or pool timeout: the request never left (the client's
│                         reads turn it into Unavailable, exit 1, or ConfigError, exit 2, for a host
│                         name that does not exist)
├── RateLimited           429 or Cloudflare-like HTML 403: the limiter pauses, then retry
└── OutcomeUnknown        timeout or connection lost after sending, or a 5xx: may have been applied,
                          so only idempotent requests retry it blindly; a create re-reads first
AuthError (401), BudgetExhausted (429 with no daily tokens left), RowError (other 4xx): never retried
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from sync_job.errors import AuthError, BudgetExhausted, RowError, SyncError, TransientError
from sync_job.pipedrive.ratelimit import RateHeaders
from sync_job.pipedrive.stats import ApiStats

RETRY_STATUSES = frozenset({500, 502, 503, 504})
FORBIDDEN_BACKOFF = 15.0  # first wait after an HTML 403; doubles per consecutive one, capped below


class NotSent(TransientError):
    """The request surely never reached the server; `reason` says why (e.g. "connection refused").

    `unknown_host` is set when DNS answered that the host name does not exist: a typo in the base URL
    needs a human, while a name server that does not answer (EAI_AGAIN) may be fine on the next run.
    """

    def __init__(self, message: str, *, reason: str = "", unknown_host: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.unknown_host = unknown_host


class RateLimited(TransientError):
    """The server asked us to slow down; `retry_after` is how long."""


class OutcomeUnknown(TransientError):
    """The request may or may not have been processed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def error_text(response: httpx.Response, secret: str) -> str:
    """Pipedrive's `error` text (or the reason phrase), one line, short, with the secret never echoed."""
    text = ""
    try:
        body: Any = response.json()
        if isinstance(body, dict):
            text = str(body.get("error") or "")
    except ValueError:
        pass
    text = " ".join((text or response.reason_phrase or "").split())[:200]
    return text.replace(secret, "***") if secret else text


def is_html(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "").lower()
    return "text/html" in kind or response.content.lstrip()[:1] == b"<"


def response_error(
    response: httpx.Response,
    headers: RateHeaders,
    *,
    where: str,
    base_url: str,
    secret: str,
    forbidden_streak: int = 1,
) -> SyncError | None:
    """The error a response stands for, or None when it is a success."""
    status = response.status_code
    if status < 300:
        return None
    if status == 401:
        return AuthError(f"the API token was rejected (401) by {base_url}")
    if status == 429:
        if headers.daily_remaining is not None and headers.daily_remaining <= 0:
            return BudgetExhausted(f"{where}: the daily Pipedrive API token budget is used up (429, 0 tokens left)")
        return RateLimited(f"{where}: rate limited (429)", retry_after=headers.wait_after_429())
    if status == 403 and is_html(response):
        wait = min(FORBIDDEN_BACKOFF * 2 ** (forbidden_streak - 1), 8 * FORBIDDEN_BACKOFF)
        return RateLimited(f"{where}: blocked by the edge (HTML 403), backing off", retry_after=wait)
    if status in RETRY_STATUSES:
        return OutcomeUnknown(f"{where}: server error {status} {error_text(response, secret)}".rstrip(), status=status)
    return RowError(f"{where}: rejected with {status}: {error_text(response, secret)}", status=status)


def transport_error(exc: httpx.HTTPError, *, where: str) -> TransientError:
    """Classify an httpx failure; the message names only the class, never the request or its headers."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        reason = connect_reason(exc)
        return NotSent(f"{where}: {name} (not sent: {reason})", reason=reason, unknown_host=unknown_host(exc))
    return OutcomeUnknown(f"{where}: {name} after sending")


def connect_reason(exc: BaseException) -> str:
    """Why a connection failed, only from the OS error under httpx's wrappers (OS text carries no secret)."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return "timed out"
    for seen in _causes(exc):
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            found = "host not found" if seen.errno in _NO_SUCH_HOST else "name lookup failed"
            return f"{found} ({seen.strerror})"
        if isinstance(seen, OSError) and seen.strerror:
            return str(seen.strerror).lower()
    return "connection failed"  # never the exception text: a transport may put anything in it


# getaddrinfo's definite answers: the name does not exist, or has no address. EAI_AGAIN ("temporary
# failure in name resolution") and every other code may pass on a later run.
_NO_SUCH_HOST = frozenset({socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)})


def unknown_host(exc: BaseException) -> bool:
    """True when the failure under httpx's wrappers is DNS saying the host name does not exist."""
    dns = next((seen for seen in _causes(exc) if isinstance(seen, socket.gaierror)), None)
    return dns is not None and dns.errno in _NO_SUCH_HOST


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those under it (httpx wraps the OS error in one or two layers)."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def retry_hook(stats: ApiStats, *, retry_unknown: bool) -> Callable[[Exception], bool | float]:
    """The stamina hook: retry transient failures.

    Rate limits are not retried here: the client waits them out in the limiter, bounded by time rather than
    by attempts, so a crowded window cannot use up the attempts meant for real failures.
    """

    def hook(exc: Exception) -> bool | float:
        if isinstance(exc, RateLimited) or (isinstance(exc, OutcomeUnknown) and not retry_unknown):
            return False
        if isinstance(exc, TransientError):
            stats.retries += 1
            return True
        return False

    return hook
