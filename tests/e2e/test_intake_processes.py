"""The webhook with its intake in worker processes (``serve --intake-processes``), on Azurite.

Each process builds its own context from the server's settings and table prefix, so
the answers, records and dedup are the same as with threads; a dead process is replaced.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gitops_sync.http import webhook as webhook_route
from gitops_sync.http.app import create_app
from tests.e2e.local_stack_support import StackProcess, server_env, serving
from tests.pipeline_support import (
    Stack,
    delivery_headers,
    make_stack,
    push_payload,
)

pytestmark = pytest.mark.azurite
WEBHOOK = "/api/github/webhook"


@pytest.fixture()
def stack(storage: str, tmp_path: Path) -> Stack:
    return make_stack(storage, tmp_path)


@pytest.fixture()
def pool(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[webhook_route.IntakePool]:
    pool = webhook_route.IntakePool(webhook_route.INTAKE_SLOTS, webhook_route.INTAKE_BACKLOG)
    pool.use_processes(2, stack.ctx)
    monkeypatch.setattr(webhook_route, "POOL", pool)
    yield pool
    pool.shutdown()


@pytest.fixture()
def url(stack: Stack, pool: webhook_route.IntakePool) -> Iterator[str]:
    with serving(create_app(stack.ctx)) as server:
        yield server.url


def push(url: str, commit: str, delivery: str | None = None) -> httpx.Response:
    body = push_payload(commit)
    headers = delivery_headers(body, delivery=delivery)
    return httpx.post(url + WEBHOOK, content=body, headers=headers, timeout=30)


def test_a_push_is_queued_once_by_an_intake_process(stack: Stack, url: str, pool):
    """A push gets 202 with a recorded, queued job, and its redelivery names that job."""
    commit, delivery = uuid.uuid4().hex + "0" * 8, str(uuid.uuid4())
    first = push(url, commit, delivery)
    assert (202, "queued") == (first.status_code, first.json()["status"])
    job_id = first.json()["job_id"]
    job = stack.ctx.jobs.get(job_id)
    assert job is not None
    assert (commit, "queued") == (job.commit, job.status)
    again = push(url, commit, delivery)
    assert (200, "duplicate", job_id) == (
        again.status_code,
        again.json()["status"],
        again.json()["job_id"],
    )
    messages = stack.ctx.queue.receive(max_messages=32, visibility_timeout=60)
    assert [job_id] == [json.loads(m.body)["job_id"] for m in messages]
    assert 2 == pool.processes


def test_a_killed_intake_process_is_replaced(url: str, pool):
    """After an intake process is killed, deliveries get 503 with Retry-After or 202, never
    anything else, and a new delivery is queued again within the deadline."""
    children = multiprocessing.active_children()
    assert children, "the pool started its processes"
    os.kill(children[0].pid or 0, signal.SIGKILL)
    children[0].join(timeout=30)
    statuses: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = push(url, uuid.uuid4().hex + "0" * 8)
        statuses.append(r.status_code)
        if r.status_code == 503:
            assert r.headers.get("retry-after")
        if r.status_code == 202:
            break
        time.sleep(0.2)  # paces the retries; the loop waits on the 202 above
    assert 202 == statuses[-1]
    assert set() == set(statuses) - {202, 503}


def intake_processes_of(pid: int) -> list[int]:
    """The live (not zombie) intake processes whose parent is ``pid``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if int(stat[1]) == pid and stat[0] != "Z" and b"spawn_main" in cmdline:
            found.append(int(proc.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_intake_processes_end_with_a_server_killed_by_sigkill(storage: str, tmp_path: Path):
    """`serve --intake-processes 2` killed with SIGKILL leaves no intake process behind."""
    env = server_env(storage, tmp_path)
    server = StackProcess(["serve", "--port", "0", "--intake-processes", "2"], env, tmp_path)
    try:
        url = server.wait_for(r"listening on (\S+)").group(1)
        r = push(url, uuid.uuid4().hex + "0" * 8)
        assert 202 == r.status_code, r.text
        children = intake_processes_of(server.proc.pid)
        assert 2 == len(children), server.output()
        # Only the server, not its process group: its intake processes must go by themselves.
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [] == [c for c in children if alive(c)]
    finally:
        server.close()  # the whole group, had anything gone wrong above


def test_an_intake_process_started_after_its_server_died_exits(storage: str, tmp_path: Path):
    """An intake process whose server died while it was starting (it then has init, or a
    subreaper, for a parent) ends by itself: it is given the server's pid, and does not
    take whatever parent it finds at start-up for the server."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that is nobody's parent any more
    env = server_env(storage, tmp_path)
    code = (
        "import threading; from gitops_sync.http import webhook as w;"
        " from gitops_sync.settings import Settings;"
        f" w._start_process(Settings.from_env(), 'pgone', None, {gone.pid});"
        " threading.Event().wait(50); raise SystemExit(3)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=60)
    assert 0 == done.returncode  # the watcher's os._exit(0), not the 50 s wait
