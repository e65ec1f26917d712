"""``gitops-sync dev`` as a real process: Azurite + API + worker, a signed push, a clean stop."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.local_stack_support import (
    DEV_AZURITE,
    DEV_BANNER_END,
    DEV_LISTENING,
    GITOPS_SYNC,
    StackProcess,
    base_env,
    free_port,
    port_open,
    wait_job,
)
from tests.gitrepo import Repo, expected_files, workspace_files

SECRET = "dev-test-secret-0123456789"
KEY = "dev-test-api-key-0123456789"
REPOSITORY = "acme/site"


@dataclass
class Dev:
    proc: StackProcess
    url: str
    repo: Repo
    workspace: Path
    env: dict[str, str]
    cwd: Path
    azurite_ports: list[int]


def _send(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, dict]:
    """Run ``gitops-sync webhook send ARGS``; return its HTTP status and JSON answer."""
    done = subprocess.run(
        [GITOPS_SYNC, "webhook", "send", *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    status, _, body = done.stdout.strip().partition(" ")
    assert status.isdigit(), done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return int(status), json.loads(body) if body else {}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """One ``gitops-sync dev --port <free>`` with a local repository and a temp workspace."""
    tmp = tmp_path_factory.mktemp("dev")
    repo = Repo(tmp / "repo")
    repo.write("README.md", "hello\n")
    repo.write("app/run.sh", "#!/bin/sh\necho run\n", executable=True)
    repo.write(".github/workflows/ci.yml", "on: push\n")
    repo.commit("first")
    env = base_env(
        tmp,
        SYNC_REPOSITORY=REPOSITORY,
        SYNC_REPO_URL=str(repo.path),
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITOPS_SYNC_API_KEY=KEY,
    )
    workspace = tmp / "ws"
    port = free_port()
    proc = StackProcess(["dev", "--port", str(port), "--workspace", str(workspace)], env, tmp)
    try:
        url = proc.wait_for(DEV_LISTENING).group(1)
        ports = [int(p) for p in proc.wait_for(DEV_AZURITE).groups()]
        proc.wait_for(DEV_BANNER_END)  # the banner is printed line by line
        yield Dev(proc, url, repo, workspace, env, tmp, ports)
    finally:
        proc.close()


def test_dev_prints_where_it_listens_and_how_to_send_a_push(dev: Dev) -> None:
    """The ready banner names the URL on 127.0.0.1, the webhook URL and the send command."""
    text = "\n".join(dev.proc.stdout)
    assert f"POST {dev.url}/api/github/webhook" in text
    assert "gitops-sync webhook send" in text
    assert SECRET not in dev.proc.output()
    assert KEY not in dev.proc.output()


def test_signed_push_syncs_the_workspace(dev: Dev) -> None:
    """webhook send -> 202 queued -> the job succeeds -> the workspace holds the commit."""
    dev.repo.write("docs/a.txt", "a\n")
    commit = dev.repo.commit("second")
    status, answer = _send(dev.env, dev.cwd, "--url", dev.url)
    assert 202 == status
    assert {"status": "queued", "commit": commit} == {k: answer[k] for k in ("status", "commit")}
    job = wait_job(dev.url, KEY, answer["job_id"], {"succeeded", "failed"})
    assert "succeeded" == job["status"], job
    assert commit == job["summary"]["commit"]
    assert expected_files(dev.repo.path, commit) == workspace_files(dev.workspace)


def _signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _push(
    repo: Repo, ref: str = "refs/heads/main", after: str | None = None, **extra: object
) -> dict:
    return {
        "ref": ref,
        "before": "0" * 40,
        "after": after or repo.git("rev-parse", "HEAD"),
        "repository": {"full_name": REPOSITORY, "name": "site"},
        **extra,
    }


def _post(
    dev: Dev, body: bytes, event: str = "push", sig: str | None = "sign", **headers: str
) -> httpx.Response:
    h = {"X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()), **headers}
    if sig == "sign":
        h["X-Hub-Signature-256"] = _signed(body)
    elif sig is not None:
        h["X-Hub-Signature-256"] = sig
    return httpx.post(f"{dev.url}/api/github/webhook", content=body, headers=h, timeout=60)


def test_contract_webhook_table_row_by_row(dev: Dev) -> None:
    """Every row of the contract's webhook table, over real HTTP against the running dev server."""
    repo = dev.repo
    repo.write("docs/b.txt", "b\n")
    new_commit = repo.commit("third")
    push = json.dumps(_push(repo, after=new_commit)).encode()
    delivery = str(uuid.uuid4())
    other_branch = json.dumps(_push(repo, ref="refs/heads/feature")).encode()
    tag = json.dumps(_push(repo, ref="refs/tags/v1")).encode()
    deletion = json.dumps(_push(repo, after="0" * 40, deleted=True)).encode()
    unconfigured = json.dumps(
        {**_push(repo), "repository": {"full_name": "acme/other", "name": "other"}}
    ).encode()
    no_after = json.dumps(
        {"ref": "refs/heads/main", "repository": {"full_name": REPOSITORY}}
    ).encode()
    sha1 = "sha1=" + hmac.new(SECRET.encode(), push, hashlib.sha1).hexdigest()

    # (case, request, expected status, expected body subset or None for "no check")
    rows = [
        ("missing signature", lambda: _post(dev, push, sig=None), 401, None),
        ("malformed signature", lambda: _post(dev, push, sig="sha256=xyz"), 401, None),
        ("wrong signature", lambda: _post(dev, push, sig=_signed(push, "not-it")), 401, None),
        ("sha1 only", lambda: _post(dev, push, sig=None, **{"X-Hub-Signature": sha1}), 401, None),
        ("over 25 MiB", lambda: _post(dev, b"{" + b" " * (25 * 1024 * 1024) + b"}"), 413, None),
        ("not JSON", lambda: _post(dev, b"not json"), 400, None),
        ("JSON array", lambda: _post(dev, b"[1, 2]"), 400, None),
        ("push without after", lambda: _post(dev, no_after), 400, None),
        ("ping", lambda: _post(dev, b'{"zen": "hi"}', event="ping"), 200, {"status": "pong"}),
        (
            "push to tracked branch",
            lambda: _post(dev, push, **{"X-GitHub-Delivery": delivery}),
            202,
            {"status": "queued", "commit": new_commit},
        ),
        (
            "same delivery again",
            lambda: _post(dev, push, **{"X-GitHub-Delivery": delivery}),
            200,
            {"status": "duplicate"},
        ),
        ("same commit, new delivery", lambda: _post(dev, push), 200, {"status": "duplicate"}),
        ("other branch", lambda: _post(dev, other_branch), 200, {"status": "ignored"}),
        ("tag", lambda: _post(dev, tag), 200, {"status": "ignored"}),
        ("branch deletion", lambda: _post(dev, deletion), 200, {"status": "ignored"}),
        ("unconfigured repository", lambda: _post(dev, unconfigured), 200, {"status": "ignored"}),
        ("other event", lambda: _post(dev, push, event="issues"), 200, {"status": "ignored"}),
    ]
    failures = []
    job_id = None
    for case, send, status, subset in rows:
        r = send()
        body = r.json() if r.content else {}
        if r.status_code != status or (subset and {k: body.get(k) for k in subset} != subset):
            failures.append(f"{case}: {r.status_code} {r.text[:200]}")
        if status == 202:
            job_id = body.get("job_id")
        elif subset and subset.get("status") == "duplicate" and body.get("job_id") != job_id:
            failures.append(f"{case}: duplicate names {body.get('job_id')}, not {job_id}")
        elif subset and subset.get("status") == "ignored" and not body.get("reason"):
            failures.append(f"{case}: no reason given")
    assert [] == failures
    assert job_id is not None
    done = wait_job(dev.url, KEY, job_id, {"succeeded", "failed"})
    assert "succeeded" == done["status"], done
    # The branch deletion never emptied the workspace.
    assert expected_files(repo.path, new_commit) == workspace_files(dev.workspace)


def test_job_route_needs_the_key_and_unknown_jobs_are_404(dev: Dev) -> None:
    """GET /api/jobs/{id}: 401 without the key, 404 JSON for an unknown id with it."""
    assert 401 == httpx.get(f"{dev.url}/api/jobs/nope").status_code
    r = httpx.get(f"{dev.url}/api/jobs/nope", headers={"x-functions-key": KEY})
    assert 404 == r.status_code
    assert 200 == httpx.get(f"{dev.url}/api/health").status_code


def test_sigterm_stops_everything_cleanly(dev: Dev) -> None:
    """SIGTERM: exit code 0, a 'stopped' line, no traceback, and its Azurite is gone."""
    assert all(port_open(p) for p in dev.azurite_ports)
    assert 0 == dev.proc.terminate()
    assert "gitops-sync: stopped" in dev.proc.stdout
    assert "Traceback" not in dev.proc.output()
    assert not any(port_open(p) for p in dev.azurite_ports)
    assert not port_open(int(re.search(r":(\d+)$", dev.url).group(1)))  # type: ignore[union-attr]


@pytest.mark.slow
def test_dev_with_no_settings_makes_a_demo_that_webhook_send_finds(tmp_path: Path) -> None:
    """No settings at all: dev makes a demo repo and secret; a bare `webhook send` syncs it."""
    env = base_env(tmp_path)
    env.pop("WORKSPACE_ROOT", None)
    proc = StackProcess(["dev", "--port", str(free_port())], env, tmp_path)
    try:
        url = proc.wait_for(DEV_LISTENING).group(1)
        proc.wait_for(r"echo 'replicas: 3'")  # the banner's last line: the output is all in
        text = "\n".join(proc.stdout)
        assert "demo repository" in text
        assert "echo 'replicas: 3' > .gitops-sync-dev/demo-repo/config/app.yaml" in text
        state = json.loads((tmp_path / ".gitops-sync-dev" / "dev.json").read_text())
        assert url == state["url"]
        assert 0o600 == (tmp_path / ".gitops-sync-dev" / "dev.json").stat().st_mode & 0o777
        status, answer = _send(env, tmp_path)
        assert 202 == status, answer
        job = wait_job(url, state["api_key"], answer["job_id"], {"succeeded", "failed"})
        assert "succeeded" == job["status"], job
        demo = tmp_path / ".gitops-sync-dev" / "demo-repo"
        assert expected_files(demo, answer["commit"]) == workspace_files(tmp_path / "workspace")
        # The demo's function was deployed by that job and answers through the CLI.
        assert [{"name": "hello", "version": 1}] == job["summary"]["functions"]["deployed"]
        invoked = subprocess.run(
            [GITOPS_SYNC, "functions", "invoke", "hello", "--data", '{"name": "dev"}', "--json"],
            env=env, cwd=tmp_path, capture_output=True, text=True,
        )  # fmt: skip
        assert (0, {"hello": "dev"}) == (invoked.returncode, json.loads(invoked.stdout or "null"))
        assert _processes_in(tmp_path), "a warm worker runs under the dev folder"
        # The banner's next step: change the demo repository, send again, see the change.
        (demo / "config" / "app.yaml").write_text("replicas: 3\n")
        subprocess.run(["git", "-C", str(demo), "commit", "-qam", "scale"], env=env, check=True)
        status, answer = _send(env, tmp_path)
        assert 202 == status, answer
        job = wait_job(url, state["api_key"], answer["job_id"], {"succeeded", "failed"})
        assert 1 == job["summary"]["updated"], job
        assert "replicas: 3\n" == (tmp_path / "workspace" / "config" / "app.yaml").read_text()
        assert 0 == proc.terminate()
        assert [] == _processes_in(tmp_path), "stopping dev leaves no function worker behind"
    finally:
        proc.close()


def _processes_in(folder: Path) -> list[int]:
    """PIDs of processes whose working directory lies under FOLDER (function workers do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = (entry / "cwd").resolve()
        except OSError:
            continue
        if cwd.is_relative_to(folder.resolve()) and (entry / "cmdline").read_bytes():
            found.append(int(entry.name))
    return found


def test_dev_uses_the_given_storage_instead_of_starting_azurite(
    tmp_path: Path, storage: str
) -> None:
    """With AzureWebJobsStorage set, dev starts no Azurite and serves from that storage."""
    env = base_env(tmp_path, AzureWebJobsStorage=storage, SYNC_QUEUE=f"q{uuid.uuid4().hex[:8]}")
    proc = StackProcess(["dev", "--port", "0", "--workspace", str(tmp_path / "ws")], env, tmp_path)
    try:
        url = proc.wait_for(DEV_LISTENING).group(1)
        assert not any("Azurite (" in line for line in proc.stdout)
        assert any("storage    AzureWebJobsStorage" in line for line in proc.stdout)
        assert {"status": "ok"} == httpx.get(f"{url}/api/health").json()
        assert 0 == proc.terminate()
    finally:
        proc.close()


def test_reconcile_timer_syncs_without_any_webhook(tmp_path: Path) -> None:
    """The periodic reconcile runs in dev: with a 1 s interval the workspace fills unasked."""
    repo = Repo(tmp_path / "repo")
    repo.write("conf/a.yaml", "a: 1\n")
    commit = repo.commit("only")
    env = base_env(
        tmp_path,
        SYNC_REPOSITORY=REPOSITORY,
        SYNC_REPO_URL=str(repo.path),
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITOPS_SYNC_API_KEY=KEY,
        SYNC_RECONCILE_INTERVAL_SECONDS="1",
    )
    workspace = tmp_path / "ws"
    proc = StackProcess(["dev", "--port", "0", "--workspace", str(workspace)], env, tmp_path)
    try:
        proc.wait_for(DEV_LISTENING)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (workspace / "conf" / "a.yaml").exists():
            time.sleep(0.1)
        assert expected_files(repo.path, commit) == workspace_files(workspace)
        assert 0 == proc.terminate()
        assert any("reconcile" in line for line in proc.stderr)
    finally:
        proc.close()
