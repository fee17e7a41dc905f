"""A throwaway Prometheus Pushgateway on 127.0.0.1 (Debian's `prometheus-pushgateway`), and the CI rule for tools."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

import httpx
import pytest

NO_PUSHGATEWAY_REASON = (
    "no Pushgateway binary (prometheus-pushgateway) on PATH: install Debian's `prometheus-pushgateway`"
)
START_SECONDS = 30.0


def require(found: object, reason: str) -> None:
    """Skip when a tool the test starts is missing, except in CI (CI set): there the test fails instead."""
    if found:
        return
    if os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}:
        pytest.fail(f"{reason} (CI is set, so these tests fail instead of skipping)")
    pytest.skip(reason)


def find_binary() -> str | None:
    return shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Pushgateway:
    """Context manager: start the binary on a free port without persistence, wait until ready, stop on exit."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the server, closed in __exit__
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Pushgateway:
        self._proc = subprocess.Popen(
            [self.binary, f"--web.listen-address=127.0.0.1:{self.port}", "--persistence.file="],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"pushgateway exited with {self._proc.returncode}: {self._output()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"pushgateway not ready after {START_SECONDS} s: {self._output()}")

    def _output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-2000:]

    def metrics(self) -> str:
        """What Prometheus would scrape."""
        response = httpx.get(f"{self.url}/metrics", timeout=5.0)
        response.raise_for_status()
        return response.text

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
