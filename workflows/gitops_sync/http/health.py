"""``GET /api/health``: 200 when storage answers and its tables and queue exist (public).

A missing table or queue is created again here; while that fails the answer is 503
with ``Retry-After``, as every 503 is.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..core.errors import StorageError
from .routing import ApiRoute

if TYPE_CHECKING:
    from ..context import AppContext

log = logging.getLogger("gitops_sync")


async def health(request: Request, ctx: AppContext) -> Response:
    try:
        await run_in_threadpool(ctx.tables.check)
        await run_in_threadpool(ctx.queue.check)
    except StorageError as exc:
        log.warning("health: %s", exc)
        return JSONResponse(
            {"status": "unavailable"}, status_code=503, headers={"Retry-After": "5"}
        )
    return JSONResponse({"status": "ok"})


ROUTES = [ApiRoute("health", "/api/health", ("GET",), health, auth="none")]
