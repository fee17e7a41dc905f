"""Typed settings from a YAML file plus the environment; secrets come only from the environment."""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sync_job.errors import ConfigError

TOKEN_ENV = "PIPEDRIVE_API_TOKEN"  # noqa: S105 -- the variable name, not a secret
BASE_URL_ENV = "PIPEDRIVE_BASE_URL"
POSTGRES_DSN_ENV = "SYNC_JOB_POSTGRES_DSN"
WEBHOOK_URL_ENV = "SYNC_JOB_WEBHOOK_URL"  # a secret: alerts go there; never logged
DEFAULT_BASE_URL = "https://api.pipedrive.com"
DEFAULT_VALUE_EXPRESSION = "amount_cents / 100"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sources(_Strict):
    """Where the three jaffle-shop CSV files come from: a path, file://, http(s):// or s3:// URL."""

    customers: str
    orders: str
    payments: str


_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class PipedriveSettings(_Strict):
    base_url: str = DEFAULT_BASE_URL
    person_id_field: str = "CustomerID"
    deal_id_field: str = "OrderID"
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 6
    # How old the snapshot's last full read may get before a run reads the whole CRM again ("7d", "12h", "30m").
    full_read_every: timedelta = timedelta(days=7)
    # The most of the company's daily API token budget this job spends in one day; other integrations keep the rest.
    max_budget_share: Annotated[float, Field(gt=0, le=1)] = 0.5

    @field_validator("full_read_every", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", value)):
            return timedelta(seconds=int(match[1]) * _SECONDS[match[2]])
        if isinstance(value, str):
            raise ValueError("must be a duration like '7d', '12h', '30m' or '90s'")
        return value


class S3Settings(_Strict):
    endpoint_url: str | None = None
    region: str | None = None


class FetchSettings(_Strict):
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 4
    deadline_seconds: Annotated[float, Field(gt=0)] = 1800.0  # one source's whole fetch, all attempts included


class DestinationSettings(_Strict):
    kind: Literal["pipedrive", "postgres"] = "pipedrive"
    table: str = "orders"

    @field_validator("table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        parts = value.split(".")
        if not all(p.replace("_", "a").isalnum() and not p[:1].isdigit() for p in parts) or len(parts) > 2:
            raise ValueError("must be a plain SQL identifier like 'orders' or 'crm.orders'")
        return value


RunStatus = Literal["ok", "partial", "interrupted", "budget_exhausted", "dry_run", "failed"]


class HistorySettings(_Strict):
    keep_days: Annotated[int, Field(ge=1)] = 90  # reports, results and plans older than this are pruned


class NotifySettings(_Strict):
    on: list[RunStatus] = ["partial", "interrupted", "budget_exhausted", "failed"]  # statuses that alert

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 (PyYAML) reads an unquoted `on:` key as the boolean True; the user meant "on".
        if isinstance(data, dict) and True in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


class MetricsSettings(_Strict):
    pushgateway_url: str | None = None  # e.g. http://pushgateway.monitoring:9091; unset: no metrics pushed
    job: str = "sync_job"  # the Pushgateway's job label


class Settings(_Strict):
    sources: Sources
    workdir: Path = Path(".sync-job")
    value: str = DEFAULT_VALUE_EXPRESSION
    pipedrive: PipedriveSettings = PipedriveSettings()
    destination: DestinationSettings = DestinationSettings()
    s3: S3Settings = S3Settings()
    fetch: FetchSettings = FetchSettings()
    history: HistorySettings = HistorySettings()
    notify: NotifySettings = NotifySettings()
    metrics: MetricsSettings = MetricsSettings()

    @property
    def base_url(self) -> str:
        """The Pipedrive base URL: the environment wins over the file."""
        return os.environ.get(BASE_URL_ENV) or self.pipedrive.base_url


def fingerprint(settings: Settings) -> str:
    """SHA-256 of the effective settings (no secrets live in them): the run history shows when the config changed."""
    return hashlib.sha256(settings.model_dump_json().encode("utf-8")).hexdigest()


def api_token() -> str:
    """The Pipedrive API token, only ever from the environment."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(f"{TOKEN_ENV} is not set: export the Pipedrive API token in the environment")
    return token


def webhook_url() -> str | None:
    """Where alerts go, only ever from the environment (the URL itself is the credential); None: no alerts."""
    return os.environ.get(WEBHOOK_URL_ENV, "").strip() or None


def postgres_dsn() -> str:
    dsn = os.environ.get(POSTGRES_DSN_ENV, "").strip()
    if not dsn:
        raise ConfigError(f"{POSTGRES_DSN_ENV} is not set: export the PostgreSQL connection string")
    return dsn


def load(path: Path) -> Settings:
    """Read and validate a config file; relative source paths and workdir resolve against its folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return parse(raw, origin=path)


def parse(raw: dict[str, Any], origin: Path) -> Settings:
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_describe(exc)}") from None
    from sync_job.transform import value_expression  # polars loads only once the file itself is valid

    try:
        value_expression(settings.value)  # a bad expression fails here, before anything is fetched
    except ConfigError as exc:
        raise ConfigError(f"{origin}: 'value': {exc}") from None
    return _resolve_paths(settings, origin.parent)


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    def resolve(source: str) -> str:
        if "://" in source or Path(source).is_absolute():
            return source
        return str((base / source).resolve())

    sources = Sources(**{k: resolve(v) for k, v in settings.sources.model_dump().items()})
    workdir = settings.workdir if settings.workdir.is_absolute() else (base / settings.workdir).resolve()
    return settings.model_copy(update={"sources": sources, "workdir": workdir})


def _describe(exc: ValidationError) -> str:
    """The first validation problem as one line, with the closest valid key for an unknown one."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join(loc)
    if error["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(sorted(valid))})"
        return f"unknown key '{dotted}'{hint}"
    if error["type"] == "missing":
        if loc and loc[0] == "sources" and len(loc) == 2:
            return f"missing source 'sources.{loc[1]}': give a path or URL for the {loc[1]} CSV"
        return f"missing required key '{dotted}'"
    got = error.get("input")
    shown = f" (got {type(got).__name__} {got!r})" if not isinstance(got, dict) else ""
    return f"invalid value for '{dotted}': {error['msg']}{shown}"


def _valid_keys(parent: list[str]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in parent:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
