"""Content-Encoding of a stored object: gzip and deflate decoded while streaming, as httpx does for HTTP(S)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from sync_job.sources.base import CHUNK_BYTES

# aws-chunked is an upload framing that S3 may leave in the object's metadata; the stored bytes are not framed.
_AS_IS = frozenset({"", "identity", "aws-chunked"})
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class UnsupportedEncoding(ValueError):
    """A Content-Encoding this job cannot decode (e.g. br): the message names it."""


class CorruptBody(ValueError):
    """The body does not decode as its Content-Encoding says (not gzip, or cut short)."""


class Decoder:
    """Decodes one body chunk by chunk; output comes in pieces of at most CHUNK_BYTES, so a small body that
    inflates enormously (a "zip bomb") never sits in memory at once."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._wbits = _WBITS[coding]
        self._zlib = zlib.decompressobj(self._wbits)

    def decode(self, chunk: bytes) -> Iterator[bytes]:
        try:
            while chunk:
                if self._zlib.eof:  # concatenated gzip members (`cat a.gz b.gz`) decode as one stream, like gzip -d
                    self._zlib = zlib.decompressobj(self._wbits)
                piece = self._zlib.decompress(chunk, CHUNK_BYTES)
                if piece:
                    yield piece
                chunk = self._zlib.unused_data if self._zlib.eof else self._zlib.unconsumed_tail
        except zlib.error:
            coding = self.coding
            raise CorruptBody(f"stored with Content-Encoding {coding} but is not valid {coding} data") from None

    def finish(self) -> bytes:
        """What is left; CorruptBody when the compressed data stops before its end."""
        try:
            rest = self._zlib.flush()
        except zlib.error:
            rest = b""
        if not self._zlib.eof:
            raise CorruptBody(f"stored with Content-Encoding {self.coding} but the compressed data ends early")
        return rest


def decoder_for(content_encoding: str | None) -> Decoder | None:
    """None for a body stored as is; a Decoder for gzip or deflate; UnsupportedEncoding for anything else."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c not in _AS_IS]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in _WBITS:
        raise UnsupportedEncoding(
            f"stored with Content-Encoding {content_encoding!r}: only gzip and deflate can be decoded"
        )
    return Decoder(codings[0])
