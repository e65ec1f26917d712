"""``ApiRoute``: one route, described once for both hosts (Functions and local server)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..context import AppContext

Handler = Callable[["Request", "AppContext"], Awaitable["Response"]]


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """A route: ``path`` in Starlette syntax under ``/api``; ``auth`` as in CONTRACT.md.

    ``auth="key"`` routes take the key as Azure Functions does (``x-functions-key``
    header or ``code`` query parameter): the Functions host checks it in Azure,
    the local server checks ``GITOPS_SYNC_API_KEY``.
    """

    name: str  # the Azure Functions function name
    path: str  # e.g. "/api/jobs/{job_id}" or "/api/workspace/files/{path:path}"
    methods: tuple[str, ...]
    handler: Handler
    auth: Literal["none", "key", "hmac"] = "key"

    @property
    def function_route(self) -> str:
        """The Functions route template (host routePrefix "api" stripped)."""
        route = self.path.removeprefix("/api/")
        return route.replace("{path:path}", "{*path}")
