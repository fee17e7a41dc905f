"""Benchmark: how close the client runs to Pipedrive's burst limit without bouncing off 429s.

Usage: .venv/bin/python bench/api_throughput.py [--burst 100] [--records 2000] [--concurrency 16]
       [--latency-ms 0] [--in-process] [--url http://127.0.0.1:8765 --token T]   (a running `sync-job sandbox`)
Starts the sandbox (in its own process, so that it does not share the GIL with the client; --in-process runs
it in a thread) with a burst of B requests per 2 s (the client learns the limit from the headers), creates
N persons with C concurrent requests, and prints the achieved requests/s against the allowed B/2 per second,
the ratio, the 429s and the retries. Target: >= 95% of the allowed rate with <= 0.5% of requests answered 429.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sync_job.pipedrive.client import PipedriveClient, make_http_client
from sync_job.pipedrive.ratelimit import WINDOW_SECONDS

TARGET_RATIO = 0.95
TARGET_429_SHARE = 0.005


async def run(url: str, token: str, records: int, concurrency: int, burst: int) -> bool:
    client = PipedriveClient(make_http_client(url, concurrency, 30.0), token, concurrency=concurrency)
    try:
        code = await client.resolve_field("person", "CustomerID")  # also teaches the limiter the real limit
        before = client.stats.as_dict()
        started = time.perf_counter()
        stamp = int(time.time())
        results = await asyncio.gather(
            *(
                client.create("person", {"name": f"Bench {i}"}, external_id=f"bench-{stamp}-{i}", field_code=code)
                for i in range(records)
            )
        )
        seconds = time.perf_counter() - started
    finally:
        await client.aclose()
    after = client.stats.as_dict()
    sent = int(after["requests_total"]) - int(before["requests_total"])  # type: ignore[call-overload]
    limited = int(after["rate_limited_429"]) - int(before["rate_limited_429"])  # type: ignore[call-overload]
    retries = int(after["retries"]) - int(before["retries"])  # type: ignore[call-overload]
    allowed = burst / WINDOW_SECONDS
    achieved = sent / seconds
    ratio, share = achieved / allowed, limited / max(sent, 1)
    ok = ratio >= TARGET_RATIO and share <= TARGET_429_SHARE and len(results) == records
    print(f"records created      {len(results)} in {seconds:.1f} s with concurrency {concurrency}")
    print(f"requests             {sent}  ({achieved:.1f} req/s; allowed {allowed:.1f} req/s = {burst} per 2 s)")
    print(f"ratio                {ratio:.1%}  (target >= {TARGET_RATIO:.0%})")
    print(f"429 answers          {limited}  ({share:.2%} of requests; target <= {TARGET_429_SHARE:.1%})")
    print(f"retries              {retries}")
    print(f"waited for the limit {after['rate_limit_wait_seconds']} s (summed over the serialised limiter)")
    print("PASS" if ok else "FAIL")
    return ok


@contextmanager
def sandbox_process(token: str, burst: int, latency_ms: int) -> Iterator[str]:
    """`serve()` in a child process on a free port; yields its URL, stops the child (by its own handle)."""
    code = (
        "from sync_job.sandbox import SandboxOptions, serve; "
        f"serve(SandboxOptions(token={token!r}, burst={burst}, latency_ms={latency_ms}), 0, "
        "ready=lambda url: print(url, flush=True))"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the URL, printed by the `ready` callback
        url = next((word for word in line.split() if word.startswith("http://")), None)
        if url is None:
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        yield url
    finally:
        child.terminate()
        child.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=100, help="requests per 2 s the sandbox allows")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=int, default=0, help="latency the sandbox adds to each request")
    parser.add_argument("--in-process", action="store_true", help="run the sandbox in a thread of this process")
    parser.add_argument("--url", help="an already running sandbox (then --burst must match its --burst)")
    parser.add_argument("--token", default="sandbox-token")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.url
        if url is None and not args.in_process:
            url = stack.enter_context(sandbox_process(args.token, args.burst, args.latency_ms))
        if url is None:
            from sync_job.sandbox import Sandbox, SandboxOptions

            options = SandboxOptions(token=args.token, burst=args.burst, latency_ms=args.latency_ms)
            url = stack.enter_context(Sandbox(options)).url
        ok = asyncio.run(run(url, args.token, args.records, args.concurrency, args.burst))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
