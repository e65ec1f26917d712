"""Helpers for the event-pipeline tests: a stack on the session Azurite, deliveries, a client."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gitops_sync import worker
from gitops_sync.context import AppContext
from gitops_sync.core.webhook import sign
from gitops_sync.http.routes import ROUTES
from gitops_sync.settings import Settings
from tests.gitrepo import Repo

SECRET = "whsec-test-Zq8uT3"
TOKEN = "ghp-test-token-Kx7wP2"
REPOSITORY = "acme/site"


@dataclass
class Stack:
    """An AppContext on its own tables and queue, with a real repository and workspace."""

    ctx: AppContext
    repo: Repo
    workspace: Path
    settings: Settings
    app_settings: dict[str, str] = field(default_factory=dict)

    def run_queue(self, limit: int = 50) -> list[str]:
        """Process every queued message once, in queue order; returns the bodies handled."""
        seen = []
        for _ in range(limit):
            got = self.ctx.queue.receive(1, visibility_timeout=60)
            if not got:
                break
            msg = got[0]
            worker.handle_message(self.ctx, msg.body, msg.dequeue_count)
            self.ctx.queue.delete(msg)
            seen.append(msg.body)
        return seen

    def drain(self) -> list[str]:
        """Take every queued message off the queue without handling it."""
        bodies = []
        while True:
            got = self.ctx.queue.receive(32, visibility_timeout=60)
            if not got:
                return bodies
            for m in got:
                bodies.append(m.body)
                self.ctx.queue.delete(m)


def make_stack(
    storage: str,
    tmp_path: Path,
    *,
    secret: str | None = SECRET,
    repository: str | None = REPOSITORY,
    repo_url: str | None = None,
    token: str | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Stack:
    repo = Repo(tmp_path / "repo")
    workspace = tmp_path / "workspace"
    env = {
        "AzureWebJobsStorage": storage,
        "SYNC_REPOSITORY": repository or "",
        "SYNC_REPO_URL": repo_url or str(repo.path),
        "WORKSPACE_ROOT": str(workspace),
        "SYNC_QUEUE": f"q{uuid.uuid4().hex[:16]}",
        "GITOPS_SYNC_CACHE_DIR": str(tmp_path / "cache"),
        "DEPLOY_PACKAGE_CONTAINER": f"pkg-{uuid.uuid4().hex[:16]}",
    }
    if secret:
        env["GITHUB_WEBHOOK_SECRET"] = secret
    if token:
        env["GIT_TOKEN"] = token
    env.update(extra_env or {})
    settings = Settings.from_env(env)
    app_settings: dict[str, str] = {}
    ctx = AppContext.from_settings(
        settings, prefix=f"t{uuid.uuid4().hex[:12]}", lookup=app_settings.get, lease_wait_s=2.0
    )
    return Stack(ctx, repo, workspace, settings, app_settings)


def push_payload(
    commit: str,
    *,
    ref: str = "refs/heads/main",
    repository: str = REPOSITORY,
    deleted: bool = False,
    **extra: Any,
) -> bytes:
    doc = {
        "ref": ref,
        "before": "0" * 40,
        "after": commit,
        "deleted": deleted,
        "created": False,
        "repository": {
            "full_name": repository,
            "clone_url": "https://evil.invalid/never-used.git",
        },
        "head_commit": None if deleted else {"id": commit},
        **extra,
    }
    return json.dumps(doc).encode()


def delivery_headers(
    body: bytes,
    *,
    event: str = "push",
    secret: str | None = SECRET,
    delivery: str | None = None,
) -> dict[str, str]:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": "application/json",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return headers


def asgi_app(ctx: AppContext) -> Starlette:
    """A tiny Starlette app serving the shared handlers (no key checks: not under test here)."""

    def endpoint(handler: Any) -> Any:
        async def call(request: Request) -> Response:
            response: Response = await handler(request, ctx)
            return response

        return call

    return Starlette(
        routes=[Route(r.path, endpoint(r.handler), methods=list(r.methods)) for r in ROUTES]
    )


class Client:
    """A synchronous face on ``httpx.ASGITransport``: each call runs the app in-process."""

    def __init__(self, ctx: AppContext) -> None:
        self.app = asgi_app(ctx)

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                r = await c.request(method, url, **kw)
                await r.aread()
                return r

        return asyncio.run(go())

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def client(ctx: AppContext) -> Client:
    return Client(ctx)
