"""The Azure Functions app without the host: its metadata, and its functions' user code run
against a real Azurite, with requests and queue messages built as the worker would."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from fastapi import Request

from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.context import MAX_DEQUEUE, AppContext
from gitops_sync.core.errors import RepositoryUnreachable
from gitops_sync.http.routes import ROUTES
from gitops_sync.jobs import FAILED, QUEUED, SUCCEEDED
from gitops_sync.settings import Settings
from tests.gitrepo import expected_files, workspace_files
from tests.pipeline_support import Stack, delivery_headers, make_stack, push_payload

pytestmark = pytest.mark.azurite
ROOT = Path(__file__).resolve().parents[2]
APP_ROOT = ROOT / "workflows"


def _load_app(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> ModuleType:
    """Import ``workflows/function_app.py`` afresh with ``env`` as the app settings."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("function_app", APP_ROOT / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "function_app", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def stack(storage: str, tmp_path: Path) -> Stack:
    return make_stack(storage, tmp_path)


@pytest.fixture()
def fa(monkeypatch: pytest.MonkeyPatch, stack: Stack) -> ModuleType:
    module = _load_app(monkeypatch, {"SYNC_QUEUE": stack.settings.queue})
    module._context = stack.ctx  # the test's tables and queue
    return module


def _functions(module: ModuleType) -> dict[str, Any]:
    # get_functions() may run once per app (as the host indexes once): keep its answer.
    if not hasattr(module, "_indexed"):
        module._indexed = {f.get_function_name(): f for f in module.app.get_functions()}
    return module._indexed


def _user_function(module: ModuleType, name: str) -> Any:
    return _functions(module)[name].get_user_function()


def _request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
             path_params: dict[str, str] | None = None) -> Request:  # fmt: skip
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "path_params": path_params or {},
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
    }
    return Request(scope, receive)


def _call(module: ModuleType, name: str, request: Request) -> tuple[int, Any]:
    response = asyncio.run(_user_function(module, name)(request))
    return response.status_code, json.loads(response.body) if response.body else None


def test_every_route_is_a_function_with_its_route_and_auth_level(fa: ModuleType):
    """Each shared route is registered with its Functions route template and auth level,
    plus one queue trigger on the settings' queue and one timer trigger."""
    functions = _functions(fa)
    assert set(functions) == {r.name for r in ROUTES} | {"sync_worker", "reconcile"}
    for route in ROUTES:
        trigger = functions[route.name].get_trigger()
        assert trigger.route == route.function_route
        expected = func.AuthLevel.FUNCTION if route.auth == "key" else func.AuthLevel.ANONYMOUS
        assert trigger.auth_level == expected
        assert sorted(m.value for m in trigger.methods) == sorted(route.methods)
    queue = functions["sync_worker"].get_trigger()
    assert (queue.queue_name, queue.connection) == (fa.SETTINGS.queue, "AzureWebJobsStorage")
    assert functions["reconcile"].get_trigger().schedule == "0 */5 * * * *"


def test_http_functions_take_the_fastapi_extension_types(fa: ModuleType):
    """HTTP functions are annotated with the streaming extension's Request and Response."""
    from azurefunctions.extensions.http.fastapi import Request as ExtRequest
    from azurefunctions.extensions.http.fastapi import Response as ExtResponse

    for route in ROUTES:
        hints = _user_function(fa, route.name).__annotations__
        assert (hints["req"], hints["return"]) == (ExtRequest, ExtResponse)


def test_host_json_configures_the_queue_and_http_extensions():
    """host.json: base64 messages, 5 deliveries (the worker's MAX_DEQUEUE), routePrefix api."""
    host = json.loads((APP_ROOT / "host.json").read_text())
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"
    assert queues["maxDequeueCount"] == MAX_DEQUEUE
    for key in ("visibilityTimeout", "batchSize", "newBatchThreshold"):
        assert key in queues
    assert host["extensions"]["http"]["routePrefix"] == "api"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"


def test_webhook_job_and_worker_through_the_functions(fa: ModuleType, stack: Stack):
    """A push through the webhook function is queued; the queue function syncs it; the job
    function reports it succeeded; an unknown job is 404; health is ok."""
    stack.repo.write("index.html", "<h1>hi</h1>")
    commit = stack.repo.commit()
    body = push_payload(commit)
    req = _request("POST", "/api/github/webhook", body, delivery_headers(body))
    status, doc = _call(fa, "github_webhook", req)
    assert status == 202 and doc["commit"] == commit
    job_id = doc["job_id"]

    [message] = stack.ctx.queue.receive(1)
    msg = QueueMessage(body=message.body.encode(), dequeue_count=message.dequeue_count)
    _user_function(fa, "sync_worker")(msg)
    assert workspace_files(stack.workspace) == expected_files(stack.repo.path, commit)

    found = _request("GET", f"/api/jobs/{job_id}", path_params={"job_id": job_id})
    got = _call(fa, "get_job", found)
    assert got[0] == 200
    assert (got[1]["job_id"], got[1]["status"], got[1]["commit"]) == (job_id, SUCCEEDED, commit)
    assert got[1]["summary"]["added"] == 1
    missing = _request("GET", "/api/jobs/nope", path_params={"job_id": "nope"})
    assert _call(fa, "get_job", missing)[0] == 404
    assert _call(fa, "health", _request("GET", "/api/health")) == (200, {"status": "ok"})


def test_queue_function_poison_attempt_leaves_a_failed_job(
    monkeypatch: pytest.MonkeyPatch, storage: str, tmp_path: Path
):
    """A transient failure on the last delivery (dequeue_count 5) records the job failed and
    raises, so the host moves the message to the poison queue with the job visible as failed."""
    stack = make_stack(storage, tmp_path, repo_url="http://127.0.0.1:9/unreachable.git")
    fa = _load_app(monkeypatch, {"SYNC_QUEUE": stack.settings.queue})
    fa._context = stack.ctx
    body = push_payload("c" * 40)
    answer = _call(fa, "github_webhook", _request("POST", "/", body, delivery_headers(body)))
    job_id = answer[1]["job_id"]
    [message] = stack.drain()
    worker_fn = _user_function(fa, "sync_worker")
    with pytest.raises(RepositoryUnreachable):
        worker_fn(QueueMessage(body=message.encode(), dequeue_count=1))
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and job.status == QUEUED
    with pytest.raises(RepositoryUnreachable):
        worker_fn(QueueMessage(body=message.encode(), dequeue_count=MAX_DEQUEUE))
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and job.status == FAILED and job.error


def test_timer_function_queues_a_reconcile(fa: ModuleType, stack: Stack):
    """The timer function queues one reconcile job for the configured repository."""
    _user_function(fa, "reconcile")(TimerRequest(past_due=True))
    [job] = stack.ctx.jobs.list()
    assert (job.kind, job.status) == ("reconcile", QUEUED)
    assert len(stack.drain()) == 1


def test_health_is_503_when_storage_is_unreachable(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """With storage down the health function answers 503, not an error page."""
    from gitops_sync.settings import azurite_connection_string

    dead = azurite_connection_string(blob=9, queue=9, table=9)
    fa = _load_app(monkeypatch, {"SYNC_QUEUE": "sync-jobs"})
    settings = Settings.from_env({"AzureWebJobsStorage": dead, "WORKSPACE_ROOT": str(tmp_path)})
    fa._context = AppContext.from_settings(settings, prefix="deadstorage")
    status, doc = _call(fa, "health", _request("GET", "/api/health"))
    assert status == 503 and doc == {"status": "unavailable"}


def test_workspace_store_is_a_directory_under_the_root(stack: Stack):
    """Without WORKSPACE_SHARE the default workspace is the WORKSPACE_ROOT directory."""
    store = stack.ctx.workspace_store()
    assert isinstance(store, DirectoryStore) and store.root == stack.workspace.absolute()


def test_app_indexes_without_any_storage_setting(tmp_path: Path):
    """Importing the app (what the host's indexing does) needs no storage and no settings."""
    import subprocess

    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    code = "import function_app as f; print(len(f.app.get_functions()))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=APP_ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) == len(ROUTES) + 2
