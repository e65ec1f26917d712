"""The local server's app over real HTTP: key checks, JSON errors, no 500 for client mistakes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gitops_sync.core.errors import StorageError, UsageError
from gitops_sync.http.app import create_app
from gitops_sync.http.routing import ApiRoute
from gitops_sync.local.server import LocalServer
from gitops_sync.settings import Settings
from tests.e2e.local_stack_support import serving as serve_app

KEY = "local-key-123456"
SECRET = "webhook-secret-abcdef"


@dataclass
class FakeContext:
    """The two things the app reads from an ``AppContext``."""

    settings: Settings = field(
        default_factory=lambda: Settings.from_env(
            {"GITOPS_SYNC_API_KEY": KEY, "GITHUB_WEBHOOK_SECRET": SECRET}
        )
    )
    enforce_keys: bool = True


async def _ok(request: Request, ctx: FakeContext) -> Response:
    return JSONResponse({"status": "ok", "path": request.url.path})


async def _usage(request: Request, ctx: FakeContext) -> Response:
    raise UsageError("field 'version' must be an integer")


async def _storage(request: Request, ctx: FakeContext) -> Response:
    raise StorageError("table unavailable")


async def _crash(request: Request, ctx: FakeContext) -> Response:
    raise RuntimeError(f"bug while using {SECRET} at https://u:p@example.com/x?token=t")


ROUTES = [
    ApiRoute("health", "/api/health", ("GET",), _ok, auth="none"),
    ApiRoute("job", "/api/jobs/{job_id}", ("GET",), _ok, auth="key"),
    ApiRoute("hook", "/api/github/webhook", ("POST",), _ok, auth="hmac"),
    ApiRoute("usage", "/api/usage", ("POST",), _usage, auth="none"),
    ApiRoute("storage", "/api/storage", ("GET",), _storage, auth="none"),
    ApiRoute("crash", "/api/crash", ("GET",), _crash, auth="none"),
]


@contextmanager
def serving(ctx: FakeContext) -> Iterator[str]:
    """The app served by ``LocalServer`` on a free loopback port, in a thread."""
    with serve_app(create_app(ctx, ROUTES)) as server:  # type: ignore[arg-type]
        yield server.url


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving(FakeContext()) as base:
        yield base


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/api/jobs/j1", {}, 401),
        ("GET", "/api/jobs/j1", {"x-functions-key": "wrong"}, 401),
        ("GET", "/api/jobs/j1", {"x-functions-key": KEY}, 200),
        ("GET", f"/api/jobs/j1?code={KEY}", {}, 200),
        ("GET", "/api/jobs/j1?code=nope", {}, 401),
        ("GET", "/api/health", {}, 200),
        ("POST", "/api/github/webhook", {}, 200),
    ],
    ids=["no-key", "wrong-key", "header-key", "code-param", "wrong-code", "public", "hmac-route"],
)
def test_key_routes_need_the_api_key(
    url: str, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    """ "key" routes answer 401 without GITOPS_SYNC_API_KEY (header or ?code=); others don't ask."""
    assert status == httpx.request(method, url + path, headers=headers).status_code


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/api/nope", 404, None),
        ("GET", "/", 404, None),
        ("DELETE", "/api/health", 405, "GET"),
        ("GET", "/api/github/webhook", 405, "POST"),
    ],
    ids=["unknown-route", "root", "wrong-method", "get-webhook"],
)
def test_unknown_routes_and_wrong_methods_answer_json(
    url: str, method: str, path: str, status: int, allow: str | None
) -> None:
    """Unknown routes are a JSON 404; a wrong method is a JSON 405 naming the allowed ones."""
    r = httpx.request(method, url + path)
    assert status == r.status_code
    assert "error" in r.json()
    if allow:
        assert allow in r.headers["allow"]


def test_usage_error_is_a_400_with_its_message(url: str) -> None:
    """A UsageError from a handler is the client's mistake: 400 with the one-line message."""
    r = httpx.post(url + "/api/usage")
    assert 400 == r.status_code
    assert "field 'version' must be an integer" == r.json()["error"]


def test_storage_error_is_a_503_to_retry(url: str) -> None:
    """A transient storage failure is 503 with Retry-After, not a 500."""
    r = httpx.get(url + "/api/storage")
    assert 503 == r.status_code
    assert r.headers["retry-after"].isdigit()


def test_crash_is_a_bare_500_without_details_or_secrets(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler bug answers a bare JSON 500; the log line hides the secret and URL query."""
    with caplog.at_level("ERROR", logger="gitops_sync"):
        r = httpx.get(url + "/api/crash")
    assert 500 == r.status_code
    assert {"error": "internal error"} == r.json()
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "RuntimeError" in logged
    assert SECRET not in logged
    assert "token=t" not in logged
    assert "u:p@" not in logged


def test_keys_are_not_checked_when_the_host_does_it() -> None:
    """With enforce_keys False (the Functions host checks keys), key routes pass through."""
    with serving(FakeContext(enforce_keys=False)) as base:
        assert 200 == httpx.get(base + "/api/jobs/j1").status_code


def test_no_api_key_configured_locks_key_routes() -> None:
    """Without GITOPS_SYNC_API_KEY, key routes answer 401 to every key (never open by default)."""
    ctx = FakeContext(settings=Settings.from_env({}))
    with serving(ctx) as base:
        assert 401 == httpx.get(base + "/api/jobs/j1", headers={"x-functions-key": ""}).status_code
        assert 401 == httpx.get(base + "/api/jobs/j1?code=anything").status_code


def test_taken_port_fails_with_one_clear_line() -> None:
    """Binding a port already in use raises a UsageError naming the port."""
    first = LocalServer(create_app(FakeContext(), ROUTES), port=0)  # type: ignore[arg-type]
    try:
        with pytest.raises(UsageError, match=str(first.port)):
            LocalServer(create_app(FakeContext(), ROUTES), port=first.port)  # type: ignore[arg-type]
    finally:
        first.close()


def test_accepted_connections_have_tcp_nodelay() -> None:
    """Connections accepted on the bound socket have TCP_NODELAY (else answers stall ~40 ms)."""
    import socket

    from gitops_sync.local.server import bind

    sock = bind(0)
    seen: list[int] = []

    class Record(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            conn = transport.get_extra_info("socket")
            seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Record, sock=sock)
        async with server:
            _reader, writer = await asyncio.open_connection(*sock.getsockname())
            while not seen:
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(main())
    assert [1] == [int(bool(v)) for v in seen]
