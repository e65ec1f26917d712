"""``/api/functions*`` and ``/api/runtimes``: what is deployed, its versions, rollback, invoke.

All take the key. Invoke runs the active version (or a kept ``?version=N``) in
the function runtime's worker processes; its answer codes are the runtime's.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..core.errors import NotFound, UsageError
from .errors import error_response
from .routing import ApiRoute

if TYPE_CHECKING:
    from ..context import AppContext

MAX_INVOKE_BODY = 6 * 1024 * 1024


def _name(request: Request) -> str:
    return str(request.path_params.get("name", ""))


def _version_param(raw: str | None, what: str = "version") -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"{what} must be a whole number from 1 up (got {raw[:40]!r})")
    return int(raw)


async def list_functions(request: Request, ctx: AppContext) -> Response:
    return JSONResponse(await run_in_threadpool(ctx.functions.list_functions))


async def get_function(request: Request, ctx: AppContext) -> Response:
    name = _name(request)
    shown = await run_in_threadpool(ctx.functions.show, name)
    shown["workers"] = await run_in_threadpool(_workers, ctx, name)
    return JSONResponse(shown)


def _workers(ctx: AppContext, name: str) -> dict[str, Any]:
    live = ctx.live
    if live is None:
        return {"warm": 0, "busy": 0, "target": ctx.settings.deploy_target}
    return live.runtime.describe(name)


async def list_versions(request: Request, ctx: AppContext) -> Response:
    return JSONResponse(await run_in_threadpool(ctx.functions.list_versions, _name(request)))


async def rollback(request: Request, ctx: AppContext) -> Response:
    raw = await request.body()
    version: int | None = None
    if raw.strip():
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise UsageError('the body must be JSON: {"version": N} or nothing') from exc
        if not isinstance(doc, dict):
            raise UsageError('the body must be a JSON object: {"version": N}')
        value = doc.get("version")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"version must be a whole number (got {value!r})")
        if isinstance(value, int) and value < 1:
            raise NotFound(f"{_name(request)} has no kept version {value}")
        version = value
    result = await run_in_threadpool(ctx.functions.rollback, _name(request), version)
    return JSONResponse(result)


async def delete_version(request: Request, ctx: AppContext) -> Response:
    raw = str(request.path_params.get("N", ""))
    try:
        version = _version_param(raw)
    except UsageError as exc:
        raise NotFound(f"{_name(request)} has no kept version {raw[:40]!r}") from exc
    assert version is not None
    await run_in_threadpool(ctx.functions.delete_version, _name(request), version)
    return Response(status_code=204)


async def _read_capped(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def invoke(request: Request, ctx: AppContext) -> Response:
    name = _name(request)
    version = _version_param(request.query_params.get("version"))
    body = await _read_capped(request, MAX_INVOKE_BODY)
    if body is None:
        return error_response(413, f"the event is over {MAX_INVOKE_BODY // (1024 * 1024)} MiB")
    live = ctx.live
    if live is None:
        return error_response(
            404,
            f"functions run on the function app here (DEPLOY_TARGET={ctx.settings.deploy_target})",
        )
    if version is None:
        ref = await run_in_threadpool(live.active_ref, name)
        if ref is None:
            return error_response(404, f"no active function named {name!r}")
    else:
        ref = await run_in_threadpool(live.ref_for_version, name, version)
        if ref is None:
            return error_response(404, f"{name} has no kept version {version}")
    invocation_id = request.headers.get("x-invocation-id") or uuid.uuid4().hex
    result = await run_in_threadpool(
        live.runtime.invoke, name, body, version=ref, invocation_id=invocation_id[:64]
    )
    headers = {"X-Invocation-Id": invocation_id[:64], **dict(result.headers)}
    return Response(
        result.body, status_code=result.status, headers=headers, media_type="application/json"
    )


async def list_runtimes(request: Request, ctx: AppContext) -> Response:
    from ..runtime import available_runtimes

    return JSONResponse(await run_in_threadpool(available_runtimes))


ROUTES = [
    ApiRoute("list_functions", "/api/functions", ("GET",), list_functions),
    ApiRoute("get_function", "/api/functions/{name}", ("GET",), get_function),
    ApiRoute("list_function_versions", "/api/functions/{name}/versions", ("GET",), list_versions),
    ApiRoute("rollback_function", "/api/functions/{name}/rollback", ("POST",), rollback),
    ApiRoute(
        "delete_function_version",
        "/api/functions/{name}/versions/{N}",
        ("DELETE",),
        delete_version,
    ),
    ApiRoute("invoke_function", "/api/functions/{name}/invoke", ("POST",), invoke),
    ApiRoute("list_runtimes", "/api/runtimes", ("GET",), list_runtimes),
]
