"""The sandbox's knobs: rate limits, budget, fault injection, persistence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SandboxOptions:
    """How the sandbox behaves; mutable at runtime through Sandbox.configure()."""

    token: str = "sandbox-token"  # noqa: S105 -- the local sandbox's own token, not a secret
    burst: int = 40  # requests per rolling window, per token
    search_burst: int = 10  # search requests per rolling window, per token (separate log)
    window_seconds: float = 2.0
    daily_budget: int | None = None  # API tokens per "day" (until reset_budget()); None = unlimited
    fail_rate: float = 0.0  # share of requests answered 500/502/503 before any change
    drop_after_commit_rate: float = 0.0  # share of writes applied, then the connection closed without a response
    latency_ms: int = 0  # added to every request
    search_lag_seconds: float = 0.0  # search sees a write only once it is this old
    state_file: Path | None = None  # JSON state, loaded on start and written after writes and on shutdown
    seed: int = 0  # fault injection is random.Random(seed): same seed, same faults for the same request order
    forbid_html_after_429s: int | None = None  # Cloudflare-like HTML 403 after N consecutive 429s
