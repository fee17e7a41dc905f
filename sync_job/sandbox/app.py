"""The aiohttp application: routes of the Pipedrive v2 subset, behind auth, rate limits and fault injection."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sync_job.sandbox import catalog, field_options, listing
from sync_job.sandbox.envelope import ApiError, bad_request, error_body, ok
from sync_job.sandbox.faults import Faults
from sync_job.sandbox.fields import Entity
from sync_job.sandbox.options import SandboxOptions
from sync_job.sandbox.ratelimit import RateLimiter
from sync_job.sandbox.stats import Stats
from sync_job.sandbox.store import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLOUDFLARE_HTML = (
    "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"
    "<body><h1>Sorry, you have been blocked</h1><p>You are unable to access pipedrive.com</p></body></html>"
)
# Only to answer 410 Gone, as v1 deal/person routes are out of support; nothing in the client calls them.
_V1_PREFIXES = ("/v1/deals", "/v1/persons", "/api/v1/deals", "/api/v1/persons")
_PLURAL: dict[str, Entity] = {"persons": "person", "deals": "deal"}


@dataclass
class Runtime:
    """Everything a request touches; shared with the Sandbox object in the caller's thread."""

    options: SandboxOptions
    store: Store
    limiter: RateLimiter
    faults: Faults
    stats: Stats


RUNTIME = web.AppKey("runtime", Runtime)


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), status=status, content_type="application/json")


def _error(exc: ApiError) -> web.Response:
    return _json(exc.body(), exc.status)


def _token(request: web.Request) -> str | None:
    token = request.headers.get("x-api-token")
    if token:
        return token
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query.get("api_token")  # legacy query token: accepted like the real API (reference §1)


def _kind(method: str, route: str) -> str:
    """The token-cost kind of a route ("" = not an API operation)."""
    if route.endswith("/options"):
        return {"POST": "options_create", "PATCH": "options_update", "DELETE": "options_delete"}.get(method, "")
    if route in ("/api/v2/pipelines", "/api/v2/stages"):
        return "catalog" if method == "GET" else ""
    if route.endswith("Fields"):
        return {"GET": "fields", "POST": "field_create"}.get(method, "")
    if route.endswith("{code}"):
        return "get" if method == "GET" else ""
    if route.endswith("/search"):
        return "search" if method == "GET" else ""
    if route.endswith("{id}"):
        return {"GET": "get", "PATCH": "update", "DELETE": "delete"}.get(method, "")
    if route.startswith("/api/v2/"):
        return {"GET": "list", "POST": "create"}.get(method, "")
    return ""


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "(unmatched)"
    rt.stats.request(request.method, route)
    if rt.options.latency_ms > 0:
        await asyncio.sleep(rt.options.latency_ms / 1000)
    now = time.monotonic()
    token = _token(request)
    if request.path.startswith(_V1_PREFIXES):
        exc = ApiError(410, "This endpoint is out of support: use /api/v2/deals and /api/v2/persons")
        return _finish(rt, _error(exc), rt.limiter.peek(token or "", now))
    if token is None or not secrets.compare_digest(token.encode(), rt.options.token.encode()):
        exc = ApiError(401, "unauthorized access")
        return _finish(rt, _error(exc), rt.limiter.peek("", now))
    kind = _kind(request.method, route)
    decision = rt.limiter.admit(token, kind, now)
    if not decision.allowed:
        return _refuse(rt, decision.reason, decision.retry_after, decision.consecutive_429s, decision.headers)
    failure = rt.faults.failure() if kind else None
    if failure is not None:
        rt.stats.bump("injected_5xx")
        exc = ApiError(failure, "Internal server error (injected by the sandbox)", error_info="Please try again later")
        return _finish(rt, _error(exc), decision.headers)
    try:
        response = await handler(request)
    except ApiError as exc:
        response = _error(exc)
    except web.HTTPException as exc:  # router 404/405: same envelope as the API
        response = _error(ApiError(exc.status, exc.reason or "Not found"))
    if request.method in ("POST", "PATCH", "DELETE") and response.status == 200 and kind:
        rt.stats.write(f"{route.split('/')[3]}.{kind}")  # "persons.create", "dealFields.field_create", ...
        if rt.faults.drop():
            rt.stats.bump("dropped")
            # Committed, but the client never hears back: cut the TCP connection (RST) mid-exchange.
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
    return _finish(rt, response, decision.headers)


def _refuse(rt: Runtime, reason: str, retry_after: int, streak: int, headers: dict[str, str]) -> web.StreamResponse:
    limit = rt.options.forbid_html_after_429s
    if limit is not None and streak > limit:
        rt.stats.bump("forbidden_html")
        response = web.Response(text=CLOUDFLARE_HTML, status=403, content_type="text/html")
        return _finish(rt, response, headers)
    rt.stats.bump("rate_limited")
    if reason == "budget":
        rt.stats.bump("budget_429s")
        message = "Daily API token budget exhausted"
    else:
        message = "Request over limit: too many requests in the rolling 2-second window"
    response = _json(error_body(message, status=429), 429)
    response.headers["Retry-After"] = str(retry_after)
    return _finish(rt, response, headers)


def _finish(rt: Runtime, response: web.StreamResponse, headers: dict[str, str]) -> web.StreamResponse:
    response.headers.update(headers)
    rt.stats.status(response.status)
    return response


async def _body(request: web.Request) -> object:
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise bad_request("Request body is not valid JSON") from None


def _segment(request: web.Request) -> str:
    """ "persons", "deals", "personFields" or "dealFields": the resource after /api/v2/."""
    return request.path.split("/")[3]


def _entity(request: web.Request) -> Entity:
    return _PLURAL[_segment(request)]


def _record_id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def list_records(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    data, cursor = listing.list_records(rt.store, _entity(request), request.query)
    return _json(ok(data, cursor))


async def get_record(request: web.Request) -> web.StreamResponse:
    rt, entity = request.app[RUNTIME], _entity(request)
    codes = listing.custom_codes_param(rt.store, entity, request.query)
    labels = listing.option_labels_param(rt.store, entity, request.query)
    return _json(ok(rt.store.get(entity, _record_id(request), codes, labels)))


async def create_record(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    return _json(ok(rt.store.create(_entity(request), await _body(request))))


async def update_record(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    return _json(ok(rt.store.update(_entity(request), _record_id(request), await _body(request))))


async def delete_record(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    return _json(ok({"id": rt.store.delete(_entity(request), _record_id(request))}))


async def search_records(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    data, cursor = listing.search_records(rt.store, _entity(request), request.query)
    return _json(ok(data, cursor))


def _field_entity(request: web.Request) -> Entity:
    return "person" if _segment(request) == "personFields" else "deal"


async def list_fields(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    data, cursor = listing.list_fields(rt.store, _field_entity(request), request.query)
    return _json(ok(data, cursor))


async def get_field(request: web.Request) -> web.StreamResponse:
    rt, code = request.app[RUNTIME], request.match_info["code"]
    with rt.store.lock:
        fd = rt.store.fields[_field_entity(request)].by_code.get(code)
        if fd is None:
            raise ApiError(404, f"field {code} not found", error_info="Object was not found.")
        return _json(ok(fd.to_v2()))


async def create_field(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    return _json(ok(listing.create_field(rt.store, _field_entity(request), await _body(request))))


_OPTION_OPERATIONS = {"POST": field_options.add, "PATCH": field_options.relabel, "DELETE": field_options.remove}


async def field_options_route(request: web.Request) -> web.StreamResponse:
    rt, code = request.app[RUNTIME], request.match_info["code"]
    operation = _OPTION_OPERATIONS[request.method]
    data = operation(rt.store, _field_entity(request), code, await _body(request))
    return _json({"success": True, "data": data, "additional_data": None})  # the spec example's envelope


async def list_pipelines(request: web.Request) -> web.StreamResponse:
    return _json(ok(*catalog.list_pipelines(request.query)))


async def list_stages(request: web.Request) -> web.StreamResponse:
    return _json(ok(*catalog.list_stages(request.query)))


async def get_pipeline(request: web.Request) -> web.StreamResponse:
    return _json(ok(catalog.get_pipeline(_record_id(request))))


async def get_stage(request: web.Request) -> web.StreamResponse:
    return _json(ok(catalog.get_stage(_record_id(request))))


def make_app(runtime: Runtime) -> web.Application:
    app = web.Application(middlewares=[gate], client_max_size=4 * 1024 * 1024)
    app[RUNTIME] = runtime
    for plural in _PLURAL:
        base = f"/api/v2/{plural}"
        app.router.add_get(base, list_records)
        app.router.add_post(base, create_record)
        app.router.add_get(base + "/search", search_records)
        app.router.add_get(base + r"/{id:\d+}", get_record)
        app.router.add_patch(base + r"/{id:\d+}", update_record)
        app.router.add_delete(base + r"/{id:\d+}", delete_record)
    for entity in ("person", "deal"):
        base = f"/api/v2/{entity}Fields"
        app.router.add_get(base, list_fields)
        app.router.add_post(base, create_field)
        app.router.add_get(base + "/{code}", get_field)
        for method in _OPTION_OPERATIONS:
            app.router.add_route(method, base + "/{code}/options", field_options_route)
    app.router.add_get("/api/v2/pipelines", list_pipelines)
    app.router.add_get(r"/api/v2/pipelines/{id:\d+}", get_pipeline)
    app.router.add_get("/api/v2/stages", list_stages)
    app.router.add_get(r"/api/v2/stages/{id:\d+}", get_stage)
    return app
