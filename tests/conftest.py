"""Shared fixtures. Keep this file small: fixtures used by one module live in that module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sync_job.sandbox.server import Sandbox, SandboxOptions
from tests.e2e import TOKEN
from tests.openapi import SPEC_PATH, OpenApiV2
from tests.pg_server import NO_SERVER_REASON, PgServer, find_bin_dir


@pytest.fixture(scope="session")
def openapi_validator() -> OpenApiV2:
    """Pipedrive's v2 OpenAPI document, loaded once per session; skips when ../shared is absent."""
    if not SPEC_PATH.is_file():
        pytest.skip(f"Pipedrive v2 spec not available at {SPEC_PATH} (../shared is absent)")
    return OpenApiV2.load()


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server; skipped only without a server binary, and never skipped when CI is set."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}:
            pytest.fail(f"{NO_SERVER_REASON} (CI is set, so these tests fail instead of skipping)")
        pytest.skip(NO_SERVER_REASON)
    with PgServer(bin_dir) as server:
        yield server


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh in-process Pipedrive sandbox on a free 127.0.0.1 port, rate limits high enough not to matter."""
    with Sandbox(SandboxOptions(token=TOKEN, burst=1000, search_burst=1000)) as sb:
        yield sb
