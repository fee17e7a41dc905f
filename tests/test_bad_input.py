"""Bad input, a tested corpus: each broken input exits 2 with one clear stderr line and nothing sent to Pipedrive."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from sync_job.cli import app
from sync_job.errors import EXIT_INPUT, EXIT_PARTIAL
from sync_job.sandbox.server import Sandbox
from tests.e2e import TOKEN, write_sources, writes

SYNC_JOB = str(Path(sys.executable).with_name("sync-job"))  # the installed console script

CUSTOMERS = [(1, "Michael", "P."), (2, "Shawn", "M."), (3, "Kathleen", "P.")]
ORDERS = [(1, 1, "2018-01-01", "returned"), (2, 3, "2018-01-02", "completed"), (3, 2, "2018-01-05", "placed")]
PAYMENTS = [(1, 1, "credit_card", 1000), (2, 2, "coupon", 2050), (3, 3, "credit_card", 1)]
CSV_TEXT = "id,first_name,last_name\n1,Michael,P.\n2,Shawn,M.\n3,Kathleen,P.\n"

Route = Callable[[BaseHTTPRequestHandler], None]


class SourceServer:
    """A loopback HTTP server answering each path with a handler (the 'remote' CSV sources)."""

    def __init__(self) -> None:
        routes: dict[str, Route] = {}
        self.routes = routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path)
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def http_sources() -> Iterator[SourceServer]:
    server = SourceServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI points the root logger at CliRunner's stream; put the previous handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    return tmp_path


def config_file(folder: Path, **overrides: Any) -> Path:
    config: dict[str, Any] = {
        "sources": {name: str(folder / f"raw_{name}.csv") for name in ("customers", "orders", "payments")},
        "workdir": str(folder / "work"),
        "fetch": {"max_attempts": 1, "timeout_seconds": 5},
        "pipedrive": {"max_attempts": 2},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = folder / "sync.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def invoke(config: Path, base_url: str, token: str | None = TOKEN, *flags: str) -> Result:
    env = {"PIPEDRIVE_API_TOKEN": token, "PIPEDRIVE_BASE_URL": base_url}
    return CliRunner().invoke(app, ["run", "--config", str(config), "--log-format", "json", *flags], env=env)


def error_line(result: Result, *needles: str) -> str:
    """Exit 2, no traceback, exactly one `error:` line on stderr naming every needle; other lines are JSON logs."""
    output = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == EXIT_INPUT, output
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, output
    for line in lines:
        if line is not errors[0]:
            json.loads(line)  # anything else on stderr is a structured log event, not a second message
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def nothing_written(sandbox: Sandbox) -> None:
    stats = sandbox.stats()
    assert stats["writes"] == {}, stats["writes"]
    assert not any(method in ("POST", "PATCH", "DELETE") for method, _ in stats["requests"])


def nothing_requested(sandbox: Sandbox) -> None:
    assert sandbox.stats()["requests_total"] == 0


# ---- configuration --------------------------------------------------------------------------------------


def test_malformed_yaml_names_the_file_and_line(folder: Path, sandbox: Sandbox) -> None:
    path = folder / "sync.yaml"
    path.write_text("sources:\n  customers: a.csv\n  orders: [b.csv\n", encoding="utf-8")
    error_line(invoke(path, sandbox.url), str(path), "malformed YAML", "line")
    nothing_requested(sandbox)


def test_malformed_yaml_in_a_real_process_prints_one_line_and_exits_2(folder: Path) -> None:
    path = folder / "sync.yaml"
    path.write_text("sources: {customers: a.csv\n", encoding="utf-8")
    env = {**os.environ, "PIPEDRIVE_API_TOKEN": TOKEN}
    proc = subprocess.run(
        [SYNC_JOB, "run", "--config", str(path)], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == EXIT_INPUT
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {path}: malformed YAML")


def test_unknown_config_key_is_named_with_a_suggestion(folder: Path, sandbox: Sandbox) -> None:
    path = config_file(folder, pipedrive={"concurency": 4})
    error_line(invoke(path, sandbox.url), str(path), "unknown key 'pipedrive.concurency'", "concurrency")
    nothing_requested(sandbox)


def test_missing_token_names_the_environment_variable(folder: Path, sandbox: Sandbox) -> None:
    error_line(invoke(config_file(folder), sandbox.url, token=None), "PIPEDRIVE_API_TOKEN is not set")
    nothing_requested(sandbox)


def test_missing_token_in_a_real_process_exits_2_before_reading_sources(folder: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PIPEDRIVE_API_TOKEN"}
    proc = subprocess.run(
        [SYNC_JOB, "run", "--config", str(config_file(folder)), "--log-format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == EXIT_INPUT
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error: ")] == [
        "error: PIPEDRIVE_API_TOKEN is not set: export the Pipedrive API token in the environment"
    ]
    assert not (folder / "work" / "combined.csv").exists()


def test_rejected_token_401_exits_2_naming_the_destination(folder: Path, sandbox: Sandbox) -> None:
    error_line(invoke(config_file(folder), sandbox.url, token="not-the-right-token"), "401", sandbox.url)
    nothing_written(sandbox)
    assert set(sandbox.stats()["statuses"]) == {401}  # nothing succeeded


def test_unreachable_base_url_exits_1_naming_the_url_so_the_next_run_retries(folder: Path) -> None:
    """Connection refused may pass later (a blip at 03:00): exit 1, which the CronJob retries; never exit 2."""
    with socket.socket() as probe:  # a port that was free a moment ago: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = invoke(config_file(folder), url)
    assert result.exit_code == EXIT_PARTIAL, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert f"cannot reach {url}: connection refused" in line


def test_invalid_value_expression_names_the_expression(folder: Path, sandbox: Sandbox) -> None:
    path = config_file(folder, value="amount_cents / / 100")
    error_line(invoke(path, sandbox.url), "value expression", "amount_cents / / 100")
    nothing_requested(sandbox)


def test_value_expression_with_an_unknown_column_names_it(folder: Path, sandbox: Sandbox) -> None:
    path = config_file(folder, value="amount / 100")
    error_line(invoke(path, sandbox.url), "value expression", "'amount'")
    nothing_requested(sandbox)


# ---- remote sources -------------------------------------------------------------------------------------


def serve(body: bytes, status: int = 200, content_type: str = "text/csv", length: int | None = None) -> Route:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()
        h.close_connection = True

    return handle


def test_source_404_names_the_source_and_status(folder: Path, sandbox: Sandbox, http_sources: SourceServer) -> None:
    url = f"{http_sources.url}/missing.csv"
    path = config_file(folder, sources={"customers": url})
    error_line(invoke(path, sandbox.url), "source 'customers'", url, "404")
    nothing_requested(sandbox)


def test_source_that_is_an_html_page_is_refused(folder: Path, sandbox: Sandbox, http_sources: SourceServer) -> None:
    page = b"<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>"
    http_sources.routes["/customers.csv"] = serve(page, content_type="text/html; charset=utf-8")
    path = config_file(folder, sources={"customers": f"{http_sources.url}/customers.csv"})
    line = error_line(invoke(path, sandbox.url), "customers")
    assert "html" in line.lower()
    nothing_requested(sandbox)


def test_html_page_served_as_csv_is_refused_too(folder: Path, sandbox: Sandbox, http_sources: SourceServer) -> None:
    http_sources.routes["/orders.csv"] = serve(b"\n  <html><body>Maintenance</body></html>")
    path = config_file(folder, sources={"orders": f"{http_sources.url}/orders.csv"})
    line = error_line(invoke(path, sandbox.url), "orders")
    assert "html" in line.lower()
    nothing_requested(sandbox)


def test_truncated_download_is_refused_with_exit_1_so_the_next_run_retries(
    folder: Path, sandbox: Sandbox, http_sources: SourceServer
) -> None:
    """A body cut short on every attempt is a dropped connection, not bad input: it may pass later (exit 1)."""
    body = CSV_TEXT.encode()
    http_sources.routes["/customers.csv"] = serve(body[:20], length=len(body))
    path = config_file(folder, sources={"customers": f"{http_sources.url}/customers.csv"})
    result = invoke(path, sandbox.url)
    assert result.exit_code == EXIT_PARTIAL, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "source 'customers'" in line
    assert "truncated" in line.lower()
    nothing_requested(sandbox)
    assert not (folder / "work" / "raw" / "customers.csv").exists()


def test_missing_local_source_file_names_the_path(folder: Path, sandbox: Sandbox) -> None:
    (folder / "raw_payments.csv").unlink()
    error_line(invoke(config_file(folder), sandbox.url), "payments", "raw_payments.csv")
    nothing_requested(sandbox)


# ---- source content -------------------------------------------------------------------------------------


def test_missing_column_names_the_file_and_column(folder: Path, sandbox: Sandbox) -> None:
    (folder / "raw_customers.csv").write_text("id,first_name\n1,Michael\n", encoding="utf-8")
    error_line(invoke(config_file(folder), sandbox.url), "raw_customers.csv", "line 1", "missing column 'last_name'")
    nothing_requested(sandbox)


def test_non_numeric_amount_names_the_file_line_and_value(folder: Path, sandbox: Sandbox) -> None:
    text = "id,order_id,payment_method,amount\n1,1,coupon,1000\n2,2,coupon,ten\n"
    (folder / "raw_payments.csv").write_text(text, encoding="utf-8")
    error_line(invoke(config_file(folder), sandbox.url), "raw_payments.csv", "line 3", "amount", "'ten'")
    nothing_requested(sandbox)


def test_duplicate_ids_name_the_file_and_id(folder: Path, sandbox: Sandbox) -> None:
    write_sources(folder, [*CUSTOMERS, (2, "Other", "Person")], ORDERS, PAYMENTS)
    error_line(invoke(config_file(folder), sandbox.url), "raw_customers.csv", "duplicate", "id 2", "lines 3 and 5")
    nothing_requested(sandbox)


def test_empty_file_is_named(folder: Path, sandbox: Sandbox) -> None:
    (folder / "raw_orders.csv").write_bytes(b"")
    line = error_line(invoke(config_file(folder), sandbox.url), "raw_orders.csv")
    assert "empty" in line.lower()
    nothing_requested(sandbox)


def test_header_only_file_is_named(folder: Path, sandbox: Sandbox) -> None:
    (folder / "raw_customers.csv").write_text("id,first_name,last_name\n", encoding="utf-8")
    line = error_line(invoke(config_file(folder), sandbox.url), "raw_customers.csv")
    assert "no rows" in line.lower() or "empty" in line.lower() or "header" in line.lower()
    nothing_requested(sandbox)


# ---- issue 16: deal values, amount sums, names, hostile files ------------------------------------------


@pytest.mark.parametrize("flags", [(), ("--dry-run",)])
@pytest.mark.parametrize(
    ("expression", "what"), [("amount_cents / 0", "an infinite value"), ("sqrt(0 - amount_cents)", "NaN")]
)
def test_value_expression_without_a_finite_value_exits_2_before_any_request(
    folder: Path, sandbox: Sandbox, expression: str, what: str, flags: tuple[str, ...]
) -> None:
    """Once exit 70 after the persons were written (and exit 0 in a dry run)."""
    result = invoke(config_file(folder, value=expression), sandbox.url, TOKEN, *flags)
    error_line(result, f"value expression {expression!r} gives {what} for order 1")
    nothing_requested(sandbox)


def test_payment_sums_beyond_64_bits_exit_2_naming_the_order(folder: Path, sandbox: Sandbox) -> None:
    """Once a deal worth -9.22e16 and exit 0."""
    write_sources(folder, CUSTOMERS, ORDERS, [*PAYMENTS, (4, 2, "coupon", 2**63 - 1)])
    error_line(
        invoke(config_file(folder), sandbox.url), "raw_payments.csv: order 2:", "beyond what a 64-bit amount holds"
    )
    nothing_requested(sandbox)


def test_padded_names_with_line_breaks_give_one_line_person_names_and_deal_titles(
    folder: Path, sandbox: Sandbox
) -> None:
    customers = [(1, "  Ann  ", "  Lee "), (2, "Bob\r\nX", "Ray"), (3, "Kathleen", "P.\t")]
    write_sources(folder, customers, ORDERS, PAYMENTS)
    result = invoke(config_file(folder), sandbox.url)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert sorted(p["name"] for p in sandbox.persons()) == ["Ann Lee", "Bob X Ray", "Kathleen P."]
    assert sorted(d["title"] for d in sandbox.deals()) == ["Lee Ann", "P. Kathleen", "Ray Bob X"]
    before = writes(sandbox)
    again = invoke(config_file(folder), sandbox.url)  # and a second run finds them in sync
    assert again.exit_code == 0, again.stdout + again.stderr
    assert writes(sandbox) == before


def test_a_first_row_with_a_field_over_131072_characters_syncs(folder: Path, sandbox: Sandbox) -> None:
    write_sources(folder, [(1, "Michael", "P" * 200_000), *CUSTOMERS[1:]], ORDERS, PAYMENTS)
    result = invoke(config_file(folder), sandbox.url)
    assert result.exit_code == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert len(sandbox.persons()) == 3


def test_sparse_10gb_file_of_nuls_in_a_real_process_prints_one_line_and_exits_2(folder: Path) -> None:
    source = folder / "raw_orders.csv"
    source.write_bytes(b"")
    os.truncate(source, 10 * 1024**3)
    env = {**os.environ, "PIPEDRIVE_API_TOKEN": TOKEN, "PIPEDRIVE_BASE_URL": "http://127.0.0.1:9"}
    proc = subprocess.run(
        [SYNC_JOB, "run", "--config", str(config_file(folder))], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == EXIT_INPUT, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {source}: line 1: NUL byte (byte 0): a binary file, not CSV text"], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (folder / "work" / "combined.csv").exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (CSV_TEXT.encode("utf-16"), "UTF-16 text"),
        (CSV_TEXT.replace("Shawn", "Zoë").encode("latin-1"), "line 3: not UTF-8 text"),
        (b"id,first_name,last_name,id\n1,A,B,1\n", "column 'id' appears twice in the header"),
        (CSV_TEXT.replace("3,Kathleen", "3.0,Kathleen").encode(), "line 4: id: not a whole number: '3.0'"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "NUL byte"),
    ],
)
def test_hostile_customers_file_exits_2_with_one_line_and_nothing_requested(
    folder: Path, sandbox: Sandbox, content: bytes, needle: str
) -> None:
    (folder / "raw_customers.csv").write_bytes(content)
    error_line(invoke(config_file(folder), sandbox.url), "raw_customers.csv", needle)
    nothing_requested(sandbox)
