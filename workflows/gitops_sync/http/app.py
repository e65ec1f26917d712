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
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import key_ok, unauthorized
from .errors import answer_for, error_response
from .routing import ApiRoute, Handler

if TYPE_CHECKING:
    from ..context import AppContext

log = logging.getLogger("gitops_sync")


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
        except Exception as exc:
            return answer_for(route.name, exc, _secrets(ctx))

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
