"""Logging set-up: rich output on a terminal, one JSON object per line otherwise; secrets redacted."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Literal

LogFormat = Literal["auto", "json", "text"]


def _environment_secrets(extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    from sync_job.config import SECRET_ENVS  # here: setting up logging need not load the config's models

    found = [os.environ.get(name, "") for name in SECRET_ENVS]
    # Also the stripped form: config.api_token() strips the token before using it.
    return tuple(dict.fromkeys(s for v in (*found, *extra) for s in (v, v.strip()) if len(s) >= 4))


def _mask(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def redact(text: str) -> str:
    """`text` with every secret from the environment replaced by '***' (for lines printed outside logging)."""
    return _mask(text, _environment_secrets())


class RedactSecrets(logging.Filter):
    """Last line of defence: replace any secret taken from the environment by '***' in every record."""

    def __init__(self, extra_secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = _environment_secrets(extra_secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.exc_text:
            # Formatted here so the traceback is masked too (formatters reuse exc_text).
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if self.secrets:
            record.msg, record.args = _mask(record.getMessage(), self.secrets), None
            if record.exc_text:
                record.exc_text = _mask(record.exc_text, self.secrets)
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now: a handler bound at set-up outlives a swapped or closed stream."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            event.update(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # one JSON line still: the traceback is a string field, newlines escaped
            event["traceback"] = record.exc_text
        return json.dumps(event, default=str, ensure_ascii=False)


def is_terminal() -> bool:
    return sys.stderr.isatty()


def setup(log_format: LogFormat = "auto", verbose: bool = False, extra_secrets: tuple[str, ...] = ()) -> bool:
    """Configure the root logger; returns True when output is rich (a terminal), False for JSON lines."""
    rich_output = log_format == "text" or (log_format == "auto" and is_terminal())
    handler: logging.Handler
    if rich_output:
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets(extra_secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # httpx logs every request URL at INFO; keep it at WARNING unless debugging (URLs never carry the token).
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    return rich_output
