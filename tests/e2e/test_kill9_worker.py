"""kill -9 the queue worker mid-sync, ten times: the workspace still converges, never half-written.

A repository of ~3000 files plus a few 4 MiB ones alternates between two trees, so
every sync rewrites everything; a reader polls the workspace the whole time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from gitops_sync.adapters.azurite import Azurite
from gitops_sync.core.manifest import loads
from tests.e2e.local_stack_support import StackProcess, base_env, free_port, wait_job
from tests.gitrepo import Repo, expected_files, workspace_files

pytestmark = [pytest.mark.slow, pytest.mark.azurite]

SECRET = "kill9-secret-0123456789"
KEY = "kill9-api-key-0123456789"
REPOSITORY = "acme/big"
KILLS = 10
SMALL_FILES = 3000
BIG_FILES = 4


def _write_tree(repo: Repo, rng: random.Random) -> None:
    for i in range(SMALL_FILES):
        repo.write(f"d{i % 40:02d}/s{i % 7}/f{i}.txt", rng.randbytes(rng.randint(200, 3000)))
    for j in range(BIG_FILES):
        repo.write(f"big/blob{j}.bin", rng.randbytes(4 << 20), executable=j % 2 == 1)


class Reader(threading.Thread):
    """Reads every workspace file over and over; records any bytes no commit ever had."""

    def __init__(self, root: Path, allowed: dict[str, set[str]]) -> None:
        super().__init__(daemon=True)
        self.root, self.allowed = root, allowed
        self.stop = threading.Event()
        self.reads = 0
        self.bad: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for dirpath, dirnames, filenames in os.walk(self.root):
                if dirpath == str(self.root):
                    dirnames[:] = [d for d in dirnames if d != ".gitops-sync"]
                for name in filenames:
                    if name.startswith(".gitops-sync-probe-"):
                        continue  # the store's case-sensitivity probe, gone a moment later
                    full = os.path.join(dirpath, name)
                    rel = os.path.relpath(full, self.root).replace(os.sep, "/")
                    try:
                        with open(full, "rb") as f:
                            digest = hashlib.sha256(f.read()).hexdigest()
                    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                        continue  # replaced or deleted between listing and reading
                    self.reads += 1
                    if digest not in self.allowed.get(rel, ()):
                        self.bad.append(rel)


def _wait_until_writing(workspace: Path, new_bytes: dict[str, bytes], timeout: float = 120) -> None:
    """Wait until at least one of the sampled files holds its new bytes."""
    deadline = time.monotonic() + timeout
    while True:
        for path, data in new_bytes.items():
            try:
                if (workspace / path).read_bytes() == data:
                    return
            except OSError:
                continue
        assert time.monotonic() < deadline, "the sync never began writing"
        time.sleep(0.02)


def _synced_commit(workspace: Path) -> str | None:
    return loads((workspace / ".gitops-sync/manifest.json").read_bytes()).commit


@pytest.fixture()
def private_azurite() -> Iterator[Azurite]:
    """An Azurite of this test's own: its tables and queue see no other test's jobs."""
    with Azurite() as az:
        yield az


def test_kill9_during_sync_converges_and_never_shows_partial_files(
    tmp_path: Path, private_azurite: Azurite
) -> None:
    """Ten SIGKILLs of the worker at random points mid-sync; it ends exactly at the last commit."""
    rng = random.Random(9)  # reproducible test data
    repo = Repo(tmp_path / "repo")
    _write_tree(repo, rng)
    first = repo.commit("tree A")
    _write_tree(repo, rng)
    second = repo.commit("tree B")
    trees = [repo.git("rev-parse", f"{c}^{{tree}}") for c in (first, second)]
    allowed: dict[str, set[str]] = {}
    for commit in (first, second):
        for path, (data, _exe) in expected_files(repo.path, commit).items():
            allowed.setdefault(path, set()).add(hashlib.sha256(data).hexdigest())

    workspace = tmp_path / "ws"
    env = base_env(
        tmp_path,
        AzureWebJobsStorage=private_azurite.connection_string,
        SYNC_REPOSITORY=REPOSITORY,
        SYNC_REPO_URL=str(repo.path),
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITOPS_SYNC_API_KEY=KEY,
        WORKSPACE_ROOT=str(workspace),
    )
    worker_args = ["worker", "--lease-seconds", "2", "--concurrency", "1", "--grace-seconds", "5"]
    server = StackProcess(["serve", "--port", str(free_port())], env, tmp_path)
    worker = StackProcess(worker_args, env, tmp_path)
    reader = Reader(workspace, allowed)
    try:
        url = server.wait_for(r"listening on (\S+)").group(1)
        worker.wait_for("worker polling")

        def push(commit: str) -> str:
            body = json.dumps(
                {"ref": "refs/heads/main", "after": commit, "repository": {"full_name": REPOSITORY}}
            ).encode()
            sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": sig,
            }
            r = httpx.post(f"{url}/api/github/webhook", content=body, headers=headers)
            assert 202 == r.status_code, r.text
            return str(r.json()["job_id"])

        # One undisturbed sync: its duration bounds where the kills land.
        job = wait_job(url, KEY, push(second), {"succeeded", "failed"}, timeout=60)
        assert "succeeded" == job["status"], job
        full_sync_s = (
            datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
        ).total_seconds()
        reader.start()

        head = second
        contents = {c: expected_files(repo.path, c) for c in (first, second)}
        sample = rng.sample(sorted(contents[first]), 50)
        killed_mid_write = rounds = 0
        # Each kill waits for the event "this sync has begun writing" (a sampled file holds
        # the new tree's bytes) and lands a random moment after it; a round counts only if
        # the manifest, written last, still names an older commit after the kill. Rounds
        # that missed are repeated: ten real mid-write kills, whatever the machine's speed.
        while killed_mid_write < KILLS:
            assert rounds < 3 * KILLS, f"only {killed_mid_write} of {rounds} kills mid-write"
            rounds += 1
            target = (first, second)[rounds % 2 == 0]  # alternate, starting from tree A
            tree = trees[(first, second).index(target)]
            head = repo.git("commit-tree", tree, "-p", head, "-m", f"round {rounds}")
            repo.git("update-ref", "refs/heads/main", head)
            job_id = push(head)
            _wait_until_writing(workspace, {p: contents[target][p][0] for p in sample})
            threading.Event().wait(rng.uniform(0.0, min(0.4 * full_sync_s, 1.5)))
            worker.kill9()
            killed_mid_write += _synced_commit(workspace) != head
            worker = StackProcess(worker_args, env, tmp_path)
            worker.wait_for("worker polling")

        final = wait_job(url, KEY, job_id, {"succeeded", "failed"}, timeout=60)
        reader.stop.set()
        reader.join(timeout=60)
        assert "succeeded" == final["status"], final
        assert head == final["summary"]["commit"]
        assert expected_files(repo.path, head) == workspace_files(workspace)
        assert [] == sorted(set(reader.bad))
        assert reader.reads > SMALL_FILES  # it really read while the kills happened
        print(
            f"sync {full_sync_s:.2f}s, {KILLS} kills mid-write in {rounds} rounds,"
            f" {reader.reads} reads"
        )
        assert 0 == worker.terminate()
    finally:
        reader.stop.set()
        worker.close()
        server.close()
