"""Every CLI command that talks to a server, against a real ``gitops-sync dev``, as a new user.

The same ``--url``/``--key`` and fallbacks, the same failure wording, exit codes 0/1/2,
``connections`` on dev's emulator, ``download -o -``, and a dev that stops with its parent.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.local_stack_support import (
    DEV_AZURITE,
    DEV_LISTENING,
    GITOPS_SYNC,
    StackProcess,
    base_env,
    free_port,
    port_open,
    wait_job,
)


@dataclass
class Dev:
    proc: StackProcess
    url: str
    key: str
    cwd: Path
    env: dict[str, str]
    repo: Path


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """``gitops-sync dev`` with no settings at all (its demo repository), in a project folder."""
    cwd = tmp_path_factory.mktemp("project")
    env = base_env(cwd)
    env.pop("WORKSPACE_ROOT", None)
    proc = StackProcess(["dev", "--port", "0"], env, cwd)
    try:
        url = proc.wait_for(DEV_LISTENING).group(1)
        state = json.loads((cwd / ".gitops-sync-dev" / "dev.json").read_text())
        yield Dev(proc, url, state["api_key"], cwd, env, cwd / ".gitops-sync-dev" / "demo-repo")
        assert 0 == proc.terminate()  # a clean stop takes its Azurite along
    finally:
        proc.close()


def _cli(
    dev: Dev, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GITOPS_SYNC, *args],
        env={**dev.env, **env},
        cwd=cwd or dev.cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_commands_find_the_running_dev_from_a_subfolder(dev: Dev) -> None:
    """From a subfolder, with no flags or settings, `jobs`, `connections` and `webhook send`
    all find the dev running in the parent folder (its URL, key and emulator)."""
    sub = dev.cwd / "deep" / "er"
    sub.mkdir(parents=True, exist_ok=True)
    sent = _cli(dev, "webhook", "send", "--json", cwd=sub)
    assert sent.returncode == 0, sent.stderr
    job_id = json.loads(sent.stdout)["job_id"]
    listed = _cli(dev, "jobs", "list", "--json", cwd=sub)
    assert listed.returncode == 0, listed.stderr
    assert job_id in [d["job_id"] for d in json.loads(listed.stdout)]
    added = _cli(
        dev,
        "connections",
        "add",
        "acme/other",
        "--secret-setting",
        "OTHER_SECRET",
        "--share",
        "other",
        cwd=sub,
    )
    assert added.returncode == 0, added.stderr
    conns = _cli(dev, "connections", "list", "--json", cwd=sub)
    assert conns.returncode == 0, conns.stderr
    assert ["local/demo", "acme/other"] == [c["repository"] for c in json.loads(conns.stdout)]


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "list"],
        ["jobs", "show", "some-job"],
        ["download", "-o", "ws.zip"],
        ["webhook", "send", "--event", "ping", "--secret", "s"],
        ["connections", "list"],
    ],
    ids=["jobs-list", "jobs-show", "download", "webhook-send", "connections-list"],
)
def test_server_commands_word_failures_alike(dev: Dev, tmp_path: Path, args: list[str]) -> None:
    """With nobody listening, every command exits 1 with the same line; with a malformed
    URL, every command exits 2 (a usage error, never an internal error)."""
    port = free_port()
    down = _cli(dev, *args, "--url", f"http://127.0.0.1:{port}", cwd=tmp_path)
    assert (1, f"gitops-sync: error: cannot reach http://127.0.0.1:{port}: connection refused;"
            " is `gitops-sync dev` running?") == (down.returncode, _one_line(down))  # fmt: skip
    bad = _cli(dev, *args, "--url", "http://[::1", cwd=tmp_path)
    assert 2 == bad.returncode, bad.stderr
    assert "not" in _one_line(bad) and "URL" in _one_line(bad)
    env_url = _cli(dev, *args, cwd=tmp_path, GITOPS_SYNC_URL="ftp://example.com")
    assert 2 == env_url.returncode, env_url.stderr


def test_a_refused_key_and_a_refused_signature_say_what_to_do(dev: Dev) -> None:
    """A wrong key exits 1 naming --key and GITOPS_SYNC_API_KEY; a wrong webhook secret
    exits 1 saying the signature was refused and where the secret comes from."""
    key = _cli(dev, "jobs", "show", "x", "--key", "wrong-key-value")
    assert 1 == key.returncode
    assert "refused the key (401)" in _one_line(key) and "--key" in _one_line(key)
    assert "wrong-key-value" not in key.stderr
    sig = _cli(dev, "webhook", "send", "--secret", "not-the-secret")
    assert 1 == sig.returncode
    line = sig.stderr.strip().splitlines()[-1]
    assert "refused the signature (401)" in line and "GITHUB_WEBHOOK_SECRET" in line


def test_download_to_stdout_and_yaml_served_as_yaml(dev: Dev) -> None:
    """`download -o -` writes the ZIP to stdout; a synced YAML file is application/yaml."""
    sent = _cli(dev, "webhook", "send", "--json")
    job = wait_job(dev.url, dev.key, json.loads(sent.stdout)["job_id"], {"succeeded", "failed"})
    assert "succeeded" == job["status"], job
    done = subprocess.run(
        [GITOPS_SYNC, "download", "-o", "-"], env=dev.env, cwd=dev.cwd, capture_output=True
    )
    assert 0 == done.returncode, done.stderr
    with zipfile.ZipFile(io.BytesIO(done.stdout)) as zf:
        assert "config/app.yaml" in zf.namelist()
    r = httpx.get(
        f"{dev.url}/api/workspace/files/config/app.yaml", headers={"x-functions-key": dev.key}
    )
    assert (200, "application/yaml") == (r.status_code, r.headers["content-type"].split(";")[0])


def test_a_pushed_commit_the_branch_lacks_is_not_claimed_as_synced(dev: Dev) -> None:
    """`webhook send --commit` with a commit the branch does not contain: the job records
    the requested commit, the commit it synced (the head), and why they differ."""
    stray = "1" * 40
    sent = _cli(dev, "webhook", "send", "--json", "--commit", stray)
    job = wait_job(dev.url, dev.key, json.loads(sent.stdout)["job_id"], {"succeeded", "failed"})
    head = subprocess.run(
        ["git", "-C", str(dev.repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert (stray, head) == (job["commit"], job["synced_commit"])
    assert stray[:12] in job["note"] and head[:12] in job["note"]
    assert job["summary"]["commit"] == head


def test_dev_stops_with_azurite_when_its_parent_dies(tmp_path: Path) -> None:
    """`make dev` killed by a TERM to make's PID alone: the shell it started dies, and the
    re-parented stack notices, stops and takes its Azurite with it."""
    env = base_env(tmp_path)
    log = tmp_path / "dev.log"
    started: list[int] = []
    # "; true" keeps the shell from exec-ing dev: dev's parent is the shell, as under make.
    shell = subprocess.Popen(
        ["sh", "-c", f'"{GITOPS_SYNC}" dev --port 0 > "{log}" 2>&1; true'],
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not re.search(DEV_AZURITE, log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
            time.sleep(0.2)
        ports = [int(p) for p in re.search(DEV_AZURITE, log.read_text()).groups()]  # type: ignore[union-attr]
        children = _children(shell.pid)
        assert len(children) == 1
        pid = children[0]  # dev itself
        started = _children(pid)  # its Azurite, ended below whatever happens
        assert all(port_open(p) for p in ports)
        os.kill(shell.pid, signal.SIGKILL)
        shell.wait(timeout=30)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() or any(port_open(p) for p in ports):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert "gitops-sync: stopped" in log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        for child in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
