"""``GET /api/health``: 200 when storage answers and its tables and queue exist (public).

A missing table or queue is created again here; while that fails the answer is 503
with ``Retry-After``, as every 503 is. Also 503 while a setting holds an unresolved
Key Vault reference (named, never its value).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import timeline
from ..core.errors import StorageError
from .routing import ApiRoute

if TYPE_CHECKING:
    from ..context import AppContext

log = logging.getLogger("gitops_sync")
#: An unresolved Key Vault reference lasts until the app restarts: ask again in a minute.
KEY_VAULT_RETRY_AFTER_S = 60


async def health(request: Request, ctx: AppContext) -> Response:
    if problem := ctx.settings.key_vault_problem():  # names the settings, never their values
        return JSONResponse(
            {"status": "unavailable", "error": problem},
            status_code=503,
            headers={"Retry-After": str(KEY_VAULT_RETRY_AFTER_S)},
        )
    rid = request.headers.get("x-request-id", "") if timeline.on() else ""
    timeline.mark("handler", rid)
    try:
        await run_in_threadpool(_timed, rid, "tables", ctx.tables.check)
        await run_in_threadpool(_timed, rid, "queue", ctx.queue.check)
    except StorageError as exc:
        log.warning("health: %s", exc)
        return JSONResponse(
            {"status": "unavailable"}, status_code=503, headers={"Retry-After": "5"}
        )
    timeline.mark("answer", rid)
    return JSONResponse({"status": "ok"})


def _timed(rid: str, what: str, check: Callable[[], None]) -> None:
    """``check()`` with its start and end on the timeline (when it is on)."""
    timeline.mark("call_start", rid, what)
    try:
        check()
    finally:
        timeline.mark("call_end", rid, what)


ROUTES = [ApiRoute("health", "/api/health", ("GET",), health, auth="none")]
