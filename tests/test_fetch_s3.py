"""S3 sources against a real S3-compatible server (moto's server mode) on 127.0.0.1: stream, ETag skip, errors."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest
import stamina
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError, SSLError

from sync_job.config import FetchSettings, S3Settings, Settings, Sources
from sync_job.errors import EXIT_PARTIAL, ConfigError, SourceError, Unavailable
from sync_job.fetch import fetch_all, fetch_all_sync
from sync_job.sources.s3 import should_retry
from tests.stalling import StallingServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

moto_server = pytest.importorskip("moto.server", reason="moto[server] is needed for the S3 tests")

SECRET = "wJalrXUtnFEMI-very-secret-key"
SAFETY = 30.0  # a safety net so a hang fails the test instead of blocking the suite; not a timing assertion
BODY = b"id,order_id,payment_method,amount\n" + b"".join(b"%d,%d,card,1000\n" % (i, i) for i in range(150_000))


class Moto:
    def __init__(self, url: str) -> None:
        self.url = url

    def post(self, path: str, data: bytes = b"") -> None:
        """moto's own control API (reset state, switch auth checks on/off)."""
        httpx.post(self.url + path, content=data, headers={"Content-Type": "text/plain"}, timeout=10).raise_for_status()

    def client(self) -> S3Client:
        """An admin client, used to set up buckets before auth checks are switched on."""
        return boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield Moto(f"http://{host}:{port}")
    server.stop()


@pytest.fixture
def s3(moto: Moto, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Client:
    """A fresh, empty S3 with credentials from the standard AWS environment variables and nothing from ~/.aws."""
    moto.post("/moto-api/reset")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never look for instance credentials off-box
    client = moto.client()
    client.create_bucket(Bucket="jaffle")
    client.put_object(Bucket="jaffle", Key="raw/payments.csv", Body=BODY)
    return client


@pytest.fixture
def enforced_auth(moto: Moto, s3: S3Client) -> Iterator[dict[str, str]]:
    """moto checks signatures and IAM policies; returns keys of a user who may read only `jaffle/*`."""
    iam = boto3.client(
        "iam", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::jaffle/*"}],
    }
    iam.put_user_policy(UserName="reader", PolicyName="read-jaffle", PolicyDocument=json.dumps(policy))
    s3.create_bucket(Bucket="private")
    s3.put_object(Bucket="private", Key="orders.csv", Body=b"id\n1\n")
    moto.post("/moto-api/reset-auth", b"0")
    try:
        yield {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        moto.post("/moto-api/reset-auth", b"inf")


def make_settings(tmp_path: Path, moto: Moto | None, **uris: str) -> Settings:
    for name in ("customers", "orders", "payments"):
        if name not in uris:
            local = tmp_path / f"{name}.csv"
            local.write_bytes(b"id\n1\n")
            uris[name] = str(local)
    return Settings(
        sources=Sources(**uris),
        workdir=tmp_path / "work",
        s3=S3Settings(endpoint_url=moto.url if moto else None, region="us-east-1"),
        fetch=FetchSettings(timeout_seconds=10, max_attempts=2),
    )


def part_files(settings: Settings) -> list[Path]:
    return list((settings.workdir / "raw").glob(".*.part"))


def test_object_is_streamed_to_raw_and_skipped_while_its_etag_is_unchanged(
    moto: Moto, s3: S3Client, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, moto, payments="s3://jaffle/raw/payments.csv")
    first = fetch_all_sync(settings)["payments"]
    assert first.downloaded
    assert first.uri == "s3://jaffle/raw/payments.csv"
    assert first.path == settings.workdir / "raw" / "payments.csv"
    assert first.path.read_bytes() == BODY
    meta: dict[str, Any] = json.loads((settings.workdir / "raw" / "payments.csv.meta.json").read_text())
    assert meta["etag"] == s3.head_object(Bucket="jaffle", Key="raw/payments.csv")["ETag"]

    second = fetch_all_sync(settings)["payments"]
    assert not second.downloaded
    assert second.size == len(BODY)
    assert first.etag == second.etag == meta["etag"]  # the report names the content by it

    s3.put_object(Bucket="jaffle", Key="raw/payments.csv", Body=b"id,order_id,payment_method,amount\n1,1,card,5\n")
    third = fetch_all_sync(settings)["payments"]
    assert third.downloaded
    assert third.path.read_bytes().endswith(b"1,1,card,5\n")
    assert part_files(settings) == []


def test_endpoint_may_come_from_the_standard_aws_environment(
    moto: Moto, s3: S3Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.url)
    settings = make_settings(tmp_path, None, orders="s3://jaffle/raw/payments.csv")
    assert fetch_all_sync(settings)["orders"].size == len(BODY)


async def test_local_http_and_s3_sources_fetch_together(moto: Moto, s3: S3Client, tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"id\n2\n"))
    settings = make_settings(tmp_path, moto, orders="https://files.test/o.csv", payments="s3://jaffle/raw/payments.csv")
    fetched = await fetch_all(settings, transport=transport)
    assert fetched["customers"].path == tmp_path / "customers.csv"
    assert fetched["orders"].path.read_bytes() == b"id\n2\n"
    assert fetched["payments"].path.read_bytes() == BODY


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("s3://no-such-bucket/orders.csv", "bucket does not exist"),
        ("s3://jaffle/raw/nope.csv", r"object not found \(no such key\)"),
    ],
)
def test_missing_bucket_or_key_is_a_source_error_naming_the_object(
    moto: Moto, s3: S3Client, tmp_path: Path, uri: str, problem: str
) -> None:
    with pytest.raises(SourceError, match=rf"^source 'orders' \({uri}\): {problem}$"):
        fetch_all_sync(make_settings(tmp_path, moto, orders=uri))


def test_a_failed_refetch_keeps_the_previous_good_file(moto: Moto, s3: S3Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, moto, payments="s3://jaffle/raw/payments.csv")
    good = fetch_all_sync(settings)["payments"].path
    s3.delete_object(Bucket="jaffle", Key="raw/payments.csv")
    with pytest.raises(SourceError, match="no such key"):
        fetch_all_sync(settings)
    assert good.read_bytes() == BODY
    assert part_files(settings) == []


def test_uri_without_a_key_is_a_config_error(moto: Moto, s3: S3Client, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources.orders: expected s3://bucket/key"):
        fetch_all_sync(make_settings(tmp_path, moto, orders="s3://jaffle/"))


def test_unknown_access_key_is_bad_credentials_and_the_secret_is_never_shown(
    moto: Moto,
    enforced_auth: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    caplog.set_level(logging.DEBUG, logger="sync_job")
    with pytest.raises(SourceError, match="access key id is not recognised") as caught:
        fetch_all_sync(make_settings(tmp_path, moto, orders="s3://jaffle/raw/payments.csv"))
    assert "s3://jaffle/raw/payments.csv" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert SECRET not in caplog.text


def test_wrong_secret_key_is_bad_credentials(
    moto: Moto, enforced_auth: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", enforced_auth["id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with pytest.raises(SourceError, match="secret access key does not match") as caught:
        fetch_all_sync(make_settings(tmp_path, moto, orders="s3://jaffle/raw/payments.csv"))
    assert SECRET not in str(caught.value)


def test_access_denied_by_policy_names_the_object(
    moto: Moto, enforced_auth: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", enforced_auth["id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", enforced_auth["secret"])
    settings = make_settings(tmp_path, moto, customers="s3://jaffle/raw/payments.csv", orders="s3://private/orders.csv")
    with pytest.raises(SourceError, match=r"^source 'orders' \(s3://private/orders\.csv\): access denied$"):
        fetch_all_sync(settings)


def test_no_credentials_anywhere_is_a_clear_source_error(
    moto: Moto, s3: S3Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(SourceError, match="no AWS credentials found"):
        fetch_all_sync(make_settings(tmp_path, moto, orders="s3://jaffle/raw/payments.csv"))


# --- retries, encodings and stalls ------------------------------------------------------------------------------


def against(endpoint: str, tmp_path: Path, timeout: float, attempts: int) -> Settings:
    """Settings whose orders come from s3://jaffle/raw/payments.csv at `endpoint` (a stalling server)."""
    settings = make_settings(tmp_path, None, orders="s3://jaffle/raw/payments.csv")
    update = {
        "s3": S3Settings(endpoint_url=endpoint, region="us-east-1"),
        "fetch": FetchSettings(timeout_seconds=timeout, max_attempts=attempts),
    }
    return settings.model_copy(update=update)


def test_n_attempts_make_n_requests_against_an_endpoint_that_never_answers(s3: S3Client, tmp_path: Path) -> None:
    """botocore's own retries used to run inside each of the job's attempts: 4 attempts made 20 connections."""
    with stamina.set_testing(True, attempts=10, cap=True), StallingServer() as silent:
        with pytest.raises(Unavailable) as caught:
            fetch_all_sync(against(silent.url, tmp_path, timeout=0.3, attempts=3))
        assert silent.requests == 3
    assert str(caught.value) == "source 'orders' (s3://jaffle/raw/payments.csv): timed out (tried 3 times)"


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def test_an_object_stored_gzip_encoded_is_decoded_like_the_same_file_over_http(
    moto: Moto, s3: S3Client, tmp_path: Path
) -> None:
    s3.put_object(Bucket="jaffle", Key="gz/payments.csv", Body=gzipped(BODY), ContentEncoding="gzip")
    settings = make_settings(tmp_path, moto, payments="s3://jaffle/gz/payments.csv")
    fetched = fetch_all_sync(settings)["payments"]
    assert fetched.path.read_bytes() == BODY
    assert fetched.size == len(BODY)
    assert not fetch_all_sync(settings)["payments"].downloaded  # the ETag still matches the decoded file


def test_concatenated_gzip_members_decode_as_one_file(moto: Moto, s3: S3Client, tmp_path: Path) -> None:
    half = len(BODY) // 2
    s3.put_object(
        Bucket="jaffle", Key="gz/two.csv", Body=gzipped(BODY[:half]) + gzipped(BODY[half:]), ContentEncoding="gzip"
    )
    fetched = fetch_all_sync(make_settings(tmp_path, moto, payments="s3://jaffle/gz/two.csv"))["payments"]
    assert fetched.path.read_bytes() == BODY


@pytest.mark.parametrize(
    ("body", "encoding", "problem"),
    [
        (b"id\n1\n", "gzip", "stored with Content-Encoding gzip but is not valid gzip data"),
        (gzipped(BODY)[:-100], "gzip", "stored with Content-Encoding gzip but the compressed data ends early"),
        (b"id\n1\n", "br", "stored with Content-Encoding 'br': only gzip and deflate can be decoded"),
    ],
    ids=["not-gzip", "cut-short", "brotli"],
)
def test_an_object_that_does_not_decode_is_a_source_error_and_keeps_the_previous_file(
    moto: Moto, s3: S3Client, tmp_path: Path, body: bytes, encoding: str, problem: str
) -> None:
    settings = make_settings(tmp_path, moto, orders="s3://jaffle/raw/payments.csv")
    good = fetch_all_sync(settings)["orders"].path
    s3.put_object(Bucket="jaffle", Key="raw/payments.csv", Body=body, ContentEncoding=encoding)
    with pytest.raises(
        SourceError, match=rf"^source 'orders' \(s3://jaffle/raw/payments\.csv\): {re.escape(problem)}$"
    ):
        fetch_all_sync(settings)
    assert good.read_bytes() == BODY
    assert part_files(settings) == []


def test_an_identity_or_aws_chunked_encoding_is_kept_as_is(moto: Moto, s3: S3Client, tmp_path: Path) -> None:
    s3.put_object(Bucket="jaffle", Key="plain.csv", Body=b"id\n5\n", ContentEncoding="identity")
    fetched = fetch_all_sync(make_settings(tmp_path, moto, orders="s3://jaffle/plain.csv"))["orders"]
    assert fetched.path.read_bytes() == b"id\n5\n"


def test_cancelling_a_hanging_download_ends_the_event_loop_at_once(s3: S3Client, tmp_path: Path) -> None:
    """asyncio.run joins asyncio.to_thread's executor for up to 300 s at exit, so SIGTERM waited for the stuck read.

    The download now runs in a daemon thread that asyncio.run does not wait for.
    """
    finished = threading.Event()

    async def cancel_mid_download(settings: Settings) -> None:
        task = asyncio.create_task(fetch_all(settings))
        while not silent.got_request.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with StallingServer() as silent:
        settings = against(silent.url, tmp_path, timeout=120, attempts=4)
        runner = threading.Thread(target=lambda: (asyncio.run(cancel_mid_download(settings)), finished.set()))
        runner.daemon = True
        runner.start()
        runner.join(SAFETY)
        assert finished.is_set(), f"asyncio.run had not returned {SAFETY:.0f}s after the download was cancelled"


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


def test_only_failures_that_may_pass_later_are_retried() -> None:
    assert should_retry(client_error(503, "SlowDown"))
    assert should_retry(client_error(500, "InternalError"))
    assert should_retry(client_error(400, "RequestTimeout"))
    assert should_retry(ReadTimeoutError(endpoint_url="http://s3.test"))
    assert should_retry(EndpointConnectionError(endpoint_url="http://s3.test"))
    assert not should_retry(client_error(404, "NoSuchKey"))
    assert not should_retry(client_error(403, "AccessDenied"))
    assert not should_retry(SSLError(endpoint_url="https://s3.test", error="bad certificate"))


def test_an_endpoint_that_refuses_connections_may_pass_later_exit_1(s3: S3Client, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: connection refused
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with stamina.set_testing(True, attempts=10, cap=True), pytest.raises(Unavailable) as caught:
        fetch_all_sync(against(endpoint, tmp_path, timeout=2, attempts=2))
    assert str(caught.value) == (
        "source 'orders' (s3://jaffle/raw/payments.csv): cannot connect to the S3 endpoint (tried 2 times)"
    )
    assert caught.value.exit_code == EXIT_PARTIAL


async def test_a_cancelled_download_stuck_in_a_trickle_wakes_and_ends_its_thread(s3: S3Client, tmp_path: Path) -> None:
    """Abandoned is not enough in a long-lived `run --every` process: the stuck read is woken and the thread ends."""
    before = set(threading.enumerate())
    with StallingServer(trickle=True) as trickling:
        task = asyncio.create_task(fetch_all(against(trickling.url, tmp_path, timeout=120, attempts=4)))
        while not trickling.got_request.is_set():
            await asyncio.sleep(0.01)
        (worker,) = [t for t in set(threading.enumerate()) - before if t.name == "s3-fetch-orders"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(worker.join, SAFETY)
        assert not worker.is_alive(), f"the worker was still reading {SAFETY:.0f}s after the cancel"
    assert part_files(against(trickling.url, tmp_path, timeout=1, attempts=1)) == []


def test_an_object_that_trickles_for_ever_is_given_up_at_the_deadline(s3: S3Client, tmp_path: Path) -> None:
    with StallingServer(trickle=True) as trickling:
        settings = against(trickling.url, tmp_path, timeout=5, attempts=2)
        settings = settings.model_copy(update={"fetch": settings.fetch.model_copy(update={"deadline_seconds": 0.5})})
        with pytest.raises(Unavailable, match=r"^source 'orders' .*: not complete after 0\.5 s \(fetch\.deadline"):
            fetch_all_sync(settings)
