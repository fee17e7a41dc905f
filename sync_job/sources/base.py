"""The fetch interface: what a fetched source is, what every source kind implements, and safe display of URIs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

CHUNK_BYTES = 1 << 20  # 1 MiB: big enough to keep syscalls rare, small enough to never matter for memory


@dataclass(frozen=True, slots=True)
class FetchedSource:
    """One source, ready to be read from disk."""

    name: str  # "customers" | "orders" | "payments"
    uri: str  # as configured, minus anything secret (userinfo, query string)
    path: Path  # local file to read (local sources: the original path, not copied)
    downloaded: bool  # False for local files and for unchanged remote files (304 / same ETag)
    size: int
    etag: str | None = None  # the server's ETag for this content, when it sent one (identifies it in reports)


class Source(Protocol):
    """One kind of source (local, HTTP(S), S3): turns a configured URI into a file on disk."""

    async def fetch(self, name: str, uri: str) -> FetchedSource: ...


def display_uri(uri: str) -> str:
    """The URI safe to print: no user:password@, no query string or fragment (they may carry tokens)."""
    try:
        parts = urlsplit(uri)
        if not parts.scheme or len(parts.scheme) == 1:  # a plain path (or a Windows drive letter)
            return uri
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # e.g. an unclosed IPv6 bracket or a bad port: show nothing that might be secret
        return f"{uri.partition(':')[0]}://<invalid URL>"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def label(name: str, uri: str) -> str:
    """How every message names a source: `source 'orders' (https://host/path)`."""
    return f"source '{name}' ({display_uri(uri)})"


def scheme_of(uri: str) -> str:
    """'local', 'http' or 's3' for a configured source; anything else is returned as the raw scheme."""
    try:
        scheme = urlsplit(uri).scheme.lower()
    except ValueError:
        scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if not scheme or len(scheme) == 1 or scheme == "file":
        return "local"
    if scheme in ("http", "https"):
        return "http"
    return scheme
