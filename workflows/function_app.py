"""The Azure Functions app (Python v2 model): one Blueprint per trigger kind.

HTTP functions are generated from ``gitops_sync.http.routes.ROUTES`` (so routes added
there are served here too); the queue trigger runs the worker; the timer reconciles.
"""

# No ``from __future__ import annotations``: the Functions worker reads the real
# annotation objects (the FastAPI extension's Request/Response) to pick bindings.

import logging
from collections.abc import Awaitable, Callable

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from gitops_sync import debug, worker
from gitops_sync.context import AppContext
from gitops_sync.http.errors import answer_for
from gitops_sync.http.routes import ROUTES
from gitops_sync.http.routing import ApiRoute
from gitops_sync.settings import Settings, log_unresolved_references

log = logging.getLogger("gitops_sync")
# The SDKs log every request at INFO; that is noise in Application Insights.
logging.getLogger("azure").setLevel(logging.WARNING)

SETTINGS = Settings.from_env()  # read once per worker process
log_unresolved_references(SETTINGS)  # said once at start; GET /api/health answers 503 meanwhile
debug.start_from_environment()  # ENABLE_DEBUGGING (dev container only; refused in Azure)
_context: AppContext | None = None


def context() -> AppContext:
    """The process's AppContext, built on first use (indexing must not need storage)."""
    global _context
    if _context is None:
        # In Azure the host checks function keys before a "key" route runs.
        _context = AppContext.from_settings(SETTINGS, enforce_keys=False)
    return _context


def reconcile_schedule(interval_s: int) -> str:
    """An NCRONTAB schedule for "every ``interval_s`` seconds", rounded to what cron can say."""
    minutes = max(1, round(interval_s / 60))
    if minutes < 60:
        while 60 % minutes:
            minutes -= 1  # the nearest divisor of an hour at or below the interval
        return f"0 */{minutes} * * * *"
    hours = max(1, min(24, round(minutes / 60)))
    while 24 % hours:
        hours -= 1
    return f"0 0 */{hours} * * *"


# ------------------------------------------------------------------------ HTTP
async def call_route(route: ApiRoute, req: Request) -> Response:
    """Run a shared handler; what escapes it becomes an answer, never a traceback."""
    ctx = context()
    try:
        return await route.handler(req, ctx)
    except Exception as exc:
        return answer_for(route.name, exc, ctx.secrets())


def _http_function(route: ApiRoute) -> Callable[[Request], Awaitable[Response]]:
    async def http_function(req: Request) -> Response:
        return await call_route(route, req)

    http_function.__name__ = http_function.__qualname__ = route.name
    return http_function


http_bp = func.Blueprint()
for _route in ROUTES:
    _level = func.AuthLevel.FUNCTION if _route.auth == "key" else func.AuthLevel.ANONYMOUS
    http_bp.function_name(name=_route.name)(
        http_bp.route(
            route=_route.function_route,
            methods=list(_route.methods),
            auth_level=_level,
            trigger_arg_name="req",
        )(_http_function(_route))
    )


# ----------------------------------------------------------------------- queue
queue_bp = func.Blueprint()


@queue_bp.function_name(name="sync_worker")
@queue_bp.queue_trigger(
    arg_name="msg",
    queue_name=SETTINGS.queue,  # SYNC_QUEUE, with the contract's default when unset
    connection="AzureWebJobsStorage",
)
def sync_worker(msg: func.QueueMessage) -> None:
    """One sync job; a raised error makes the host deliver it again (then poison)."""
    worker.handle_message(context(), msg.get_body().decode("utf-8"), msg.dequeue_count)


# ----------------------------------------------------------------------- timer
timer_bp = func.Blueprint()


@timer_bp.function_name(name="reconcile")
@timer_bp.timer_trigger(
    arg_name="timer",
    schedule=reconcile_schedule(SETTINGS.reconcile_interval_s),
    run_on_startup=False,
    use_monitor=True,
)
def reconcile(timer: func.TimerRequest) -> None:
    """Queue a reconcile of every connection: repairs drift, catches missed webhooks."""
    if timer.past_due:
        log.info("reconcile timer is past due; running now")
    worker.reconcile(context())


app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_bp)
app.register_functions(queue_bp)
app.register_functions(timer_bp)
