"""sync-job: keep a Pipedrive CRM in sync with jaffle-shop shaped order data."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sync-job")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
