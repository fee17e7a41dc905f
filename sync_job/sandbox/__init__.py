"""A local Pipedrive-compatible API server for the demo, tests and benchmarks."""

from __future__ import annotations

from sync_job.sandbox.options import SandboxOptions
from sync_job.sandbox.server import Sandbox, serve

__all__ = ["Sandbox", "SandboxOptions", "serve"]
