"""HTTP(S) sources: streamed to WORKDIR/raw/ with httpx, conditional on ETag/Last-Modified, retried with stamina."""

from __future__ import annotations

import email.utils
import logging
import time

import httpx
import stamina

from sync_job import __version__, errors
from sync_job.config import FetchSettings
from sync_job.errors import SourceError, TransientError, Unavailable
from sync_job.sources.base import CHUNK_BYTES, FetchedSource, display_uri, label
from sync_job.sources.store import RawStore, Validators

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_SECONDS = 60.0
SNIFF_BYTES = 512
HTML_TYPES = ("text/html", "application/xhtml+xml")
HTML_STARTS = (b"<!doctype", b"<html")


def make_client(settings: FetchSettings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A client for source downloads only: it never carries the Pipedrive token or any other credential."""
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.timeout_seconds),
        follow_redirects=True,
        headers={"User-Agent": f"sync-job/{__version__}", "Accept": "text/csv, */*;q=0.5"},
    )


def is_html_type(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in HTML_TYPES


def looks_like_html(prefix: bytes) -> bool:
    """A body that opens like an HTML document (after an optional BOM and whitespace) is not a CSV."""
    head = prefix.removeprefix(b"\xef\xbb\xbf").lstrip()[:16].lower()
    return head.startswith(HTML_STARTS)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), capped; None when absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, min(seconds, MAX_RETRY_AFTER_SECONDS))


def should_retry(exc: Exception) -> bool | float:
    """stamina's hook: retry timeouts, dropped connections, 5xx and 429 (honouring Retry-After); nothing else."""
    if isinstance(exc, TransientError):
        return exc.retry_after if exc.retry_after else True
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def _describe(exc: Exception) -> str:
    """A transport failure in words; built from the type, never from the request (the URL may hold secrets)."""
    if isinstance(exc, TransientError):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed before the body was complete (truncated download)"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect to the server"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "invalid URL (needs http:// or https:// and a host)"
    return f"network error ({type(exc).__name__})"


class HttpSource:
    """Downloads one URL to `WORKDIR/raw/<name>.csv`; skips it when the server says it has not changed."""

    def __init__(self, client: httpx.AsyncClient, store: RawStore, settings: FetchSettings) -> None:
        self._client = client
        self._store = store
        self._settings = settings

    async def fetch(self, name: str, uri: str) -> FetchedSource:
        attempts = self._settings.max_attempts
        tried = 0
        try:
            async for attempt in stamina.retry_context(
                on=should_retry,
                attempts=attempts,
                timeout=attempts * self._settings.timeout_seconds,
                wait_max=10.0,
            ):
                with attempt:
                    tried = attempt.num
                    return await self._attempt(name, uri)
        except SourceError:
            raise
        except (TransientError, httpx.TransportError) as exc:
            # The server, not the configuration: the same run may pass later (exit 1, the scheduler retries).
            raise Unavailable(f"{label(name, uri)}: {_describe(exc)} ({errors.tried(tried)})") from None
        except httpx.InvalidURL:
            raise SourceError(f"{label(name, uri)}: invalid URL") from None
        except httpx.TooManyRedirects:
            limit = self._client.max_redirects
            raise SourceError(f"{label(name, uri)}: redirected more than {limit} times (a redirect loop?)") from None
        except httpx.DecodingError:
            raise SourceError(f"{label(name, uri)}: the body does not decode as its Content-Encoding says") from None
        except httpx.HTTPError as exc:  # any other httpx error
            raise SourceError(f"{label(name, uri)}: {type(exc).__name__}") from None
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def _attempt(self, name: str, uri: str) -> FetchedSource:
        validators = self._store.validators(name, uri)
        headers: dict[str, str] = {}
        if validators and validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators and validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        async with self._client.stream("GET", uri, headers=headers) as response:
            status = response.status_code
            if status == 304 and validators:
                target = self._store.target(name)
                log.info("%s unchanged (HTTP 304): keeping %s", label(name, uri), target)
                size = target.stat().st_size
                return FetchedSource(name, display_uri(uri), target, False, size, etag=validators.etag)
            if status in (408, 429) or status >= 500:
                after = retry_after_seconds(response.headers.get("Retry-After"))
                raise TransientError(f"HTTP {status} {response.reason_phrase}".strip(), retry_after=after)
            if status != 200:
                raise SourceError(f"{label(name, uri)}: HTTP {status} {response.reason_phrase}".strip())
            if is_html_type(response.headers.get("Content-Type")):
                raise SourceError(f"{label(name, uri)}: got an HTML page (Content-Type text/html), expected CSV")
            return await self._download(name, uri, response)

    async def _download(self, name: str, uri: str, response: httpx.Response) -> FetchedSource:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        with self._store.part(name) as part:
            prefix = b""
            sniffed = False
            async for chunk in response.aiter_bytes(CHUNK_BYTES):
                if not sniffed:
                    prefix += chunk[:SNIFF_BYTES]
                    sniffed = len(prefix) >= SNIFF_BYTES
                    if sniffed and looks_like_html(prefix):
                        break
                part.write(chunk)
            if looks_like_html(prefix):
                raise SourceError(f"{label(name, uri)}: got an HTML page instead of CSV")
            # Content-Length counts bytes on the wire: before gzip decoding, like num_bytes_downloaded.
            received = response.num_bytes_downloaded if response.headers.get("Content-Encoding") else part.size
            if expected is not None and received != expected:
                raise TransientError(f"truncated download: {received} of {expected} bytes received")
            found = Validators(etag=response.headers.get("ETag"), last_modified=response.headers.get("Last-Modified"))
            target = self._store.commit(part, name, uri, found)
            log.info("%s downloaded: %d bytes -> %s", label(name, uri), part.size, target)
            return FetchedSource(name, display_uri(uri), target, downloaded=True, size=part.size, etag=found.etag)
