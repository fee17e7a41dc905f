"""Fetch: local sources in place; HTTP(S) streamed, conditional, retried and atomic, against a real loopback server."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import stamina
from pytest_httpx import HTTPXMock

from sync_job.config import FetchSettings, Settings, Sources
from sync_job.errors import EXIT_INPUT, EXIT_PARTIAL, ConfigError, SourceError, SyncError, Unavailable
from sync_job.fetch import FetchedSource, fetch_all, fetch_all_sync
from sync_job.sources.base import display_uri
from sync_job.sources.http import looks_like_html, retry_after_seconds
from tests.stalling import StallingServer

CSV = b"id,first_name,last_name\n" + b"".join(b"%d,Ann,O'Neil\n" % i for i in range(200_000))  # ~3.6 MB
Handler = Callable[[BaseHTTPRequestHandler], object]
SAFETY = 30.0  # a safety net so a hang fails the test instead of blocking the suite; not a timing assertion


class Loopback:
    """A real HTTP/1.1 server on 127.0.0.1 whose routes each test sets; it records every request's headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()  # frees handlers that hang on purpose, at teardown
        loopback = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                loopback.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                loopback.routes.get(self.path, not_found)(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def hits(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


def reply(h: BaseHTTPRequestHandler, status: int, body: bytes, **extra: str) -> None:
    """Send `body` in many writes; a Content-Length larger than the body means: send it, then hang up."""
    headers = {"Content-Type": "text/csv", "Content-Length": str(len(body))}
    headers.update({key.replace("_", "-"): value for key, value in extra.items()})
    h.send_response(status)
    for key, value in headers.items():
        h.send_header(key, value)
    h.end_headers()
    for start in range(0, len(body), 65536):  # many writes: the client must assemble a streamed body
        h.wfile.write(body[start : start + 65536])
    if int(headers["Content-Length"]) > len(body):
        h.close_connection = True


def not_found(h: BaseHTTPRequestHandler) -> None:
    reply(h, 404, b"not found")


def versioned(state: dict[str, bytes]) -> Handler:
    """200 with an ETag derived from the current body; 304 when the client already has it."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        etag = f'"v{hash(state["body"]) & 0xFFFF:x}"'
        if h.headers.get("If-None-Match") == etag:
            h.send_response(304)
            h.send_header("ETag", etag)
            h.end_headers()
            return
        reply(h, 200, state["body"], ETag=etag, Last_Modified="Wed, 21 Oct 2015 07:28:00 GMT")

    return handle


@pytest.fixture
def server() -> Iterator[Loopback]:
    loopback = Loopback()
    thread = threading.Thread(target=loopback.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield loopback
    loopback.release.set()
    loopback.server.shutdown()
    loopback.server.server_close()


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    """Retries keep their configured attempt counts but do not sleep."""
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


def make_settings(tmp_path: Path, attempts: int = 3, timeout: float = 5.0, **uris: str) -> Settings:
    """Settings whose unnamed sources are small local files."""
    for name in ("customers", "orders", "payments"):
        if name not in uris:
            local = tmp_path / "in" / f"{name}.csv"
            local.parent.mkdir(exist_ok=True)
            local.write_bytes(b"id\n1\n")
            uris[name] = str(local)
    return Settings(
        sources=Sources(**uris),
        workdir=tmp_path / "work",
        fetch=FetchSettings(timeout_seconds=timeout, max_attempts=attempts),
    )


def leftovers(settings: Settings) -> list[str]:
    raw = settings.workdir / "raw"
    return sorted(p.name for p in raw.iterdir() if p.name.endswith(".part")) if raw.exists() else []


# --- pure helpers ---------------------------------------------------------------------------------------------


def test_display_uri_drops_userinfo_query_and_fragment() -> None:
    assert display_uri("https://user:pw@host.test:8443/a/b.csv?token=s3cret#x") == "https://host.test:8443/a/b.csv"
    assert display_uri("/data/orders.csv") == "/data/orders.csv"
    assert display_uri("s3://bucket/key.csv") == "s3://bucket/key.csv"
    assert display_uri("https://user:pw@[::1/x?k=s") == "https://<invalid URL>"


def test_html_sniffing_sees_doctype_and_html_after_bom_and_space() -> None:
    assert looks_like_html(b"\xef\xbb\xbf  \n<!DOCTYPE html><html>")
    assert looks_like_html(b"<HTML lang=en>")
    assert not looks_like_html(b"id,name\n1,<html>\n")


def test_retry_after_accepts_seconds_and_http_dates_and_is_capped() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("100000") == 60.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None


# --- local sources ----------------------------------------------------------------------------------------------


def test_fetch_all_sync_returns_three_local_files_in_place_without_copying(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    fetched = fetch_all_sync(settings)
    assert set(fetched) == {"customers", "orders", "payments"}
    for name, source in fetched.items():
        assert source == FetchedSource(name, str(tmp_path / "in" / f"{name}.csv"), source.path, False, 5)
        assert source.path == tmp_path / "in" / f"{name}.csv"
    assert not (settings.workdir / "raw").exists()


def test_file_url_is_read_in_place(tmp_path: Path) -> None:
    local = tmp_path / "my orders.csv"
    local.write_bytes(b"id\n1\n2\n")
    fetched = fetch_all_sync(make_settings(tmp_path, orders=local.as_uri()))
    assert fetched["orders"].path == local
    assert fetched["orders"].size == 7


def test_missing_local_file_is_a_source_error_naming_the_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"source 'payments' \(.*nope\.csv\): file not found"):
        fetch_all_sync(make_settings(tmp_path, payments=str(tmp_path / "nope.csv")))


def test_a_directory_is_not_a_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is a directory"):
        fetch_all_sync(make_settings(tmp_path, customers=str(tmp_path)))


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_not_a_source_because_reading_it_never_ends(tmp_path: Path, path: str) -> None:
    with pytest.raises(SourceError, match=rf"^source 'orders' \({path}\): is a character device, expected a regular"):
        fetch_all_sync(make_settings(tmp_path, orders=path))


def test_a_named_pipe_is_refused_at_once_instead_of_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "orders.csv"
    os.mkfifo(fifo)
    outcome: list[BaseException | dict[str, FetchedSource]] = []

    def fetch() -> None:
        try:
            outcome.append(fetch_all_sync(make_settings(tmp_path, orders=str(fifo))))
        except BaseException as exc:  # handed to the test thread, whatever it is
            outcome.append(exc)

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    thread.join(SAFETY)
    if thread.is_alive():  # the open() waits for a writer: be one, so the stuck thread ends, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"fetching a FIFO was still blocked after {SAFETY:.0f}s")
    (error,) = outcome
    assert isinstance(error, SourceError)
    assert str(error) == f"source 'orders' ({fifo}): is a named pipe (FIFO), expected a regular CSV file"


def test_a_unix_socket_is_not_a_source(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(SourceError, match="is a socket, expected a regular CSV file"):
            fetch_all_sync(make_settings(tmp_path, customers=str(path)))


def test_a_symlink_loop_is_a_source_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    with pytest.raises(SourceError, match=r"source 'payments' .*a\.csv\): cannot read file \(Too many levels"):
        fetch_all_sync(make_settings(tmp_path, payments=str(tmp_path / "a.csv")))


def test_a_path_with_a_nul_byte_is_a_source_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"source 'orders' .*: the path contains a NUL byte$"):
        fetch_all_sync(make_settings(tmp_path, orders="orders\x00.csv"))


def test_a_symlink_to_a_regular_file_is_read_through(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_bytes(b"id\n1\n2\n")
    (tmp_path / "link.csv").symlink_to(real)
    assert fetch_all_sync(make_settings(tmp_path, orders=str(tmp_path / "link.csv")))["orders"].size == 7


def test_unsupported_scheme_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources.orders: unsupported scheme 'ftp://'"):
        fetch_all_sync(make_settings(tmp_path, orders="ftp://host/o.csv"))


# --- HTTP against a real loopback server ------------------------------------------------------------------------


async def test_streamed_download_lands_in_raw_and_304_skips_it_next_time(server: Loopback, tmp_path: Path) -> None:
    state = {"body": CSV}
    server.routes["/orders.csv"] = versioned(state)
    settings = make_settings(tmp_path, orders=f"{server.url}/orders.csv")

    first = (await fetch_all(settings))["orders"]
    assert first.downloaded
    assert first.size == len(CSV)
    assert first.path == settings.workdir / "raw" / "orders.csv"
    assert first.path.read_bytes() == CSV
    meta = json.loads((settings.workdir / "raw" / "orders.csv.meta.json").read_text())
    assert meta["etag"].startswith('"v')
    assert meta["size"] == len(CSV)

    second = (await fetch_all(settings))["orders"]
    assert (second.downloaded, second.size, second.path) == (False, len(CSV), first.path)
    assert server.requests[-1][1]["if-none-match"] == meta["etag"]
    assert first.etag == second.etag == meta["etag"]  # the report names the content by it

    state["body"] = b"id\n42\n"
    third = (await fetch_all(settings))["orders"]
    assert third.downloaded
    assert third.path.read_bytes() == b"id\n42\n"
    assert leftovers(settings) == []


async def test_chunked_body_without_content_length_is_streamed(server: Loopback, tmp_path: Path) -> None:
    def chunked(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for start in range(0, len(CSV), 100_000):
            piece = CSV[start : start + 100_000]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        h.wfile.write(b"0\r\n\r\n")

    server.routes["/c.csv"] = chunked
    fetched = await fetch_all(make_settings(tmp_path, customers=f"{server.url}/c.csv"))
    assert fetched["customers"].path.read_bytes() == CSV


async def test_the_three_sources_download_concurrently(server: Loopback, tmp_path: Path) -> None:
    """Each response waits until all three requests have arrived: a sequential fetch could never finish."""
    barrier = threading.Barrier(3, timeout=10)

    def together(h: BaseHTTPRequestHandler) -> None:
        barrier.wait()
        reply(h, 200, b"id\n1\n")

    for name in ("customers", "orders", "payments"):
        server.routes[f"/{name}.csv"] = together
    uris = {name: f"{server.url}/{name}.csv" for name in ("customers", "orders", "payments")}
    fetched = await fetch_all(make_settings(tmp_path, 1, 5.0, **uris))
    assert all(source.downloaded for source in fetched.values())


@pytest.mark.parametrize(
    ("route", "error", "message"),
    [
        (
            lambda h: reply(h, 404, b"gone"),
            SourceError,
            r"source 'orders' \(http://127\.0\.0\.1:\d+/o\.csv\): HTTP 404 Not Found",
        ),
        (
            lambda h: reply(h, 200, b"<!doctype html><p>login", Content_Type="text/html"),
            SourceError,
            "got an HTML page",
        ),
        (lambda h: reply(h, 200, b"\n<!DOCTYPE html>\n<html>" + b" " * 600), SourceError, "HTML page instead of CSV"),
        (lambda h: reply(h, 200, b"id\n1\n", Content_Length="1000"), Unavailable, "truncated"),
    ],
    ids=["404", "html-content-type", "html-body", "truncated"],
)
async def test_failed_download_is_an_error_and_keeps_the_previous_good_file(
    server: Loopback, tmp_path: Path, route: Handler, error: type[SyncError], message: str
) -> None:
    """A human must act on a 404 or an HTML page (exit 2); a truncated body may pass on a later run (exit 1)."""
    server.routes["/o.csv?token=s3cret"] = versioned({"body": CSV})
    settings = make_settings(tmp_path, orders=f"{server.url}/o.csv?token=s3cret")
    good = (await fetch_all(settings))["orders"].path
    meta = good.parent / "orders.csv.meta.json"
    meta_before = meta.read_text()
    server.routes["/o.csv?token=s3cret"] = route  # ignores If-None-Match: a full (failing) response

    with pytest.raises(error, match=message) as caught:
        await fetch_all(settings)
    assert caught.value.exit_code == (EXIT_INPUT if error is SourceError else EXIT_PARTIAL)
    assert "s3cret" not in str(caught.value)
    assert good.read_bytes() == CSV
    assert leftovers(settings) == []
    assert meta.read_text() == meta_before


async def test_first_download_failing_leaves_no_file_at_all(server: Loopback, tmp_path: Path) -> None:
    server.routes["/t.csv"] = lambda h: reply(h, 200, CSV[:70_000], Content_Length=str(len(CSV)))
    settings = make_settings(tmp_path, attempts=2, payments=f"{server.url}/t.csv")
    with pytest.raises(Unavailable, match=r"source 'payments' .*truncated download.*\(tried 2 times\)"):
        await fetch_all(settings)
    assert sorted(p.name for p in (settings.workdir / "raw").iterdir()) == []


async def test_503_then_200_is_retried_and_succeeds(server: Loopback, tmp_path: Path) -> None:
    def flaky(h: BaseHTTPRequestHandler) -> None:
        if server.hits("/f.csv") < 3:
            reply(h, 503, b"busy", Retry_After="1")
        else:
            reply(h, 200, b"id\n7\n")

    server.routes["/f.csv"] = flaky
    fetched = await fetch_all(make_settings(tmp_path, attempts=4, orders=f"{server.url}/f.csv"))
    assert fetched["orders"].path.read_bytes() == b"id\n7\n"
    assert server.hits("/f.csv") == 3


async def test_persistent_5xx_gives_up_after_the_configured_attempts(server: Loopback, tmp_path: Path) -> None:
    server.routes["/down.csv"] = lambda h: reply(h, 502, b"bad gateway")
    with pytest.raises(Unavailable, match=r"HTTP 502 Bad Gateway \(tried 3 times\)"):
        await fetch_all(make_settings(tmp_path, attempts=3, orders=f"{server.url}/down.csv"))
    assert server.hits("/down.csv") == 3


async def test_slow_server_times_out_after_retries(server: Loopback, tmp_path: Path) -> None:
    server.routes["/slow.csv"] = lambda h: server.release.wait(10)
    settings = make_settings(tmp_path, attempts=2, timeout=0.2, orders=f"{server.url}/slow.csv")
    with pytest.raises(Unavailable, match=r"source 'orders' .*: timed out \(tried 2 times\)"):
        await fetch_all(settings)
    assert server.hits("/slow.csv") == 2


async def test_one_failure_cancels_the_other_downloads_and_leaves_no_temp_files(
    server: Loopback, tmp_path: Path
) -> None:
    def trickle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(CSV)))
        h.end_headers()
        h.wfile.write(CSV[:100_000])
        h.wfile.flush()
        server.release.wait(10)

    server.routes["/slow.csv"] = trickle
    server.routes["/missing.csv"] = lambda h: reply(h, 404, b"")
    settings = make_settings(tmp_path, customers=f"{server.url}/slow.csv", orders=f"{server.url}/missing.csv")
    with pytest.raises(SourceError, match="source 'orders'"):
        await asyncio.wait_for(fetch_all(settings), timeout=20)
    assert leftovers(settings) == []


def gzip_reply(body: bytes) -> Handler:
    return lambda h: reply(h, 200, body, Content_Encoding="gzip")


async def test_a_gzip_encoded_body_is_decoded_and_checked_against_its_length_on_the_wire(
    server: Loopback, tmp_path: Path
) -> None:
    server.routes["/gz.csv"] = gzip_reply(gzip.compress(CSV, mtime=0))
    fetched = (await fetch_all(make_settings(tmp_path, orders=f"{server.url}/gz.csv")))["orders"]
    assert fetched.path.read_bytes() == CSV
    assert fetched.size == len(CSV)


async def test_a_body_that_is_not_the_gzip_it_claims_is_a_source_error(server: Loopback, tmp_path: Path) -> None:
    server.routes["/gz.csv"] = gzip_reply(b"id\n1\n" * 1000)
    settings = make_settings(tmp_path, orders=f"{server.url}/gz.csv")
    with pytest.raises(
        SourceError, match=r"^source 'orders' .*: the body does not decode as its Content-Encoding says$"
    ):
        await fetch_all(settings)
    assert leftovers(settings) == []


async def test_a_redirect_loop_is_a_source_error_naming_it(server: Loopback, tmp_path: Path) -> None:
    server.routes["/a.csv"] = lambda h: reply(h, 302, b"", Location="/b.csv")
    server.routes["/b.csv"] = lambda h: reply(h, 302, b"", Location="/a.csv")
    with pytest.raises(SourceError, match=r"^source 'orders' .*/a\.csv\): redirected more than 20 times \(a redirect"):
        await fetch_all(make_settings(tmp_path, orders=f"{server.url}/a.csv"))
    assert server.hits("/a.csv") + server.hits("/b.csv") == 21


async def test_a_server_that_trickles_bytes_for_ever_is_given_up_at_the_deadline(tmp_path: Path) -> None:
    """Each byte arrives well within the read timeout, so only a bound on the whole fetch ends it."""
    with StallingServer(trickle=True) as trickling:
        settings = make_settings(tmp_path, timeout=5.0, payments=f"{trickling.url}/p.csv?token=s3cret")
        settings = settings.model_copy(update={"fetch": settings.fetch.model_copy(update={"deadline_seconds": 0.5})})
        with pytest.raises(Unavailable) as caught:
            await asyncio.wait_for(fetch_all(settings), SAFETY)
    assert str(caught.value) == (
        f"source 'payments' ({trickling.url}/p.csv): not complete after 0.5 s (fetch.deadline_seconds): "
        "the server sends too slowly or without end"
    )
    assert leftovers(settings) == []


async def test_a_server_that_accepts_and_never_answers_times_out_after_the_attempts(tmp_path: Path) -> None:
    with StallingServer() as silent:
        settings = make_settings(tmp_path, attempts=2, timeout=0.2, customers=f"{silent.url}/c.csv")
        with pytest.raises(Unavailable, match=r"^source 'customers' .*: timed out \(tried 2 times\)$"):
            await asyncio.wait_for(fetch_all(settings), SAFETY)
        assert silent.requests == 2


# --- exact requests with pytest-httpx -----------------------------------------------------------------------------


async def test_refetch_sends_the_stored_etag_and_last_modified(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    url = "https://files.example.test/orders.csv"
    modified = "Wed, 21 Oct 2015 07:28:00 GMT"
    httpx_mock.add_response(url=url, content=b"id\n1\n", headers={"ETag": '"abc"', "Last-Modified": modified})
    httpx_mock.add_response(
        url=url, status_code=304, match_headers={"If-None-Match": '"abc"', "If-Modified-Since": modified}
    )
    settings = make_settings(tmp_path, orders=url)
    assert (await fetch_all(settings))["orders"].downloaded
    again = (await fetch_all(settings))["orders"]
    assert not again.downloaded
    assert again.path.read_bytes() == b"id\n1\n"
    first = httpx_mock.get_requests()[0]
    assert "if-none-match" not in first.headers
    assert "if-modified-since" not in first.headers


async def test_source_requests_carry_no_credentials(
    httpx_mock: HTTPXMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", "pd-secret-token")
    httpx_mock.add_response(url="https://files.example.test/c.csv", content=b"id\n1\n")
    await fetch_all(make_settings(tmp_path, customers="https://files.example.test/c.csv"))
    (request,) = httpx_mock.get_requests()
    assert "authorization" not in request.headers
    assert "x-api-token" not in request.headers
    assert "pd-secret-token" not in str(request.headers)
    assert "pd-secret-token" not in str(request.url)


@pytest.mark.parametrize("status", [403, 404])
async def test_client_errors_are_never_retried(httpx_mock: HTTPXMock, tmp_path: Path, status: int) -> None:
    httpx_mock.add_response(url="https://files.example.test/o.csv", status_code=status)
    with pytest.raises(SourceError, match=f"HTTP {status}"):
        await fetch_all(make_settings(tmp_path, attempts=5, orders="https://files.example.test/o.csv"))
    assert len(httpx_mock.get_requests()) == 1


async def test_429_is_retried(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    url = "https://files.example.test/o.csv"
    httpx_mock.add_response(url=url, status_code=429, headers={"Retry-After": "0"})
    httpx_mock.add_response(url=url, content=b"id\n1\n")
    assert (await fetch_all(make_settings(tmp_path, orders=url)))["orders"].downloaded


async def test_error_message_hides_userinfo_and_query_secrets(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    httpx_mock.add_response(status_code=404)
    url = "https://bob:hunter2@files.example.test/o.csv?sig=s3cret"
    with pytest.raises(SourceError) as caught:
        await fetch_all(make_settings(tmp_path, orders=url))
    assert str(caught.value) == "source 'orders' (https://files.example.test/o.csv): HTTP 404 Not Found"


async def test_an_injected_transport_is_used(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"id\n9\n"))
    fetched = await fetch_all(make_settings(tmp_path, orders="https://x.test/o.csv"), transport=transport)
    assert fetched["orders"].path.read_bytes() == b"id\n9\n"
