"""The functions API and CLI over real HTTP: deploy on Azurite, invoke in real worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from gitops_sync import intake
from gitops_sync.http.app import create_app
from tests.deploy_support import add_function
from tests.e2e.local_stack_support import serving
from tests.pipeline_support import Stack, delivery_headers, make_stack, push_payload

pytestmark = pytest.mark.azurite
KEY = "test-api-key-Qm3"


@pytest.fixture()
def stack(storage: str, tmp_path: Path) -> Iterator[Stack]:
    s = make_stack(storage, tmp_path, extra_env={"GITOPS_SYNC_API_KEY": KEY})
    s.ctx.enforce_keys = True
    yield s
    s.ctx.close()


@pytest.fixture()
def url(stack: Stack) -> Iterator[str]:
    with serving(create_app(stack.ctx)) as server:
        yield server.url


def push(stack: Stack) -> dict[str, Any]:
    commit = stack.repo.commit()
    body = push_payload(commit)
    answer = intake.receive(stack.ctx, delivery_headers(body), body)
    assert answer.body is not None
    stack.run_queue()
    job = stack.ctx.jobs.get(answer.body["job_id"])
    assert job is not None and job.status == "succeeded", job and job.error
    assert job.summary is not None
    return dict(job.summary["functions"])


def api(url: str, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"x-functions-key": KEY, **kw.pop("headers", {})}
    return httpx.request(method, url + path, headers=headers, timeout=60, **kw)


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPS_SYNC")}
    return subprocess.run(
        [sys.executable, "-m", "gitops_sync", "functions", *args, "--url", url, "--key", KEY],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_invoke_follows_deploys_and_rollbacks(stack, url):
    """Invoke answers v1, then v2 after a push, then v1 after a rollback."""
    add_function(stack.repo, "orders", "o1")
    push(stack)
    r = api(url, "POST", "/api/functions/orders/invoke", json={"n": 1})
    assert (200, {"answer": "o1", "event": {"n": 1}}) == (r.status_code, r.json())
    add_function(stack.repo, "orders", "o2")
    push(stack)
    assert "o2" == api(url, "POST", "/api/functions/orders/invoke", json={}).json()["answer"]
    r = api(url, "POST", "/api/functions/orders/rollback")
    assert (200, 1, True) == (r.status_code, r.json()["active_version"], r.json()["pinned"])
    assert "o1" == api(url, "POST", "/api/functions/orders/invoke", json={}).json()["answer"]
    r = api(url, "POST", "/api/functions/orders/invoke?version=2", json={})
    assert "o2" == r.json()["answer"]


def test_removed_function_answers_404_and_keeps_its_versions(stack, url):
    """A deleted directory: invoke 404, versions still listed."""
    add_function(stack.repo, "orders", "o1")
    add_function(stack.repo, "billing", "b1")
    push(stack)
    assert 200 == api(url, "POST", "/api/functions/billing/invoke", json={}).status_code
    stack.repo.remove("functions/billing")
    push(stack)
    stack.ctx.live.refresh()  # the serving process's periodic read, done now
    assert 404 == api(url, "POST", "/api/functions/billing/invoke", json={}).status_code
    versions = api(url, "GET", "/api/functions/billing/versions").json()
    assert [1] == [v["version"] for v in versions]
    assert "removed" == api(url, "GET", "/api/functions/billing").json()["status"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/functions/nobody", None, 404),
        ("GET", "/api/functions/nobody/versions", None, 404),
        ("POST", "/api/functions/nobody/rollback", None, 404),
        ("POST", "/api/functions/orders/rollback", b'{"version": 7}', 404),
        ("POST", "/api/functions/orders/rollback", b'{"version": "x"}', 400),
        ("POST", "/api/functions/orders/rollback", b"[1]", 400),
        ("POST", "/api/functions/orders/rollback", b"not json", 400),
        ("DELETE", "/api/functions/orders/versions/1", None, 409),
        ("DELETE", "/api/functions/orders/versions/9", None, 404),
        ("DELETE", "/api/functions/orders/versions/abc", None, 404),
        ("POST", "/api/functions/nobody/invoke", b"{}", 404),
        ("POST", "/api/functions/orders/invoke?version=9", b"{}", 404),
        ("POST", "/api/functions/orders/invoke?version=x", b"{}", 400),
        ("POST", "/api/functions/orders/invoke", b"{not json", 400),
        ("POST", "/api/functions/orders/invoke", b"x" * (6 * 1024 * 1024 + 1), 413),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("/") else None,
)
def test_client_mistakes_get_clear_4xx_answers(stack, url, method, path, body, status):
    """Unknown names and versions 404, bad bodies 400, active delete 409, oversize 413."""
    add_function(stack.repo, "orders", "o1")
    push(stack)
    r = api(url, method, path, content=body)
    assert status == r.status_code
    assert r.json()["error"]


def test_routes_need_the_key(stack, url):
    """Without the key every functions route answers 401."""
    for method, path in [("GET", "/api/functions"), ("GET", "/api/runtimes"),
                         ("POST", "/api/functions/x/invoke")]:  # fmt: skip
        assert 401 == httpx.request(method, url + path, timeout=30).status_code


def test_show_has_config_workers_and_no_secret_values(stack, url):
    """show: normalised config with secret NAMES, workers with the memory mechanism."""
    stack.app_settings["ORDERS_DB_URL"] = "postgres://secret-value"
    add_function(stack.repo, "orders", "o1", 'secrets = ["ORDERS_DB_URL"]\n')
    push(stack)
    api(url, "POST", "/api/functions/orders/invoke", json={})
    shown = api(url, "GET", "/api/functions/orders").json()
    assert ["ORDERS_DB_URL"] == shown["config"]["secrets"]
    assert "secret-value" not in json.dumps(shown)
    assert {"warm", "busy", "memory_limit"} <= set(shown["workers"])


def test_runtimes_lists_every_identifier_and_this_python(stack, url):
    """GET /api/runtimes: each supported identifier; python3.11 available here."""
    rows = {r["runtime"]: r["available"] for r in api(url, "GET", "/api/runtimes").json()}
    assert {"python3.10", "python3.11", "python3.12", "python3.13"} == set(rows)
    assert rows["python3.11"] is True


def test_cli_lists_shows_versions_rolls_back_and_invokes(stack, url, tmp_path):
    """The functions CLI through the API: tables, --json, rollback --to, invoke --data @file."""
    add_function(stack.repo, "orders", "o1")
    push(stack)
    add_function(stack.repo, "orders", "o2")
    push(stack)
    listed = cli(url, "list")
    assert 0 == listed.returncode, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:3] == ["NAME", "STATUS", "VERSION"]
    assert "orders" in listed.stdout
    versions = json.loads(cli(url, "versions", "orders", "--json").stdout)
    assert [1, 2] == [v["version"] for v in versions]
    rolled = cli(url, "rollback", "orders", "--to", "1")
    assert (0, "orders: version 1 active, pinned\n") == (rolled.returncode, rolled.stdout)
    shown = cli(url, "show", "orders")
    assert "pinned" in shown.stdout
    event = tmp_path / "event.json"
    event.write_text('{"k": "v"}')
    out = cli(url, "invoke", "orders", "--data", f"@{event}", "--json")
    assert {"answer": "o1", "event": {"k": "v"}} == json.loads(out.stdout)


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["show", "nobody"], 1, "no function named 'nobody'"),
        (["rollback", "orders", "--to", "9"], 1, "no kept version 9"),
        (["invoke", "orders", "--data", "{bad"], 2, "--data is not valid JSON"),
    ],
    ids=["unknown-function", "unknown-version", "bad-data"],
)
def test_cli_errors_are_one_line_with_the_right_exit_code(stack, url, args, code, needle):
    """Unknown names/versions exit 1, bad input exits 2; one line on stderr, no traceback."""
    add_function(stack.repo, "orders", "o1")
    push(stack)
    r = cli(url, *args)
    assert code == r.returncode
    assert 1 == len(r.stderr.strip().splitlines()), r.stderr
    assert needle in r.stderr


def test_concurrent_invocations_past_max_concurrency_get_429(stack, url):
    """30 at once against max_concurrency 3: some run, the rest get 429 with Retry-After."""
    stack.repo.write(
        "functions/slow/function.toml",
        'runtime = "python3.11"\nhandler = "main.handle"\nmax_concurrency = 3\nwarm_workers = 0\n',
    )
    stack.repo.write(
        "functions/slow/main.py", "import time\ndef handle(event, context):\n"
        "    time.sleep(1.5)\n    return {'ok': True}\n",
    )  # fmt: skip
    push(stack)
    with ThreadPoolExecutor(30) as pool:
        codes = list(
            pool.map(lambda _: api(url, "POST", "/api/functions/slow/invoke", json={}), range(30))
        )
    statuses = [r.status_code for r in codes]
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1
    assert all(r.headers.get("Retry-After") for r in codes if r.status_code == 429)
