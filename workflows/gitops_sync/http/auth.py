"""The local server's key check, shaped like the Functions host's function keys."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response


def presented_key(request: Request) -> str | None:
    return request.headers.get("x-functions-key") or request.query_params.get("code")


def key_ok(request: Request, api_key: str | None) -> bool:
    """True when ``api_key`` is set and the request presents exactly it."""
    given = presented_key(request)
    if not api_key or not given:
        return False
    return hmac.compare_digest(given.encode(), api_key.encode())


def unauthorized() -> Response:
    # A page that tells nothing: no hint whether the route or the resource exists.
    return Response(status_code=401, headers={"WWW-Authenticate": 'Key realm="gitops-sync"'})
