"""``GET /api/jobs/{job_id}``: one job's record, 404 if unknown (key-protected)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .routing import ApiRoute

if TYPE_CHECKING:
    from .context import AppContext


async def get_job(request: Request, ctx: AppContext) -> Response:
    job_id = str(request.path_params.get("job_id", ""))
    job = await run_in_threadpool(ctx.jobs.get, job_id)
    if job is None:
        return JSONResponse({"error": "no such job"}, status_code=404)
    return JSONResponse(job.public())


ROUTES = [ApiRoute("get_job", "/api/jobs/{job_id}", ("GET",), get_job, auth="key")]
