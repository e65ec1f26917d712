"""``POST /api/github/webhook``: cap the body, then hand the delivery to ``intake``.

The cap is applied before reading everything: a declared Content-Length over it
is refused at once, and the stream is counted while it is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import intake
from ..core.webhook import MAX_BODY, TOO_LARGE, Answer
from .routing import ApiRoute

if TYPE_CHECKING:
    from ..context import AppContext


def to_response(answer: Answer) -> Response:
    if answer.body is None:
        return Response(status_code=answer.status)
    return JSONResponse(answer.body, status_code=answer.status)


async def read_capped(request: Request, limit: int = MAX_BODY) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def github_webhook(request: Request, ctx: AppContext) -> Response:
    body = await read_capped(request)
    if body is None:
        return to_response(TOO_LARGE)
    # Table and queue calls block; keep them off the event loop.
    answer = await run_in_threadpool(intake.receive, ctx, dict(request.headers), body)
    return to_response(answer)


ROUTES = [
    ApiRoute("github_webhook", "/api/github/webhook", ("POST",), github_webhook, auth="hmac"),
]
