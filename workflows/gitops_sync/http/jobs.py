"""``GET /api/jobs/{job_id}``: one job's record, 404 if unknown; ``GET /api/jobs``: the newest.

Both take the key. The list route is not in the contract; ``gitops-sync jobs list``
uses it to read a running stack whose storage it cannot reach directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import error_response
from .routing import ApiRoute

if TYPE_CHECKING:
    from ..context import AppContext


async def get_job(request: Request, ctx: AppContext) -> Response:
    job_id = str(request.path_params.get("job_id", ""))
    job = await run_in_threadpool(ctx.jobs.get, job_id)
    if job is None:
        return error_response(404, "no such job")
    return JSONResponse(job.public())


async def list_jobs(request: Request, ctx: AppContext) -> Response:
    raw = request.query_params.get("limit", "20")
    limit = int(raw) if raw.isdigit() else 20
    connection = request.query_params.get("connection") or None
    jobs = await run_in_threadpool(ctx.jobs.list, max(1, min(limit, 500)), connection)
    return JSONResponse([j.public() for j in jobs])


ROUTES = [
    ApiRoute("list_jobs", "/api/jobs", ("GET",), list_jobs, auth="key"),
    ApiRoute("get_job", "/api/jobs/{job_id}", ("GET",), get_job, auth="key"),
]
