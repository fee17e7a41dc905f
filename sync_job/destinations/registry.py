"""Destinations by kind: each registers its own settings model and how to open it; config and sync look it up.

A destination is one module that calls `register` when imported (after dlt's destination references):

    class CsvSettings(DestinationSettings):            # the `destination:` section of this kind
        kind: Literal["csv"] = "csv"
        path: Path

    def open_csv(own: CsvSettings, run: RunContext) -> Destination:
        from my_package.csv_writer import CsvDestination    # heavy imports here, not at registration
        return CsvDestination(own.path)

    register("csv", CsvSettings, open_csv, modes=("upsert",))

`config.py` validates `destination:` with the model of its `kind`, and `sync.py` opens whatever is registered
under it: neither names a destination. The built-in kinds register on the first lookup, from modules that import
nothing heavier than pydantic: loading a config never loads psycopg or httpx.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator

if TYPE_CHECKING:
    from sync_job.config import Settings
    from sync_job.destinations.base import Destination
    from sync_job.options import RunOptions
    from sync_job.progress import Progress

DEFAULT_KIND = "pipedrive"  # a config without a `destination:` section syncs into Pipedrive
ALL_MODES = ("upsert", "update", "mirror")  # config.Mode
# Modules that register the built-in kinds; imported on the first lookup (config imports this module).
BUILTIN = ("sync_job.destinations.pipedrive_factory", "sync_job.destinations.postgres_factory")


class DestinationSettings(BaseModel):
    """The `destination:` section: each kind's model extends this one with its own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = DEFAULT_KIND

    @field_validator("kind")
    @classmethod
    def _registered(cls, value: str) -> str:
        known = kinds()
        if value not in known:
            raise ValueError(f"must be a registered destination kind: {' or '.join(repr(k) for k in known)}")
        return value


@dataclass(frozen=True, slots=True)
class RunContext:
    """What opening a destination may use besides its own settings."""

    config: Settings  # the whole config: Pipedrive reads its top-level `pipedrive:` section and the workdir
    options: RunOptions
    progress: Progress


S = TypeVar("S", bound=DestinationSettings)
Opener = Callable[[DestinationSettings, RunContext], "Destination"]


@dataclass(frozen=True, slots=True)
class Registration:
    kind: str
    settings: type[DestinationSettings]
    open: Opener
    modes: tuple[str, ...]  # the sync modes (persons:/deals: mode) the destination honours


_registered: dict[str, Registration] = {}
_builtins_loaded = False


def register(
    kind: str,
    settings: type[S],
    opener: Callable[[S, RunContext], Destination],
    *,
    modes: Collection[str] = ALL_MODES,
) -> Registration:
    """Make `kind` valid in `destination:`, validated by `settings`, opened by `opener`; returns the registration.

    Registering a kind twice with another settings model is a mistake (two modules claim one name) and raises.
    """
    if unknown := set(modes) - set(ALL_MODES):
        raise ValueError(f"unknown sync mode(s) {sorted(unknown)} for destination kind {kind!r}")
    existing = _registered.get(kind)
    if existing is not None and existing.settings is not settings:
        raise ValueError(f"destination kind {kind!r} is already registered by {existing.settings.__module__}")

    def open_checked(own: DestinationSettings, run: RunContext) -> Destination:
        if not isinstance(own, settings):  # the config validated it with this model: anything else is a bug
            raise TypeError(f"destination kind {kind!r} needs {settings.__name__}, got {type(own).__name__}")
        return opener(own, run)

    registration = Registration(kind, settings, open_checked, tuple(m for m in ALL_MODES if m in modes))
    _registered[kind] = registration
    return registration


def unregister(kind: str) -> None:
    """Forget `kind` (a test's own destination, once the test is done)."""
    _registered.pop(kind, None)


def kinds() -> list[str]:
    """The registered kinds, sorted."""
    _load_builtins()
    return sorted(_registered)


def lookup(kind: str) -> Registration:
    """The registration of `kind`; a config that validated names a registered one."""
    _load_builtins()
    try:
        return _registered[kind]
    except KeyError:
        raise LookupError(f"destination kind {kind!r} is not registered (registered: {', '.join(kinds())})") from None


def settings_from(section: object) -> object:
    """The `destination:` section validated by its kind's model (config's before-validator).

    A registered kind's errors come out located under `destination.` (pydantic nests a validator's
    ValidationError); anything that is not a mapping goes back to pydantic to be refused as such.
    """
    if isinstance(section, DestinationSettings):
        if type(section) is lookup(section.kind).settings:
            return section
        section = section.model_dump()
    if not isinstance(section, Mapping):
        return section
    kind = DestinationSettings.model_validate({"kind": section.get("kind", DEFAULT_KIND)}).kind
    return lookup(kind).settings.model_validate(dict(section))


def settings_model(section: object) -> type[BaseModel]:
    """The model a raw `destination:` section is validated by (for naming its valid keys in an error)."""
    kind = section.get("kind", DEFAULT_KIND) if isinstance(section, Mapping) else DEFAULT_KIND
    registration = _registered.get(kind) if isinstance(kind, str) and kind in kinds() else None
    return registration.settings if registration is not None else DestinationSettings


def open_destination(config: Settings, options: RunOptions, progress: Progress) -> Destination:
    """Open the destination the config names, with its own settings."""
    registration = lookup(config.destination.kind)
    return registration.open(config.destination, RunContext(config, options, progress))


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True  # first: the modules call register(), which must not come back here
    try:
        for module in BUILTIN:
            importlib.import_module(module)
    except BaseException:
        _builtins_loaded = False  # say it again on the next lookup rather than run without the built-in kinds
        raise
