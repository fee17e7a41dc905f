"""Shared fixtures. Keep this file small: fixtures used by one module live in that module."""

from __future__ import annotations

import pytest

from tests.openapi import SPEC_PATH, OpenApiV2


@pytest.fixture(scope="session")
def openapi_validator() -> OpenApiV2:
    """Pipedrive's v2 OpenAPI document, loaded once per session; skips when ../shared is absent."""
    if not SPEC_PATH.is_file():
        pytest.skip(f"Pipedrive v2 spec not available at {SPEC_PATH} (../shared is absent)")
    return OpenApiV2.load()
