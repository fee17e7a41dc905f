"""Sources -> files on disk: local paths read in place, HTTP(S) and S3 streamed concurrently to WORKDIR/raw/."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx

from sync_job.config import Settings
from sync_job.errors import ConfigError, Unavailable
from sync_job.sources.base import FetchedSource, Source, display_uri, label, scheme_of
from sync_job.sources.local import LocalSource
from sync_job.sources.store import RawStore

__all__ = ["FetchedSource", "fetch_all", "fetch_all_sync"]

log = logging.getLogger(__name__)


async def fetch_all(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> dict[str, FetchedSource]:
    """Fetch every configured source at once; the first failure cancels the rest and is raised.

    SourceError (exit 2) when a human must act (404, access denied, not a CSV, not a file); Unavailable
    (exit 1) when the server kept failing, timing out or sending too slowly: a later run may pass.
    """
    uris: dict[str, str] = settings.sources.model_dump()
    kinds = {name: scheme_of(uri) for name, uri in uris.items()}
    for name, kind in kinds.items():
        if kind not in ("local", "http", "s3"):
            raise ConfigError(
                f"sources.{name}: unsupported scheme '{kind}://' in {display_uri(uris[name])!r} "
                "(use a path, file://, http(s):// or s3://)"
            )
    store = RawStore(settings.workdir)
    async with contextlib.AsyncExitStack() as stack:
        handlers: dict[str, Source] = {"local": LocalSource()}
        if "http" in kinds.values():
            from sync_job.sources.http import HttpSource, make_client

            client = await stack.enter_async_context(make_client(settings.fetch, transport))
            handlers["http"] = HttpSource(client, store, settings.fetch)
        if "s3" in kinds.values():
            from sync_job.sources.s3 import S3Source  # boto3 is slow to import: only when needed

            handlers["s3"] = S3Source(store, settings)
        deadline = settings.fetch.deadline_seconds
        tasks = [
            asyncio.create_task(_within(deadline, handlers[kinds[name]], name, uri), name=name)
            for name, uri in uris.items()
        ]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            # Leave nothing running behind us: cancelled downloads delete their temp files.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    for source in results:
        log.info(
            "source %s: %s (%d bytes, %s)",
            source.name,
            source.path,
            source.size,
            "downloaded" if source.downloaded else "unchanged" if kinds[source.name] != "local" else "local",
        )
    return {source.name: source for source in results}


async def _within(seconds: float, source: Source, name: str, uri: str) -> FetchedSource:
    """One source's whole fetch, retries included, bounded in time.

    Timeouts bound each wait for a byte, not a download: a server that trickles a byte every few seconds,
    or streams without end, never trips them.
    """
    try:
        async with asyncio.timeout(seconds) as bound:
            return await source.fetch(name, uri)
    except TimeoutError:
        if not bound.expired():  # a timeout from inside the fetch, not ours
            raise
        raise Unavailable(
            f"{label(name, uri)}: not complete after {seconds:g} s (fetch.deadline_seconds): the server sends too "
            "slowly or without end"
        ) from None


def fetch_all_sync(settings: Settings) -> dict[str, FetchedSource]:
    """fetch_all for callers without an event loop."""
    return asyncio.run(fetch_all(settings))
