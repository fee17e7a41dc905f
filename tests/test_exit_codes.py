"""Exit codes, the public contract: every error class maps to 1 (may pass later), 2 (a human must fix it) or 3.

Each class is raised through the real `sync-job run` command; the real failures (a refused connection, a host
that does not exist, a server that never answers or always fails) are produced against loopback servers.
"""

from __future__ import annotations

import inspect
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import sync_job.destinations.pipedrive
import sync_job.destinations.postgres
import sync_job.pipedrive.client
import sync_job.sources.http
import sync_job.sources.s3  # noqa: F401 -- imported so their SyncError subclasses are checked too
from sync_job import errors, sync
from sync_job.cli import app
from sync_job.errors import EXIT_INPUT, EXIT_INTERNAL, EXIT_LOCKED, EXIT_PARTIAL, SyncError
from sync_job.sandbox.server import Sandbox, SandboxOptions
from tests import test_bad_input
from tests.e2e import TOKEN
from tests.test_bad_input import config_file

# The bad-input corpus's fixtures: three good sources in a folder, and logging put back after each CLI run.
folder = test_bad_input.folder
_restore_logging = test_bad_input._restore_logging

README = Path(__file__).resolve().parent.parent / "README.md"

# The decision for every class in errors.py. A new class must be added here, to the README's table and to
# the podFailurePolicy's reasoning: the test below fails until it is.
DECIDED: dict[type[SyncError], int] = {
    errors.InputError: EXIT_INPUT,
    errors.ConfigError: EXIT_INPUT,
    errors.SourceError: EXIT_INPUT,
    errors.DataError: EXIT_INPUT,
    errors.AuthError: EXIT_INPUT,
    errors.WorkdirError: EXIT_INPUT,
    errors.TransientError: EXIT_PARTIAL,
    errors.Unavailable: EXIT_PARTIAL,
    errors.RowError: EXIT_PARTIAL,
    errors.BudgetExhausted: EXIT_PARTIAL,
    errors.Interrupted: EXIT_PARTIAL,
    errors.LockHeld: EXIT_LOCKED,
}


def _all_subclasses(cls: type[SyncError]) -> Iterator[type[SyncError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def run_cli(config: Path, base_url: str = "http://127.0.0.1:9") -> Result:
    env = {"PIPEDRIVE_API_TOKEN": TOKEN, "PIPEDRIVE_BASE_URL": base_url}
    return CliRunner().invoke(app, ["run", "--config", str(config), "--log-format", "json"], env=env)


def the_error_line(result: Result) -> str:
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith(("error: ", "internal error: "))]
    return line


def test_every_error_class_in_errors_py_has_a_decided_exit_code() -> None:
    defined = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, SyncError) and cls is not SyncError and cls.__module__ == errors.__name__
    }
    assert defined == set(DECIDED)
    assert {cls: cls.exit_code for cls in DECIDED} == DECIDED


def test_no_error_class_anywhere_falls_back_to_the_bug_exit_code() -> None:
    """Every SyncError subclass in the package (retry's NotSent, fields' FieldMissing ...) inherits a decision."""
    undecided = [cls for cls in _all_subclasses(SyncError) if cls.exit_code == EXIT_INTERNAL]
    assert undecided == []


def test_the_readme_exit_code_table_names_every_error_class() -> None:
    section = README.read_text(encoding="utf-8").split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    for cls, code in DECIDED.items():
        row = next((line for line in section.splitlines() if f"`{cls.__name__}`" in line), None)
        assert row is not None, f"{cls.__name__} is not in the README's exit-code table"
        assert re.match(rf"\| {code} \|", row), row


@pytest.mark.parametrize("cls", list(DECIDED), ids=lambda cls: cls.__name__)
def test_each_error_class_exits_the_cli_with_its_code_and_one_line(
    cls: type[SyncError], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object) -> None:
        raise cls("what went wrong\nand a second line that must not reach the terminal")

    monkeypatch.setattr(sync, "run", fail)
    result = run_cli(config_file(folder))
    assert result.exit_code == DECIDED[cls]
    assert the_error_line(result) == "error: what went wrong and a second line that must not reach the terminal"


def test_an_unexpected_exception_is_exit_70_with_its_first_line_only(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object) -> None:
        raise RuntimeError("the first line\n  a Polars-style plan\n  that goes on\n  for a screen")

    monkeypatch.setattr(sync, "run", fail)
    result = run_cli(config_file(folder))
    assert result.exit_code == EXIT_INTERNAL
    line = the_error_line(result)
    assert line.startswith("internal error: RuntimeError: the first line (")
    assert "Polars-style" not in result.stderr


# ---- real failures of the Pipedrive connection ----------------------------------------------------------


def test_a_refused_connection_is_exit_1_so_the_cronjob_retries(folder: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: connection refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = run_cli(config_file(folder, pipedrive={"max_attempts": 2}), url)
    assert result.exit_code == EXIT_PARTIAL
    assert the_error_line(result) == f"error: cannot reach {url}: connection refused (gave up after 2 attempts)"


def test_a_server_that_never_answers_is_exit_1(folder: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = config_file(folder, pipedrive={"max_attempts": 2, "timeout_seconds": 0.2})
        result = run_cli(config, url)
    assert result.exit_code == EXIT_PARTIAL
    assert the_error_line(result).startswith("error: Pipedrive could not be read: ")


def test_a_server_failing_every_request_is_exit_1(folder: Path) -> None:
    with Sandbox(SandboxOptions(token=TOKEN, burst=1000, fail_rate=1.0)) as sandbox:
        result = run_cli(config_file(folder, pipedrive={"max_attempts": 2}), sandbox.url)
        assert sandbox.stats()["writes"] == {}
    assert result.exit_code == EXIT_PARTIAL
    assert "server error 5" in the_error_line(result)


def test_a_host_name_that_does_not_exist_is_exit_2_naming_the_url(folder: Path) -> None:
    """DNS answering "no such name" is a typo to fix (exit 2); `.invalid` never resolves (RFC 6761)."""
    url = "http://sync-job-test.invalid"
    try:
        socket.getaddrinfo("sync-job-test.invalid", 80)
    except socket.gaierror as exc:
        if exc.errno != socket.EAI_NONAME:
            pytest.skip(f"this machine's resolver does not answer for .invalid names ({exc.strerror})")
    result = run_cli(config_file(folder, pipedrive={"max_attempts": 1}), url)
    assert result.exit_code == EXIT_INPUT
    assert the_error_line(result) == (
        f"error: cannot reach {url}: host not found (Name or service not known): check the base URL"
    )


def test_the_cronjob_fails_at_once_exactly_on_the_codes_no_retry_can_fix() -> None:
    """podFailurePolicy FailJob = the codes of classes that need a human (or another run to end); 1 is retried."""
    from tests.test_k8s import load

    job = load("cronjob.yaml")["spec"]["jobTemplate"]["spec"]
    fail_at_once = {
        code
        for rule in job["podFailurePolicy"]["rules"]
        if rule["action"] == "FailJob"
        for code in rule["onExitCodes"]["values"]
    }
    assert fail_at_once == {code for code in DECIDED.values() if code != EXIT_PARTIAL}
    assert job["backoffLimit"] >= 1  # an exit 1 (Pipedrive unreachable at 03:00) gets another try


def test_a_name_server_that_does_not_answer_is_exit_1(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EAI_AGAIN ("temporary failure in name resolution") may pass on the next run, unlike "no such name"."""
    resolve = socket.getaddrinfo

    def dns_down(host: object, *args: object, **kwargs: object) -> object:
        if host in ("crm.example.com", b"crm.example.com"):  # anyio passes the IDNA-encoded bytes
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return resolve(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", dns_down)
    result = run_cli(config_file(folder, pipedrive={"max_attempts": 1}), "https://crm.example.com")
    assert result.exit_code == EXIT_PARTIAL
    assert the_error_line(result) == (
        "error: cannot reach https://crm.example.com: name lookup failed (Temporary failure in name resolution) "
        "(gave up after 1 attempts)"
    )
