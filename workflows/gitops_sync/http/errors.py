"""What an exception escaping a route handler becomes, for both hosts.

The Functions app and the local server answer the same way: a client's mistake
(``UsageError``) is a 400, a transient storage or lock problem a 503 with
``Retry-After``, anything else a bare 500 with one redacted log line and never a
traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from ..core.errors import (
    ConflictError,
    GitopsSyncError,
    NotFound,
    Refused,
    StorageError,
    UsageError,
)
from ..core.redact import redact

log = logging.getLogger("gitops_sync")

_REASONS = {
    400: "bad request",
    401: "unauthorized",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    413: "request body too large",
    503: "storage unavailable, retry later",
}


def error_response(status: int, message: str | None = None, **headers: str) -> JSONResponse:
    """``{"error": message}``: the one shape every error answer has."""
    body = {"error": message or _REASONS.get(status, "error")}
    return JSONResponse(body, status_code=status, headers=headers or None)


def answer_for(route_name: str, exc: Exception, secrets: Iterable[str | None]) -> Response:
    """The answer for ``exc`` escaping the handler of ``route_name``."""
    secrets = list(secrets)
    if isinstance(exc, ClientDisconnect):
        return Response(status_code=400)  # nobody is listening; just end the request
    if isinstance(exc, UsageError):
        return error_response(400, redact(str(exc), secrets))
    if isinstance(exc, NotFound):
        return error_response(404, redact(str(exc), secrets))
    if isinstance(exc, Refused):
        return error_response(409, redact(str(exc), secrets))
    if isinstance(exc, StorageError | ConflictError):
        # Transient: the client may retry; Retry-After tells it so.
        log.warning("%s: %s", route_name, redact(str(exc), secrets))
        return error_response(503, None, **{"Retry-After": "5"})
    if isinstance(exc, GitopsSyncError):
        log.error("%s failed: %s", route_name, redact(str(exc), secrets))
        return error_response(500, "internal error")
    # A bug of ours, never the client's: one redacted line in the log, the
    # traceback only at DEBUG, and a bare 500 to the client.
    log.error("%s crashed: %s: %s", route_name, type(exc).__name__, redact(str(exc), secrets))
    log.debug("traceback", exc_info=exc)
    return error_response(500, "internal error")
