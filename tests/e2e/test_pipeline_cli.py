"""``gitops-sync connections`` and ``gitops-sync jobs`` as real processes against Azurite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

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
    """The real app (key checks on) on a real HTTP server on a free loopback port."""
    from gitops_sync.http.app import create_app
    from tests.e2e.local_stack_support import serving

    env = {"AzureWebJobsStorage": storage, "WORKSPACE_ROOT": str(tmp_path)}
    settings = Settings.from_env({**env, "GITOPS_SYNC_API_KEY": API_KEY})
    ctx = AppContext.from_settings(settings, prefix=f"cli{uuid.uuid4().hex[:10]}")
    ctx.enforce_keys = True
    with serving(create_app(ctx)) as server:
        yield server.url, ctx
    ctx.close()


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


def test_connections_through_a_servers_api(env: dict[str, str], api: tuple[str, AppContext]):
    """With --url and --key, `connections add|list|remove` go through /api/connections: what
    is added lands in the server's tables, a refused field is exit 2 with its reason, an
    unknown id is exit 2, and a wrong key is exit 1."""
    url, ctx = api
    env = {k: v for k, v in env.items() if k != "AzureWebJobsStorage"}
    repo = f"acme/r{uuid.uuid4().hex[:8]}"
    srv = ("--url", url, "--key", API_KEY)
    added = _run(env, "connections", "add", repo, "--secret-setting", "HOOK_X", "--branch", "dev",
                 *srv)  # fmt: skip
    assert (0, "") == (added.returncode, added.stderr)
    stored = ctx.connections.for_repository(repo)
    assert stored is not None and ("dev", "HOOK_X") == (stored.branch, stored.secret_setting)
    listed = _run(env, "connections", "list", "--json", *srv)
    assert 0 == listed.returncode, listed.stderr
    [doc] = [d for d in json.loads(listed.stdout) if d["repository"] == repo]
    assert (stored.id, "dev", False) == (doc["id"], doc["branch"], doc["secret_configured"])
    bad = _run(env, "connections", "add", "acme/y", "--secret-setting", "not a name!", *srv)
    assert 2 == bad.returncode and "is not an app setting name" in bad.stderr
    assert "Traceback" not in bad.stderr and 1 == len(bad.stderr.strip().splitlines())
    refused = _run(env, "connections", "list", "--url", url, "--key", "wrong")
    assert 1 == refused.returncode and "refused the key (401)" in refused.stderr
    assert 0 == _run(env, "connections", "remove", stored.id, *srv).returncode
    assert ctx.connections.for_repository(repo) is None
    gone = _run(env, "connections", "remove", stored.id, *srv)
    assert 2 == gone.returncode and "no stored connection" in gone.stderr


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("PUT", "/api/connections/x1", b"[1]", 400, "JSON object"),
        ("PUT", "/api/connections/x1", b"{not json", 400, "must be JSON"),
        ("PUT", "/api/connections/x1", b'{"repository": "a/b"}', 400, "secret_setting is required"),
        (
            "PUT",
            "/api/connections/x1",
            b'{"repository": 5, "secret_setting": "S", "colour": 1}',
            400,
            "unknown field 'colour'; repository must be a string",
        ),
        (
            "PUT",
            "/api/connections/Bad_Id",
            b'{"repository": "a/b", "secret_setting": "S"}',
            400,
            "connection id",
        ),
        (
            "PUT",
            "/api/connections/x1",
            b'{"repository": "a/b", "secret_setting": "S", "workspace": "../up"}',
            400,
            "relative folder",
        ),
        ("PUT", "/api/connections/x1", b"{" + b" " * 17000 + b"}", 400, "over 16 KiB"),
        ("DELETE", "/api/connections/nope", b"", 404, "no stored connection"),
        ("DELETE", "/api/connections/default", b"", 404, "no stored connection"),
    ],
    ids=[
        "array",
        "not-json",
        "missing",
        "wrong-fields",
        "bad-id",
        "escape",
        "big",
        "unknown",
        "default",
    ],
)
def test_connections_route_refuses_bad_requests_clearly(
    api: tuple[str, AppContext], method: str, path: str, body: bytes, status: int, says: str
):
    """Each client mistake on /api/connections is a 4xx naming the problem, and stores nothing."""
    import httpx

    url, ctx = api
    before = [c.id for c in ctx.connections.all()]
    r = httpx.request(method, url + path, content=body, headers={"x-functions-key": API_KEY})
    assert (status, True) == (r.status_code, says in r.json()["error"]), r.text
    assert before == [c.id for c in ctx.connections.all()]
    assert 401 == httpx.get(url + "/api/connections").status_code  # no key
