"""The local server's Starlette app: the shared ``ROUTES`` plus what the Functions host adds.

In Azure the host checks function keys and turns crashes into bare 500s; here
``create_app`` does both, and answers unknown routes and wrong methods in JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core.errors import ConflictError, GitopsSyncError, StorageError, UsageError
from ..core.redact import redact
from .auth import key_ok, unauthorized
from .routing import ApiRoute, Handler

if TYPE_CHECKING:
    from .context import AppContext

log = logging.getLogger("gitops_sync")

_REASONS = {
    400: "bad request",
    401: "unauthorized",
    404: "not found",
    405: "method not allowed",
    413: "request body too large",
    503: "storage unavailable, retry later",
}


def error_response(status: int, message: str | None = None, **headers: str) -> JSONResponse:
    """``{"error": message}``: the one shape every error answer of the local server has."""
    body = {"error": message or _REASONS.get(status, "error")}
    return JSONResponse(body, status_code=status, headers=headers or None)


def _secrets(ctx: Any) -> list[str]:
    settings = getattr(ctx, "settings", None)
    return settings.secrets() if settings is not None else []


def _api_key(ctx: Any) -> str | None:
    settings = getattr(ctx, "settings", None)
    return getattr(settings, "api_key", None)


def _endpoint(route: ApiRoute, ctx: AppContext) -> Any:
    """Wrap one handler: key check first, then translate what escapes it into an answer."""
    handler: Handler = route.handler
    check_key = route.auth == "key" and bool(getattr(ctx, "enforce_keys", False))

    async def endpoint(request: Request) -> Response:
        if check_key and not key_ok(request, _api_key(ctx)):
            return unauthorized()
        try:
            return await handler(request, ctx)
        except HTTPException:
            raise  # Starlette's own handler answers it (JSON, see below)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening; just end the request
        except UsageError as exc:
            return error_response(400, redact(str(exc), _secrets(ctx)))
        except (StorageError, ConflictError) as exc:
            # Transient: the client may retry; Retry-After tells it so.
            log.warning("%s: %s", route.name, redact(str(exc), _secrets(ctx)))
            return error_response(503, None, **{"Retry-After": "5"})
        except GitopsSyncError as exc:
            log.error("%s failed: %s", route.name, redact(str(exc), _secrets(ctx)))
            return error_response(500, "internal error")
        except Exception as exc:
            # A bug of ours, never the client's: one redacted line in the log, the
            # traceback only at DEBUG, and a bare 500 to the client.
            log.error(
                "%s crashed: %s: %s",
                route.name,
                type(exc).__name__,
                redact(str(exc), _secrets(ctx)),
            )
            log.debug("traceback", exc_info=True)
            return error_response(500, "internal error")

    endpoint.__name__ = route.name
    return endpoint


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})  # a 405 carries Starlette's Allow header
    detail = exc.detail if exc.detail and exc.detail != _phrase(exc.status_code) else None
    return error_response(exc.status_code, detail, **headers)


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def create_app(ctx: AppContext, routes: Sequence[ApiRoute] | None = None) -> Starlette:
    """The Starlette app serving ``routes`` (default: ``http.routes.ROUTES``) for ``ctx``."""
    if routes is None:
        from .routes import ROUTES

        routes = ROUTES
    starlette_routes = [
        Route(r.path, _endpoint(r, ctx), methods=list(r.methods), name=r.name) for r in routes
    ]
    app = Starlette(
        routes=starlette_routes,
        exception_handlers={HTTPException: _http_exception},
    )
    app.state.ctx = ctx
    return app
