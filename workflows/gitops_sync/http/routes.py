"""Every HTTP route, once: the Functions app and the local server both serve ``ROUTES``.

Each feature module exports its own ``ROUTES``; add a module here to publish it.
"""

from __future__ import annotations

from . import connections, functions, health, jobs, webhook, workspace
from .routing import ApiRoute

ROUTES: list[ApiRoute] = [
    *webhook.ROUTES,
    *health.ROUTES,
    *jobs.ROUTES,
    *workspace.ROUTES,
    *functions.ROUTES,
    *connections.ROUTES,
]
