"""``gitops-sync connections`` and ``gitops-sync jobs`` as real processes against Azurite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops_sync.context import AppContext
from gitops_sync.jobs import Job, new_job_id
from gitops_sync.settings import Settings

pytestmark = pytest.mark.azurite
CLI = str(Path(sys.executable).parent / "gitops-sync")
API_KEY = "api-key-test-7Qm"


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture()
def env(storage: str, tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_", "GITHUB_"))}
    out.update(AzureWebJobsStorage=storage, WORKSPACE_ROOT=str(tmp_path / "ws"))
    return out


def test_connections_add_list_remove(env: dict[str, str]):
    """A connection added by the CLI is listed with its secret setting's name (the secret
    value never printed), and removing it makes it disappear."""
    repo = f"acme/r{uuid.uuid4().hex[:8]}"
    secret = "whsec-cli-Vq92"
    env = {**env, "MY_HOOK_SECRET": secret}
    added = _run(env, "connections", "add", repo, "--secret-setting", "MY_HOOK_SECRET")
    assert added.returncode == 0, added.stderr
    listed = _run(env, "connections", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert secret not in listed.stdout
    [doc] = [d for d in json.loads(listed.stdout) if d["repository"] == repo]
    assert (doc["secret_setting"], doc["secret_configured"], doc["branch"]) == (
        "MY_HOOK_SECRET",
        True,
        "main",
    )
    again = _run(env, "connections", "add", repo.upper(), "--secret-setting", "X", "--id", "zz")
    assert again.returncode != 0 and "already connected" in again.stderr
    assert _run(env, "connections", "remove", doc["id"]).returncode == 0
    listed = json.loads(_run(env, "connections", "list", "--json").stdout)
    assert repo not in [d["repository"] for d in listed]


def test_connections_add_refuses_a_secret_value_as_a_setting_name(env: dict[str, str]):
    """Passing something that is not a setting name fails with one line and no traceback."""
    r = _run(env, "connections", "add", "acme/x", "--secret-setting", "not a name!")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_jobs_list_and_show_read_the_tables(env: dict[str, str]):
    """A job recorded in the tables is listed and shown by the CLI; an unknown id fails."""
    ctx = AppContext.from_settings(Settings.from_env(env))
    job = Job(new_job_id(), "default", "acme/site", "f" * 40)
    ctx.jobs.create(job)
    listed = _run(env, "jobs", "list", "--json", "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    assert job.job_id in [d["job_id"] for d in json.loads(listed.stdout)]
    shown = _run(env, "jobs", "show", job.job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert (doc["job_id"], doc["status"], doc["commit"]) == (job.job_id, "queued", "f" * 40)
    text = _run(env, "jobs", "show", job.job_id)
    assert f"status         {job.status}" in text.stdout
    missing = _run(env, "jobs", "show", "nope")
    assert missing.returncode != 0 and "no such job" in missing.stderr


@pytest.fixture()
def api(storage: str, tmp_path: Path) -> Iterator[tuple[str, AppContext]]:
    """A real HTTP server on 127.0.0.1 (free port) serving the shared routes with a key."""
    import socket
    import threading

    import uvicorn
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import Response

    from tests.pipeline_support import asgi_app

    settings = Settings.from_env({"AzureWebJobsStorage": storage, "WORKSPACE_ROOT": str(tmp_path)})
    ctx = AppContext.from_settings(settings, prefix=f"cli{uuid.uuid4().hex[:10]}")
    app = asgi_app(ctx)

    async def require_key(request: Request, call_next: Any) -> Response:
        if request.headers.get("x-functions-key") != API_KEY:
            return Response(status_code=401)
        return await call_next(request)

    app.add_middleware(BaseHTTPMiddleware, dispatch=require_key)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
            assert thread.is_alive()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", ctx
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def test_jobs_through_a_servers_api(env: dict[str, str], api: tuple[str, AppContext]):
    """With --url the CLI reads jobs through the HTTP API with GITOPS_SYNC_API_KEY; a wrong
    key is one clear error line."""
    url, ctx = api
    older, newer = Job(new_job_id(), "default", "acme/site", "a" * 40), None
    ctx.jobs.create(older)
    newer = Job(new_job_id(), "default", "acme/site", "b" * 40)
    ctx.jobs.create(newer)
    env = {**env, "GITOPS_SYNC_API_KEY": API_KEY}
    listed = _run(env, "jobs", "list", "--url", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [d["job_id"] for d in json.loads(listed.stdout)] == [newer.job_id, older.job_id]
    shown = _run(env, "jobs", "show", older.job_id, "--url", url, "--json")
    assert json.loads(shown.stdout)["commit"] == "a" * 40
    refused = _run({**env, "GITOPS_SYNC_API_KEY": "wrong"}, "jobs", "show", "x", "--url", url)
    assert refused.returncode != 0 and "key" in refused.stderr
    assert "Traceback" not in refused.stderr
