"""Typed settings from a YAML file plus the environment; secrets come only from the environment."""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import stat
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from sync_job.destinations import registry
from sync_job.destinations.registry import DestinationSettings
from sync_job.errors import ConfigError

if TYPE_CHECKING:
    from sync_job.mapping import Mapping

TOKEN_ENV = "PIPEDRIVE_API_TOKEN"  # noqa: S105 -- the variable name, not a secret
BASE_URL_ENV = "PIPEDRIVE_BASE_URL"
POSTGRES_DSN_ENV = "SYNC_JOB_POSTGRES_DSN"
WEBHOOK_URL_ENV = "SYNC_JOB_WEBHOOK_URL"  # a secret: alerts go there; never logged
# Variables whose values the log filter masks wherever they appear (the webhook URL is its own credential).
SECRET_ENVS = (TOKEN_ENV, POSTGRES_DSN_ENV, WEBHOOK_URL_ENV, "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
DEFAULT_BASE_URL = "https://api.pipedrive.com"
DEFAULT_VALUE_EXPRESSION = "amount_cents / 100"
# A real config is a few dozen values in a few KB: anything far beyond is a mistake or an attack
# (a "billion laughs" file of nested anchors expands to 10^9 values from a few hundred bytes).
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 10_000
# The form of Pipedrive's currency codes: ISO 4217 for standard currencies; an account's custom
# currencies have codes of their own, so the code is not checked against the ISO list.
_CURRENCY = re.compile(r"[A-Z]{3}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sources(_Strict):
    """Where the three jaffle-shop CSV files come from: a path, file://, http(s):// or s3:// URL."""

    customers: str
    orders: str
    payments: str


UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}  # durations: `full_read_every` here, `--every` in schedule


class PipedriveSettings(_Strict):
    base_url: str = DEFAULT_BASE_URL
    person_id_field: str = "CustomerID"
    deal_id_field: str = "OrderID"
    currency: str = "USD"
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
            return timedelta(seconds=int(match[1]) * UNIT_SECONDS[match[2]])
        if isinstance(value, str):
            raise ValueError("must be a duration like '7d', '12h', '30m' or '90s'")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if problem := url_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str) -> str:
        # Pipedrive answers 400 to every deal with a code like 'usd': say so once, before anything is sent.
        if not _CURRENCY.fullmatch(value):
            hint = f" (did you mean '{value.strip().upper()}'?)" if _CURRENCY.fullmatch(value.strip().upper()) else ""
            raise ValueError(f"must be a 3-letter upper-case currency code like 'USD' or 'EUR'{hint}")
        return value


class S3Settings(_Strict):
    endpoint_url: str | None = None
    region: str | None = None


class FetchSettings(_Strict):
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 4
    deadline_seconds: Annotated[float, Field(gt=0)] = 1800.0  # one source's whole fetch, all attempts included


Mode = Literal["upsert", "update", "mirror"]
DEFAULT_MAX_DELETE_FRACTION = 0.1


class FieldSpec(_Strict):
    """A mapped field in its long form: the expression and, for a custom field the job creates, its type."""

    value: str
    type: str | None = None


class EntitySettings(_Strict):
    """What a run writes to one entity's records (README "Field mapping") and what it may do (README "Sync modes")."""

    # Pipedrive field (a standard field's API key, or a custom field's name) <- SQL expression over the source row
    fields: dict[str, str | FieldSpec] = {}

    mode: Mode = "upsert"  # upsert: create and update; update: only update; mirror: also delete what left the source
    # mirror only: the largest share of the remote records that carry an external id one run may delete
    max_delete_fraction: Annotated[float, Field(ge=0, le=1)] | None = None

    @model_validator(mode="after")
    def _fraction_needs_mirror(self) -> EntitySettings:
        if self.max_delete_fraction is not None and self.mode != "mirror":
            raise ValueError(f"max_delete_fraction only applies to mode 'mirror' (mode is '{self.mode}')")
        return self

    @property
    def delete_fraction(self) -> float:
        return DEFAULT_MAX_DELETE_FRACTION if self.max_delete_fraction is None else self.max_delete_fraction


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
    # Validated by the model its `kind` registered (destinations/registry.py); dumped with that model's keys.
    destination: SerializeAsAny[DestinationSettings] = Field(default_factory=dict, validate_default=True)
    s3: S3Settings = S3Settings()
    fetch: FetchSettings = FetchSettings()
    history: HistorySettings = HistorySettings()
    notify: NotifySettings = NotifySettings()
    metrics: MetricsSettings = MetricsSettings()
    persons: EntitySettings = EntitySettings()
    deals: EntitySettings = EntitySettings()

    @field_validator("destination", mode="before")
    @classmethod
    def _registered_kind(cls, value: object) -> object:
        return registry.settings_from(value)

    @model_validator(mode="after")
    def _modes_the_destination_honours(self) -> Settings:
        # A mode the destination does not implement is refused rather than ignored (postgres: upsert only).
        honoured = registry.lookup(self.destination.kind).modes
        for name in ("persons", "deals"):
            mode = getattr(self, name).mode
            if mode not in honoured:
                only = " or ".join(f"'{m}'" for m in honoured)
                raise ValueError(
                    f"{name}.mode '{mode}' is not supported by the {self.destination.kind} destination (only {only})"
                )
        return self

    @property
    def base_url(self) -> str:
        """The Pipedrive base URL: the environment wins over the file."""
        from_env = os.environ.get(BASE_URL_ENV)
        if from_env and (problem := url_problem(from_env)):
            raise ConfigError(f"{BASE_URL_ENV}: {problem} (got {from_env!r})")
        return from_env or self.pipedrive.base_url


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a base URL for HTTP requests, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http(s):// URL like {DEFAULT_BASE_URL!r}"
    return None


def fingerprint(settings: Settings) -> str:
    """SHA-256 of the effective settings (no secrets live in them): the run history shows when the config changed."""
    return hashlib.sha256(settings.model_dump_json().encode("utf-8")).hexdigest()


def api_token() -> str:
    """The Pipedrive API token, only ever from the environment, checked to be sendable as a header."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(f"{TOKEN_ENV} is not set: export the Pipedrive API token in the environment")
    for position, char in enumerate(token, start=1):
        # A header value must be visible ASCII: anything else fails every request (a non-ASCII letter in
        # httpx's encoder, a line break at the server), so say which position once instead. Never the token.
        if not "!" <= char <= "~":
            kind = (
                "a line break"
                if char in "\r\n"
                else "a space or control character"
                if char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F
                else "a non-ASCII character"
            )
            raise ConfigError(
                f"{TOKEN_ENV} contains {kind} at position {position}: an API token is visible ASCII only; "
                "check how the secret was stored"
            )
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
    raw = _parse_yaml(_read_text(path), path)
    if raw is None:
        raise ConfigError(f"{path}: empty config file: expected settings such as 'sources:'")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, not a {type(raw).__name__}")
    return parse(raw, origin=path)


def _read_text(path: Path) -> str:
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{path}: is a directory, expected a YAML config file")
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block for ever, /dev/zero never end
            raise ConfigError(f"{path}: not a regular file, expected a YAML config file")
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB: not a config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start + 1}): is it a binary file?") from None


def _parse_yaml(text: str, path: Path) -> Any:
    """yaml.safe_load, refusing a document whose anchors expand to more than MAX_CONFIG_VALUES values."""
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters here already
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if _expanded_size(node, {}, set()) > MAX_CONFIG_VALUES:
                raise ConfigError(
                    f"{path}: YAML anchors and aliases expand to more than {MAX_CONFIG_VALUES:,} values: "
                    "not a config file"
                )
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            f"{path}: character #x{exc.character:04x} at character {exc.position + 1} is not allowed in YAML: "
            "is it a binary file?"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply: not a config file") from None


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` stands for once every alias is expanded; memoised, so linear in the file."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:  # an alias inside its own anchor: it expands for ever
        return MAX_CONFIG_VALUES + 1
    open_nodes.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, sizes, open_nodes)
            if size > MAX_CONFIG_VALUES:
                break
    elif isinstance(node, yaml.MappingNode):
        for item_key, item_value in node.value:
            size += _expanded_size(item_key, sizes, open_nodes) + _expanded_size(item_value, sizes, open_nodes)
            if size > MAX_CONFIG_VALUES:
                break
    open_nodes.discard(key)
    sizes[key] = size
    return size


def parse(raw: dict[str, Any], origin: Path) -> Settings:
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_describe(exc, raw)}") from None
    from sync_job.transform import value_expression  # polars loads only once the file itself is valid

    try:
        value_expression(settings.value)  # a bad expression fails here, before anything is fetched
    except ConfigError as exc:
        raise ConfigError(f"{origin}: 'value': {exc}") from None
    try:
        built = mapping_of(settings)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    try:
        value_expression(built.value_expression)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: deals.fields.'value': {exc}") from None
    return _resolve_paths(settings, origin.parent)


def mapping_of(settings: Settings) -> Mapping:
    """The run's field mapping: the defaults (today's fixed fields) with `persons.fields` / `deals.fields` over them."""
    from sync_job import mapping

    def specs(entity: EntitySettings) -> dict[str, str | tuple[str, str | None]]:
        return {k: v if isinstance(v, str) else (v.value, v.type) for k, v in entity.fields.items()}

    built = mapping.build(
        {"person": specs(settings.persons), "deal": specs(settings.deals)},
        {"person": settings.pipedrive.person_id_field, "deal": settings.pipedrive.deal_id_field},
        value=settings.value,
        currency=settings.pipedrive.currency,
    )
    if "value" in settings.deals.fields and "value" in settings.model_fields_set:
        raise ConfigError("'value' and 'deals.fields.value' both set the deal value: keep one")
    return built


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    def resolve(source: str) -> str:
        if "://" in source or Path(source).is_absolute():
            return source
        return str((base / source).resolve())

    sources = Sources(**{k: resolve(v) for k, v in settings.sources.model_dump().items()})
    workdir = settings.workdir if settings.workdir.is_absolute() else (base / settings.workdir).resolve()
    return settings.model_copy(update={"sources": sources, "workdir": workdir})


def _describe(exc: ValidationError, raw: dict[str, Any]) -> str:
    """The first validation problem as one line, with the closest valid key for an unknown one."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join(loc)
    if error["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1], raw)
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(sorted(valid))})"
        return f"unknown key '{dotted}'{hint}"
    if error["type"] == "missing":
        if loc and loc[0] == "sources" and len(loc) == 2:
            return f"missing source 'sources.{loc[1]}': give a path or URL for the {loc[1]} CSV"
        return f"missing required key '{dotted}'"
    got = error.get("input")
    shown = f" (got {type(got).__name__} {_short(repr(got))})" if not isinstance(got, dict) else ""
    message = error["msg"].removeprefix("Value error, ")
    if not dotted:  # a check across several keys: the message names them
        return f"invalid settings: {message}"
    return f"invalid value for '{dotted}': {message}{shown}"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _valid_keys(parent: list[str], raw: dict[str, Any]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in parent:
        if model is Settings and part == "destination":  # its keys are those of the model its kind registered
            model = registry.settings_model(raw.get("destination"))
            continue
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
