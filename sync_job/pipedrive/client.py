"""The async Pipedrive v2 client: paced, budgeted, retried requests; paged reads; safe creates and updates."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import polars as pl
import stamina

from sync_job import __version__
from sync_job.errors import ConfigError, RowError, SourceError, TransientError, Unavailable
from sync_job.pipedrive import kinds
from sync_job.pipedrive.budget import COSTS, DEFAULT_RESERVE, TokenBudget
from sync_job.pipedrive.entities import ENTITY_PLURAL, FIELDS_PATH, Entity, options_path
from sync_job.pipedrive.field_types import NEW_FIELD_TYPE, IdField, NotConvertible, check_id_type, to_api
from sync_job.pipedrive.fields import FieldMissing, create_field_body, match_id_field, one_custom_field
from sync_job.pipedrive.lookup import find_external_id, reread_params, server_clock, server_since
from sync_job.pipedrive.pagination import CursorPaginator, next_cursor
from sync_job.pipedrive.ratelimit import RateHeaders, RateLimiter
from sync_job.pipedrive.record_schema import RecordSchema
from sync_job.pipedrive.retry import (
    NotSent,
    OutcomeUnknown,
    RateLimited,
    response_error,
    retry_hook,
    transport_error,
)
from sync_job.pipedrive.stats import ApiStats, Kind

__all__ = ["Entity", "PipedriveClient", "WriteResult", "make_http_client"]

log = logging.getLogger(__name__)

GONE_STATUSES = frozenset({404, 410})  # a DELETE answered so: the record no longer exists


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of one create or update; `recovered` means a lost create was found already written."""

    action: Literal["create", "update", "delete"]
    pipedrive_id: int
    status: int
    recovered: bool = False


def make_http_client(
    base_url: str, concurrency: int, timeout: float, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """One keep-alive pool sized to the concurrency; the token is added per request, never stored here."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        transport=transport,
        headers={"accept": "application/json", "user-agent": f"sync-job/{__version__}"},
    )


# `custom_fields=` on a list narrows the custom fields returned to at most this many keys (api-reference §4.1).
MAX_CUSTOM_FIELDS_PARAM = 15


class PipedriveClient:
    """Persons and deals through API v2. All requests of one client share its limiter, budget and stats."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        token: str,
        *,
        concurrency: int = 8,
        max_attempts: int = 6,
        max_seconds: float = 120.0,
        max_tokens: int | None = None,
        limiter: RateLimiter | None = None,
        settle_seconds: float = 1.0,
        budget_reserve: int = DEFAULT_RESERVE,
    ) -> None:
        if not token:
            raise ConfigError("the Pipedrive API token is empty")
        self._http = http
        self._token = token
        self._base_url = str(http.base_url).rstrip("/")
        self._max_attempts = max_attempts
        self._max_seconds = max_seconds
        self._settle_seconds = settle_seconds  # lets a write the server is still finishing land before a re-read
        self._sem = asyncio.Semaphore(concurrency)
        self._fields: dict[tuple[Entity, str], IdField] = {}
        self._items: dict[Entity, list[dict[str, Any]]] = {}  # the field lists this run read, by entity
        self._forbidden_streak = 0
        self._date: tuple[str, float] | None = None  # last Date header and our wall clock when it arrived
        self.limiter = limiter or RateLimiter()
        self.budget = TokenBudget(max_tokens=max_tokens, reserve=budget_reserve)
        self.stats = ApiStats()

    @property
    def base_url(self) -> str:
        return self._base_url

    # ---- one request -------------------------------------------------------------------------------------

    async def _send(
        self, kind: Kind, method: str, path: str, params: dict[str, Any] | None, body: Any, use_reserve: bool
    ) -> tuple[int, Any]:
        cost, search, where = COSTS[kind], kind == "search", f"{method} {path}"
        async with self._sem:
            self.budget.check(cost, use_reserve=use_reserve)
            waited = await self.limiter.acquire(search=search)  # not `+= await`: that loses concurrent updates
            self.stats.waited_seconds += waited
            self.budget.check(cost, use_reserve=use_reserve)  # it may have moved while we waited
            self.budget.start(cost)
            self.stats.requests[kind] += 1
            try:
                response = await self._http.request(
                    method, path, params=params, json=body, headers={"x-api-token": self._token}
                )
            except httpx.TransportError as exc:
                error = transport_error(exc, where=where)
                charged = not isinstance(error, NotSent)
                self.budget.finish(cost, charged=charged, daily_remaining=None)
                self.stats.tokens_used += cost if charged else 0
                self.stats.statuses[0] += 1
                self.stats.tick(0)
                raise error from None  # the httpx error carries the request (and its headers): drop it
            except BaseException:
                self.budget.finish(cost, charged=True, daily_remaining=None)
                self.stats.tokens_used += cost
                raise
        headers = RateHeaders.parse(response.headers)
        charged = response.status_code != 429  # a refused request is not charged (as the sandbox models it)
        self.budget.finish(
            cost, charged=charged, daily_remaining=headers.daily_remaining, daily_limit=headers.daily_limit
        )
        self.stats.tokens_used += cost if charged else 0
        self.stats.statuses[response.status_code] += 1
        self.stats.tick(response.status_code, headers.limit)
        if headers.daily_remaining is not None:
            self.stats.daily_remaining = headers.daily_remaining
        self.limiter.observe(headers, search=search)
        if date := response.headers.get("date"):
            self._date = (date, time.time())
        outcome = response_error(
            response,
            headers,
            where=where,
            base_url=self._base_url,
            secret=self._token,
            forbidden_streak=self._forbidden_streak + 1,
        )
        if outcome is None:
            self._forbidden_streak = 0
            try:
                return response.status_code, response.json()
            except ValueError:
                raise OutcomeUnknown(f"{where}: {response.status_code} with a body that is not JSON") from None
        if response.status_code == 429:
            self.stats.rate_limited += 1
        elif response.status_code == 403 and isinstance(outcome, RateLimited):
            self.stats.forbidden_html += 1
            self._forbidden_streak += 1
        if isinstance(outcome, RateLimited) and outcome.retry_after is not None:
            self.limiter.pause(outcome.retry_after, search=search)
        raise outcome

    async def _call(
        self,
        kind: Kind,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        retry_unknown: bool = True,
        use_reserve: bool = False,
    ) -> tuple[int, Any]:
        """One logical request, retried on transient failures (bounded attempts and time, jittered backoff)."""
        hook = retry_hook(self.stats, retry_unknown=retry_unknown)
        async for attempt in stamina.retry_context(
            on=hook, attempts=self._max_attempts, timeout=self._max_seconds, wait_initial=0.5, wait_max=10.0
        ):
            with attempt:
                return await self._send_paced(kind, method, path, params, body, use_reserve)
        raise AssertionError("unreachable: stamina re-raises the last error")

    async def _send_paced(
        self, kind: Kind, method: str, path: str, params: dict[str, Any] | None, body: Any, use_reserve: bool
    ) -> tuple[int, Any]:
        """Resend after rate limiting (the limiter already paused everyone) until `max_seconds` have passed."""
        deadline = self.limiter.clock() + self._max_seconds
        while True:
            try:
                return await self._send(kind, method, path, params, body, use_reserve)
            except RateLimited:
                if self.limiter.clock() >= deadline:
                    raise
                self.stats.retries += 1

    # ---- reading -----------------------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except NotSent as exc:
            if exc.unknown_host:  # DNS says the name does not exist: a typo no retry can fix
                raise ConfigError(f"cannot reach {self._base_url}: {exc.reason}: check the base URL") from None
            # Refused, timed out, no route, DNS not answering: a blip at 03:00 must not fail the day's Job.
            raise Unavailable(
                f"cannot reach {self._base_url}: {exc.reason} (gave up after {self._max_attempts} attempts)"
            ) from None
        except TransientError as exc:  # the server, not our input: exit 1 so the scheduler simply tries later
            raise Unavailable(f"Pipedrive could not be read: {exc} (gave up after retries)") from None
        except RowError as exc:
            raise SourceError(f"Pipedrive refused a read: {exc}") from None

    async def _pages(self, path: str, params: dict[str, Any], *, use_reserve: bool = False) -> AsyncIterator[Any]:
        """Every `data` list of a cursor-paged v2 endpoint, limit=500."""
        pager = CursorPaginator(where=f"GET {path}")
        kind: Kind = "fields" if path.endswith("Fields") else "list"
        while not pager.done:
            _, body = await self._call(kind, "GET", path, params={**params, **pager.params()}, use_reserve=use_reserve)
            data = (body.get("data") or []) if isinstance(body, dict) else []
            yield data
            pager.advance(next_cursor(body), len(data))

    async def iter_pages(
        self, schema: RecordSchema, *, updated_since: str | None = None, deleted: bool = False
    ) -> AsyncIterator[pl.DataFrame]:
        """The entity's records, one frame per page of 500 (the schema's remote columns).

        With `updated_since` (RFC 3339), only records whose `update_time` is at or after it, oldest change first;
        `deleted` lists deals deleted in the last 30 days instead of the live ones.
        """
        path = f"/api/v2/{ENTITY_PLURAL[schema.entity]}"
        params: dict[str, str] = {}
        codes = schema.custom_codes()
        if len(codes) <= MAX_CUSTOM_FIELDS_PARAM:  # beyond it the parameter is refused: all custom fields come
            params["custom_fields"] = ",".join(codes)
        if updated_since is not None:
            params |= {"updated_since": updated_since, "sort_by": "update_time", "sort_direction": "asc"}
        if deleted:
            params["status"] = "deleted"
        with self._reading():
            async for data in self._pages(path, params):
                yield schema.frame(data)

    def server_now(self) -> datetime | None:
        """Now in Pipedrive's clock: its last Date header plus the time since; None before any Date header."""
        date, received = self._date or (None, None)
        server = server_clock(time.time(), date, received)
        return None if server is None else datetime.fromtimestamp(server, UTC)

    async def read_all(self, schema: RecordSchema) -> pl.DataFrame:
        frames = [frame async for frame in self.iter_pages(schema)]
        return pl.concat(frames, how="vertical", rechunk=True) if frames else schema.empty()

    # ---- custom fields -----------------------------------------------------------------------------------

    async def _field_items(self, entity: Entity) -> list[dict[str, Any]]:
        items = [item async for data in self._pages(FIELDS_PATH[entity], {}) for item in data]
        self._items[entity] = items
        return items

    async def field_items(self, entity: Entity) -> list[dict[str, Any]]:
        """Every field definition of the entity, as the v2 field list last gave them (read once per run)."""
        if entity in self._items:
            return self._items[entity]
        with self._reading():
            return await self._field_items(entity)

    async def create_custom_field(self, entity: Entity, body: dict[str, Any]) -> dict[str, Any]:
        """POST a field definition and return it (see `_create_field`); ConfigError when that cannot be known."""
        with self._reading():
            data = await self._create_field(entity, body)
        if data is None:
            raise ConfigError(
                f"could not create the {ENTITY_PLURAL[entity]} custom field {body['field_name']!r}: outcome unknown"
            )
        return data

    async def _create_field(self, entity: Entity, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST a field definition; after an unknown outcome the field list is read before trying again, so a lost
        answer never makes a second field. None when no attempt's outcome was known and the field is not listed."""
        name = str(body["field_name"])
        for _ in range(self._max_attempts):
            try:
                _, answer = await self._call(
                    "field_create", "POST", FIELDS_PATH[entity], body=body, retry_unknown=False
                )
                data: dict[str, Any] = answer["data"]
                log.info("created the %s custom field %r (%s)", ENTITY_PLURAL[entity], name, data["field_code"])
                return data
            except OutcomeUnknown:  # it may exist now: look before creating a second one
                found = one_custom_field(await self._field_items(entity), name, entity)
                if found is not None:
                    return found
            except RowError as exc:
                raise ConfigError(
                    f"could not create the {ENTITY_PLURAL[entity]} custom field {name!r}: {exc}"
                ) from None
        return None

    async def add_options(self, entity: Entity, field_code: str, labels: list[str]) -> list[dict[str, Any]]:
        """Add options to an enum field (atomic, api-reference §8.4); returns the field's options afterwards.

        Not retried blindly when the outcome is unknown: the field is read again and only missing labels are sent.
        """
        with self._reading():
            for _ in range(self._max_attempts):
                current = await self._options(entity, field_code)
                have = {kinds.label(o.get("label", "")) for o in current}
                missing = [label for label in labels if label not in have]
                if not missing:
                    return current
                try:
                    await self._call(
                        "option_create",
                        "POST",
                        options_path(entity, field_code),
                        body=[{"label": label} for label in missing],
                        retry_unknown=False,
                    )
                except OutcomeUnknown:
                    continue
                except RowError as exc:
                    raise ConfigError(
                        f"could not add option(s) {missing[:3]} to the {ENTITY_PLURAL[entity]} field "
                        f"{field_code}: {exc}"
                    ) from None
                return await self._options(entity, field_code)
        raise ConfigError(f"could not add options to the {ENTITY_PLURAL[entity]} field {field_code}: outcome unknown")

    async def _options(self, entity: Entity, field_code: str) -> list[dict[str, Any]]:
        _, answer = await self._call("field_get", "GET", f"{FIELDS_PATH[entity]}/{field_code}")
        options = (answer.get("data") or {}).get("options") if isinstance(answer, dict) else None
        return list(options or [])

    async def resolve_field(self, entity: Entity, name: str, *, create: bool = True) -> str:
        """The `field_code` of the custom field called `name`, created (varchar) when missing."""
        return (await self.resolve_id_field(entity, name, create=create)).code

    async def resolve_id_field(self, entity: Entity, name: str, *, create: bool = True) -> IdField:
        """The external-id field called `name` with its type, created (varchar) when missing.

        An existing field is used whatever its type, as long as the type can hold an id (ConfigError otherwise).
        """
        if (entity, name) in self._fields:
            return self._fields[(entity, name)]
        with self._reading():
            field = match_id_field(await self._field_items(entity), name, entity)
            if field is None and create and (data := await self._create_field(entity, create_field_body(name))):
                field_type = str(data.get("field_type") or NEW_FIELD_TYPE)
                check_id_type(ENTITY_PLURAL[entity], name, field_type)  # a lost answer's field is the one listed
                field = IdField(str(data["field_code"]), name, field_type)
        if field is None:
            raise FieldMissing(f"Pipedrive has no {ENTITY_PLURAL[entity]} custom field named {name!r}")
        self._fields[(entity, name)] = field
        return field

    # ---- writing -----------------------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except TransientError as exc:
            status = getattr(exc, "status", None) or (429 if isinstance(exc, RateLimited) else None)
            raise RowError(f"{exc} (gave up after retries)", status=status) from None

    async def find_by_external_id(
        self, entity: Entity, field_code: str, external_id: str, since: float, field_type: str = NEW_FIELD_TYPE
    ) -> int | None:
        """Consistent re-read: list records updated since `since` (epoch seconds) and match the custom field.

        Search is not used: its index may lag behind writes, so only the list endpoint can say "absent".
        """
        date, received = self._date or (None, None)
        params = reread_params(server_since(since, date, received), field_code)
        async for data in self._pages(f"/api/v2/{ENTITY_PLURAL[entity]}", params, use_reserve=True):
            if (found := find_external_id(data, field_code, external_id, field_type)) is not None:
                return found
        return None

    async def create(
        self,
        entity: Entity,
        body: dict[str, Any],
        *,
        external_id: str,
        field_code: str,
        field_type: str = NEW_FIELD_TYPE,
    ) -> WriteResult:
        """POST one record; when the outcome is unknown, re-read and create only if it is really absent.

        The external id goes into its field in the field's type, unless `body` carries it already.
        """
        path = f"/api/v2/{ENTITY_PLURAL[entity]}"
        custom = dict(body.get("custom_fields") or {})
        if field_code not in custom:
            try:
                custom[field_code] = to_api(field_type, external_id)
            except NotConvertible as exc:
                raise RowError(f"{entity} {external_id}: the id field ({field_type}) cannot hold it: {exc}") from None
        payload = {**body, "custom_fields": custom}
        first_sent: float | None = None
        started = time.monotonic()
        last: OutcomeUnknown | None = None
        with self._writing():
            for _ in range(self._max_attempts):
                sent = time.time()
                try:
                    status, answer = await self._call("create", "POST", path, body=payload, retry_unknown=False)
                    return WriteResult("create", int(answer["data"]["id"]), status)
                except OutcomeUnknown as exc:
                    last, first_sent = exc, first_sent or sent
                self.stats.unknown_outcomes += 1
                log.warning("%s %s: outcome unknown (%s); re-reading before any retry", entity, external_id, last)
                await self.limiter.sleep(self._settle_seconds)
                found = await self.find_by_external_id(entity, field_code, external_id, first_sent, field_type)
                if found is not None:
                    self.stats.recovered += 1
                    return WriteResult("create", found, 200, recovered=True)
                self.stats.retries += 1
                if time.monotonic() - started > self._max_seconds:
                    break
        raise RowError(
            f"{entity} {external_id}: create failed, outcome unknown and not found by re-read ({last})",
            status=last.status if last else None,
        )

    async def update(self, entity: Entity, record_id: int, changes: dict[str, Any]) -> WriteResult:
        """PATCH only the given fields; updates are idempotent, so every transient failure is simply retried."""
        if not changes:
            raise ValueError(f"{entity} {record_id}: update with no changes")
        path = f"/api/v2/{ENTITY_PLURAL[entity]}/{int(record_id)}"
        with self._writing():
            status, _ = await self._call("update", "PATCH", path, body=changes)
        return WriteResult("update", int(record_id), status)

    async def delete(self, entity: Entity, record_id: int) -> WriteResult:
        """DELETE one record (Pipedrive keeps it 30 days); retried like an update, since deleting twice is harmless.

        404 or 410 means it is gone already: a retry after a lost response, or a delete by hand since the read.
        Either way the record is deleted, which is what was asked.
        """
        path = f"/api/v2/{ENTITY_PLURAL[entity]}/{int(record_id)}"
        try:
            with self._writing():
                status, _ = await self._call("delete", "DELETE", path)
        except RowError as exc:
            if exc.status not in GONE_STATUSES:
                raise
            return WriteResult("delete", int(record_id), exc.status, recovered=True)
        return WriteResult("delete", int(record_id), status)

    async def aclose(self) -> None:
        await self._http.aclose()
