"""S3 sources (s3://bucket/key): boto3's streaming GET run in a thread, conditional on the stored ETag."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import stamina
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from sync_job.config import Settings
from sync_job.errors import ConfigError, SourceError
from sync_job.sources.base import CHUNK_BYTES, FetchedSource, display_uri, label
from sync_job.sources.store import RawStore, Validators

if TYPE_CHECKING:
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
# A stream that breaks mid-body is retried here; botocore itself retries the request (5xx, throttling, resets).
_BROKEN_STREAM = (IncompleteReadError, ResponseStreamingError, ReadTimeoutError, ConnectionClosedError)


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


class _Cancelled(Exception):
    """The awaiting task was cancelled: stop streaming, drop the temp file."""


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
                    retries={"max_attempts": fetch.max_attempts, "mode": "standard"},
                    # S3-compatible stores (MinIO, Ceph, moto) expect path-style bucket addressing.
                    s3={"addressing_style": "path"} if s3.endpoint_url else None,
                )
                region = s3.region or os.environ.get("AWS_REGION") or None
                session = boto3.session.Session()
                self._client = session.client("s3", endpoint_url=s3.endpoint_url, region_name=region, config=config)
            return self._client

    async def fetch(self, name: str, uri: str) -> FetchedSource:
        parse_s3_uri(name, uri)
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._fetch_blocking, name, uri, cancel)
        except asyncio.CancelledError:
            cancel.set()  # the thread cannot be interrupted, but it checks this between chunks
            raise

    def _fetch_blocking(self, name: str, uri: str, cancel: threading.Event) -> FetchedSource:
        where = label(name, uri)
        tried = 0
        try:
            for attempt in stamina.retry_context(on=_BROKEN_STREAM, attempts=self._settings.fetch.max_attempts):
                with attempt:
                    tried = attempt.num
                    return self._attempt(name, uri, cancel)
        except ClientError as exc:
            raise SourceError(f"{where}: {describe_client_error(exc)}") from None
        except (NoCredentialsError, PartialCredentialsError):
            raise SourceError(
                f"{where}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            ) from None
        except (EndpointConnectionError, ConnectTimeoutError):
            raise SourceError(f"{where}: cannot connect to the S3 endpoint") from None
        except _BROKEN_STREAM as exc:
            raise SourceError(f"{where}: download broke off ({type(exc).__name__}, tried {tried} times)") from None
        except BotoCoreError as exc:
            raise SourceError(f"{where}: S3 client error ({type(exc).__name__})") from None
        except _Cancelled:
            raise SourceError(f"{where}: download cancelled") from None
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    def _attempt(self, name: str, uri: str, cancel: threading.Event) -> FetchedSource:
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
                return FetchedSource(name, display_uri(uri), target, downloaded=False, size=target.stat().st_size)
            raise
        body = response["Body"]
        expected = response.get("ContentLength")
        try:
            with self._store.part(name) as part:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    if cancel.is_set():
                        raise _Cancelled
                    part.write(chunk)
                if expected is not None and part.size != expected:
                    raise IncompleteReadError(actual_bytes=part.size, expected_bytes=expected)
                found = Validators(etag=response.get("ETag"), last_modified=None)
                self._store.commit(part, name, uri, found)
        finally:
            body.close()
        log.info("%s downloaded: %d bytes -> %s", label(name, uri), part.size, target)
        return FetchedSource(name, display_uri(uri), target, downloaded=True, size=part.size)
