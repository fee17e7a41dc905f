"""S3 sources (s3://bucket/key): boto3's streaming GET run in a daemon thread, conditional on the stored ETag."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import stamina
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.exceptions import ConnectionError as S3ConnectionError

from sync_job import errors
from sync_job.config import Settings
from sync_job.errors import ConfigError, SourceError, Unavailable
from sync_job.sources.base import CHUNK_BYTES, FetchedSource, display_uri, label
from sync_job.sources.daemon import in_daemon_thread
from sync_job.sources.encoding import CorruptBody, UnsupportedEncoding, decoder_for
from sync_job.sources.store import RawStore, Validators

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# What S3 error codes mean for the person running the job; the server's own message is never shown.
_CODES = {
    "NoSuchBucket": "bucket does not exist",
    "NoSuchKey": "object not found (no such key)",
    "404": "object or bucket not found",
    "NotFound": "object or bucket not found",
    "AccessDenied": "access denied",
    "AllAccessDisabled": "access denied",
    "403": "access denied",
    "InvalidAccessKeyId": "bad credentials: the AWS access key id is not recognised",
    "SignatureDoesNotMatch": "bad credentials: the AWS secret access key does not match the key id",
    "InvalidToken": "bad credentials: the AWS session token is invalid",
    "ExpiredToken": "bad credentials: the AWS session token has expired",
    "TokenRefreshRequired": "bad credentials: the AWS session token has expired",
    "PermanentRedirect": "bucket is in another region: set s3.region or AWS_REGION",
    "AuthorizationHeaderMalformed": "wrong region for this bucket: set s3.region or AWS_REGION",
}
# Error codes S3 (and S3-compatible stores) answer when a later request may succeed.
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable"}
)


def parse_s3_uri(name: str, uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; ConfigError when either is missing."""
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key or key.endswith("/"):
        raise ConfigError(f"sources.{name}: expected s3://bucket/key naming one object, got {display_uri(uri)!r}")
    return bucket, key


def describe_client_error(error: ClientError) -> str:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return _CODES.get(code, f"S3 error {code or 'unknown'}")


def should_retry(exc: Exception) -> bool:
    """stamina's hook, the only retry layer: timeouts, refused or dropped connections, broken bodies, 5xx, 408,
    429 and S3's throttling codes. botocore's own retries are off, so N attempts are N requests."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES
    if isinstance(exc, SSLError):  # a certificate problem does not go away by asking again
        return False
    return isinstance(exc, S3ConnectionError | HTTPClientError | IncompleteReadError)


def _describe(exc: Exception) -> str:
    """A failure in words, from its type and S3 error code only (never the server's message or the request)."""
    if isinstance(exc, ClientError):
        return describe_client_error(exc)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return "cannot connect to the S3 endpoint"
    if isinstance(exc, ReadTimeoutError):
        return "timed out"
    if isinstance(exc, HTTPClientError | IncompleteReadError):
        return f"download broke off ({type(exc).__name__})"
    return f"S3 client error ({type(exc).__name__})"


class _Cancelled(Exception):
    """The awaiting task was cancelled: stop streaming, drop the temp file."""


class _Abort:
    """Set from the event loop when a fetch is cancelled; the worker thread checks it between chunks.

    A read already blocked in the socket would not see it until bytes arrive (a trickle may take hours), so
    setting it also shuts the body's socket down: shutdown() wakes a recv() in another thread, close() does not.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._body: StreamingBody | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            if self._body is not None:
                _shut_down(self._body)

    def reading(self, body: StreamingBody | None) -> None:
        """The body the worker is reading now (None when done), so that set() can wake it."""
        with self._lock:
            self._body = body
            if body is not None and self._event.is_set():
                _shut_down(body)


def _shut_down(body: StreamingBody) -> None:
    # botocore keeps urllib3's response as _raw_stream; urllib3 exposes its connection and that its socket.
    connection = getattr(getattr(body, "_raw_stream", None), "connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class S3Source:
    """Streams one object to `WORKDIR/raw/<name>.csv` in a worker thread so it overlaps the other downloads."""

    def __init__(self, store: RawStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    def _s3(self) -> S3Client:
        # One client shared by the worker threads (boto3 clients are thread-safe; sessions are not).
        with self._lock:
            if self._client is None:
                fetch, s3 = self._settings.fetch, self._settings.s3
                config = Config(
                    connect_timeout=fetch.timeout_seconds,
                    read_timeout=fetch.timeout_seconds,
                    # One request per attempt: stamina retries (see should_retry); botocore's retries inside
                    # each of them multiplied the requests (4 attempts made 20 connections).
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    # S3-compatible stores (MinIO, Ceph, moto) expect path-style bucket addressing.
                    s3={"addressing_style": "path"} if s3.endpoint_url else None,
                )
                region = s3.region or os.environ.get("AWS_REGION") or None
                session = boto3.session.Session()
                self._client = session.client("s3", endpoint_url=s3.endpoint_url, region_name=region, config=config)
            return self._client

    async def fetch(self, name: str, uri: str) -> FetchedSource:
        parse_s3_uri(name, uri)
        cancel = _Abort()
        try:
            return await in_daemon_thread(lambda: self._fetch_blocking(name, uri, cancel), f"s3-fetch-{name}")
        except asyncio.CancelledError:
            cancel.set()
            raise

    def _fetch_blocking(self, name: str, uri: str, cancel: _Abort) -> FetchedSource:
        where = label(name, uri)
        fetch = self._settings.fetch
        tried = 0
        try:
            for attempt in stamina.retry_context(
                on=should_retry, attempts=fetch.max_attempts, timeout=fetch.max_attempts * fetch.timeout_seconds
            ):
                with attempt:
                    tried = attempt.num
                    if cancel.is_set():
                        raise _Cancelled
                    return self._attempt(name, uri, cancel)
        except (NoCredentialsError, PartialCredentialsError):
            raise SourceError(
                f"{where}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            ) from None
        except (ClientError, BotoCoreError) as exc:
            if not should_retry(exc):  # a missing key, access denied ...: a human must act (exit 2)
                raise SourceError(f"{where}: {_describe(exc)}") from None
            # The store or the network, not the configuration: the same run may pass later (exit 1).
            raise Unavailable(f"{where}: {_describe(exc)} ({errors.tried(tried)})") from None
        except (UnsupportedEncoding, CorruptBody) as exc:
            raise SourceError(f"{where}: {exc}") from None
        except _Cancelled:
            raise SourceError(f"{where}: download cancelled") from None
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    def _attempt(self, name: str, uri: str, cancel: _Abort) -> FetchedSource:
        bucket, key = parse_s3_uri(name, uri)
        validators = self._store.validators(name, uri)
        request: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if validators and validators.etag:
            request["IfNoneMatch"] = validators.etag
        target = self._store.target(name)
        try:
            response = self._s3().get_object(**request)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if validators and status == 304:
                log.info("%s unchanged (same ETag): keeping %s", label(name, uri), target)
                size = target.stat().st_size
                return FetchedSource(name, display_uri(uri), target, False, size, etag=validators.etag)
            raise
        body = response["Body"]
        expected = response.get("ContentLength")  # bytes as stored: before any Content-Encoding is decoded
        decoder = decoder_for(response.get("ContentEncoding"))
        received = 0
        cancel.reading(body)
        try:
            with self._store.part(name) as part:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    if cancel.is_set():
                        raise _Cancelled
                    received += len(chunk)
                    for piece in decoder.decode(chunk) if decoder else (chunk,):
                        part.write(piece)
                if expected is not None and received != expected:
                    raise IncompleteReadError(actual_bytes=received, expected_bytes=expected)
                if decoder:
                    part.write(decoder.finish())
                if cancel.is_set():  # abandoned while finishing: the run is over, leave raw/ as it was
                    raise _Cancelled
                found = Validators(etag=response.get("ETag"), last_modified=None)
                self._store.commit(part, name, uri, found)
        finally:
            cancel.reading(None)
            body.close()
        log.info("%s downloaded: %d bytes -> %s", label(name, uri), part.size, target)
        return FetchedSource(name, display_uri(uri), target, downloaded=True, size=part.size, etag=found.etag)
