"""``/api/connections``: the repositories this deployment syncs, listed, added and removed.

All take the key. Not in the contract's route table: they let ``gitops-sync
connections --url`` manage a server whose storage the CLI cannot reach. Answers
carry setting names, never secret values.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..connections import EDITABLE, Connection, new_connection
from ..core.errors import NotFound, UsageError
from .routing import ApiRoute

if TYPE_CHECKING:
    from ..context import AppContext

MAX_BODY = 16 * 1024


async def list_connections(request: Request, ctx: AppContext) -> Response:
    found = await run_in_threadpool(ctx.connections.all)
    return JSONResponse([c.describe() for c in found])


def connection_from(conn_id: str, doc: Any) -> Connection:
    """The connection a PUT body describes; ``UsageError`` naming every bad field."""
    if not isinstance(doc, dict):
        raise UsageError("the body must be a JSON object, e.g. "
                         '{"repository": "owner/name", "secret_setting": "NAME"}')  # fmt: skip
    problems = [f"unknown field {k!r}" for k in doc if k not in EDITABLE]
    wrong = [k for k in EDITABLE if doc.get(k) is not None and not isinstance(doc[k], str)]
    problems += [f"{k} must be a string" for k in wrong]
    problems += [f"{k} is required" for k in ("repository", "secret_setting") if not doc.get(k)]
    if doc.get("workspace") and doc.get("share"):
        problems.append("give workspace or share, not both")
    if problems:
        raise UsageError("; ".join(problems))
    fields: dict[str, Any] = {k: doc.get(k) for k in EDITABLE}
    return new_connection(conn_id, **fields)


async def put_connection(request: Request, ctx: AppContext) -> Response:
    conn_id = str(request.path_params.get("id", ""))
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise UsageError(f"the body is over {MAX_BODY // 1024} KiB")
    try:
        doc = json.loads(raw or b"null")
    except ValueError as exc:
        raise UsageError("the body must be JSON") from exc
    conn = connection_from(conn_id, doc)
    await run_in_threadpool(ctx.connections.add, conn)
    stored = await run_in_threadpool(ctx.connections.get, conn.id)
    return JSONResponse((stored or conn).describe())


async def delete_connection(request: Request, ctx: AppContext) -> Response:
    conn_id = str(request.path_params.get("id", ""))
    if not await run_in_threadpool(ctx.connections.remove, conn_id):
        raise NotFound(f"no stored connection {conn_id[:64]!r}")
    return Response(status_code=204)


ROUTES = [
    ApiRoute("list_connections", "/api/connections", ("GET",), list_connections),
    ApiRoute("put_connection", "/api/connections/{id}", ("PUT",), put_connection),
    ApiRoute("delete_connection", "/api/connections/{id}", ("DELETE",), delete_connection),
]
