"""The queue worker against a real Azurite and real git: order, supersession, failures, leases."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from gitops_sync import intake, worker
from gitops_sync.connections import Connection
from gitops_sync.core.errors import ConflictError, RepositoryUnreachable
from gitops_sync.core.manifest import loads
from gitops_sync.jobs import FAILED, QUEUED, SUCCEEDED, SUPERSEDED
from tests.fakes.azure_files import FakeShare
from tests.fakes.azure_files import azure_files_share as azure_files_share
from tests.fakes.azure_files import fake_file_service_session as fake_file_service_session
from tests.gitrepo import expected_files, workspace_files
from tests.pipeline_support import Stack, delivery_headers, make_stack, push_payload

pytestmark = pytest.mark.azurite


@pytest.fixture()
def stack(storage: str, tmp_path: Path) -> Stack:
    return make_stack(storage, tmp_path)


def _push(stack: Stack, commit: str, delivery: str | None = None) -> dict:
    body = push_payload(commit)
    answer = intake.receive(stack.ctx, delivery_headers(body, delivery=delivery), body)
    assert answer.body is not None
    return answer.body


def _commits(stack: Stack, n: int) -> list[str]:
    out = []
    for i in range(n):
        stack.repo.write(f"file-{i}.txt", f"version {i}\n")
        stack.repo.write("shared.txt", f"shared at {i}\n")
        if i == 2:
            stack.repo.remove("file-0.txt")
        out.append(stack.repo.commit(f"commit {i}"))
    return out


def _synced_commit(stack: Stack) -> str | None:
    return loads((stack.workspace / ".gitops-sync/manifest.json").read_bytes()).commit


def test_push_is_synced_and_logged_in_one_line(stack: Stack, caplog):
    """A queued push syncs the commit's files; the job succeeds with its summary, and one
    log line names the job, repository, commit, counts and duration."""
    [commit] = _commits(stack, 1)
    job_id = _push(stack, commit)["job_id"]
    caplog.set_level(logging.INFO, logger="gitops_sync")
    stack.run_queue()
    assert workspace_files(stack.workspace) == expected_files(stack.repo.path, commit)
    job = stack.ctx.jobs.get(job_id)
    assert job is not None
    assert (job.status, job.attempts, job.error) == (SUCCEEDED, 1, None)
    assert job.summary is not None and job.summary["commit"] == commit
    assert job.summary["added"] == 2
    [line] = [r.getMessage() for r in caplog.records if job_id in r.getMessage()]
    for part in (f"repository={stack.settings.repository}", f"commit={commit}", "added=2"):
        assert part in line
    assert "duration_s=" in line


def test_out_of_order_deliveries_end_at_the_newest_commit(stack: Stack):
    """Push B delivered before push A (its parent): the workspace ends at B, the older job
    is superseded, and no job rolls the workspace back to A."""
    a, b = _commits(stack, 2)
    job_b = _push(stack, b)["job_id"]
    job_a = _push(stack, a)["job_id"]
    stack.run_queue()
    assert _synced_commit(stack) == b
    assert workspace_files(stack.workspace) == expected_files(stack.repo.path, b)
    first, second = stack.ctx.jobs.get(job_b), stack.ctx.jobs.get(job_a)
    assert first is not None and second is not None
    assert (first.status, first.superseded_by) == (SUPERSEDED, job_a)
    assert second.status == SUCCEEDED and second.summary is not None
    assert second.summary["commit"] == b
    assert [j.job_id for j in stack.ctx.jobs.list()] == [job_a, job_b]  # newest first


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_order_of_pushes_redeliveries_and_jobs_only_moves_forward(stack: Stack, seed: int):
    """Pushes, redeliveries and job runs in a random order: after every job the workspace's
    commit is never older than before, and at the end it is the branch's newest commit."""
    rnd = random.Random(seed)
    commits = _commits(stack, 4)
    order = {c: i for i, c in enumerate(commits)}
    deliveries = [(c, f"d-{i}") for i, c in enumerate(commits)]
    deliveries += rnd.sample(deliveries, 2)  # redeliveries with the same ids
    rnd.shuffle(deliveries)
    for commit, delivery in deliveries:
        _push(stack, commit, delivery)
    messages = stack.drain()
    rnd.shuffle(messages)
    messages += messages[:2]  # the queue may deliver a message twice
    seen = -1
    for body in messages:
        worker.handle_message(stack.ctx, body, 1)
        synced = _synced_commit(stack) if (stack.workspace / ".gitops-sync").exists() else None
        if synced is not None:
            assert order[synced] >= seen
            seen = order[synced]
    assert _synced_commit(stack) == commits[-1]
    assert workspace_files(stack.workspace) == expected_files(stack.repo.path, commits[-1])
    statuses = {j.status for j in stack.ctx.jobs.list()}
    assert statuses <= {SUCCEEDED, SUPERSEDED}


def test_a_job_overtaken_before_it_runs_is_superseded_and_changes_nothing(stack: Stack):
    """A job whose push was followed by a newer one ends superseded without touching files."""
    a, b = _commits(stack, 2)
    old = _push(stack, a)["job_id"]
    messages = stack.drain()
    new = _push(stack, b)["job_id"]
    worker.handle_message(stack.ctx, messages[0], 1)
    job = stack.ctx.jobs.get(old)
    assert job is not None and (job.status, job.superseded_by) == (SUPERSEDED, new)
    assert not stack.workspace.exists()


def test_repush_of_an_older_commit_after_a_newer_one_is_synced(stack: Stack):
    """A force-push back to an already-synced older commit queues and syncs it again."""
    a, b = _commits(stack, 2)
    _push(stack, b)
    stack.run_queue()
    stack.repo.git("reset", "-q", "--hard", a)
    answer = _push(stack, a)
    assert answer["status"] == "queued"
    stack.run_queue()
    assert _synced_commit(stack) == a
    assert _push(stack, a)["status"] == "duplicate"  # now synced: a duplicate


def test_permanent_failure_is_recorded_and_not_retried(storage: str, tmp_path: Path):
    """A repository URL that is not a git repository fails the job for good: the worker
    returns (no redelivery) and the job says why."""
    not_a_repo = tmp_path / "plain"
    not_a_repo.mkdir()
    stack = make_stack(storage, tmp_path, repo_url=str(not_a_repo))
    [commit] = _commits(stack, 1)
    job_id = _push(stack, commit)["job_id"]
    [body] = stack.drain()
    worker.handle_message(stack.ctx, body, 1)  # returns: nothing to retry
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and job.status == FAILED
    assert job.error is not None and "not a git repository" in job.error


def test_transient_failure_raises_then_poison_attempt_records_failed(storage: str, tmp_path: Path):
    """An unreachable repository raises (the queue retries) and keeps the job queued with its
    error, query string stripped; on the last allowed delivery the job is recorded failed
    before the error goes on to the poison queue."""
    stack = make_stack(storage, tmp_path, repo_url="http://127.0.0.1:9/repo.git?token=abc123xyz")
    [commit] = _commits(stack, 1)
    job_id = _push(stack, commit)["job_id"]
    [body] = stack.drain()
    with pytest.raises(RepositoryUnreachable):
        worker.handle_message(stack.ctx, body, 1)
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and (job.status, job.attempts) == (QUEUED, 1)
    assert job.error is not None and "abc123xyz" not in job.error and "127.0.0.1" in job.error
    with pytest.raises(RepositoryUnreachable):
        worker.handle_message(stack.ctx, body, stack.ctx.max_dequeue)
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and (job.status, job.attempts) == (FAILED, stack.ctx.max_dequeue)


def test_deleted_branch_fails_the_job_and_keeps_the_workspace(stack: Stack):
    """If the tracked branch is gone when the job runs, the job fails and the files stay."""
    [a] = _commits(stack, 1)
    _push(stack, a)
    stack.run_queue()
    [b] = _commits(stack, 1)
    job_id = _push(stack, b)["job_id"]
    before = workspace_files(stack.workspace)
    stack.repo.git("checkout", "-q", "-b", "other")
    stack.repo.git("branch", "-q", "-D", "main")
    stack.run_queue()
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and job.status == FAILED
    assert job.error is not None and "unknown ref" in job.error
    assert before == expected_files(stack.repo.path, a) == workspace_files(stack.workspace)


def test_held_lease_makes_the_job_wait_and_retry(stack: Stack):
    """While another worker holds the workspace's lease the job raises a transient conflict
    and stays queued; once the lease is free the redelivery syncs."""
    [commit] = _commits(stack, 1)
    job_id = _push(stack, commit)["job_id"]
    [body] = stack.drain()
    stack.ctx.lease_wait_s = 0.0
    with stack.ctx.leases.hold("default"), pytest.raises(ConflictError):
        worker.handle_message(stack.ctx, body, 1)
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and job.status == QUEUED
    worker.handle_message(stack.ctx, body, 2)
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and (job.status, job.attempts) == (SUCCEEDED, 2)


def test_unreadable_or_unknown_messages_are_dropped(stack: Stack, caplog):
    """A message that is not a job, or names no known job, is dropped with a log line."""
    caplog.set_level(logging.WARNING, logger="gitops_sync")
    for body in ("not json", "[]", json.dumps({"job_id": 7}), json.dumps({"job_id": "nope"})):
        worker.handle_message(stack.ctx, body, 1)
    assert len(caplog.records) == 4


def test_reconcile_repairs_drift_and_skips_live_jobs(stack: Stack):
    """The timer's reconcile queues a job that puts hand-edited files back; while a job is
    queued it queues nothing more."""
    [commit] = _commits(stack, 1)
    _push(stack, commit)
    stack.run_queue()
    (stack.workspace / "shared.txt").write_text("edited by hand\n")
    (stack.workspace / "stray.txt").write_text("stray\n")
    [job_id] = worker.reconcile(stack.ctx)
    assert worker.reconcile(stack.ctx) == []  # the first one is still queued
    stack.run_queue()
    assert workspace_files(stack.workspace) == expected_files(stack.repo.path, commit)
    job = stack.ctx.jobs.get(job_id)
    assert job is not None
    assert (job.status, job.kind, job.commit) == (SUCCEEDED, "reconcile", commit)


def test_each_connection_syncs_into_its_own_folder_and_never_wipes_another(
    storage: str, tmp_path: Path
):
    """Two stored connections sync their repositories into their own folders under the
    root; each sync leaves the other's folder intact."""
    from tests.gitrepo import Repo

    stack = make_stack(storage, tmp_path, repository=None)
    heads = {}
    for name in ("a", "b"):
        repo = Repo(tmp_path / f"repo-{name}")
        repo.write(f"{name}.txt", f"from {name}\n")
        heads[name] = (repo, repo.commit(name))
        stack.app_settings[f"{name.upper()}_SECRET"] = f"whsec-{name}-92"
        stack.ctx.connections.add(
            Connection(name, f"acme/{name}", "main", str(repo.path), f"{name.upper()}_SECRET")
        )
    for name, (_, commit) in heads.items():
        body = push_payload(commit, repository=f"acme/{name}")
        headers = delivery_headers(body, secret=f"whsec-{name}-92")
        assert intake.receive(stack.ctx, headers, body).status == 202
        stack.run_queue()
    for name, (repo, commit) in heads.items():
        assert workspace_files(stack.workspace / name) == expected_files(repo.path, commit)
    assert sorted(p.name for p in stack.workspace.iterdir()) == ["a", "b"]


def test_overlapping_workspaces_are_refused(stack: Stack):
    """A stored connection whose folder would sit inside the env connection's workspace
    (WORKSPACE_ROOT), or share another's folder, is refused: a sync would wipe it."""
    from gitops_sync.core.errors import UsageError

    with pytest.raises(UsageError, match="overlap"):
        stack.ctx.connections.add(Connection("b", "acme/b", "main", "/r", "S", workspace="b"))
    stack.ctx.connections.add(Connection("c", "acme/c", "main", "/r", "S", share="share-c"))
    with pytest.raises(UsageError, match="share-c"):
        stack.ctx.connections.add(Connection("d", "acme/d", "main", "/r", "S", share="share-c"))


def test_busy_workspace_on_the_last_delivery_requeues_instead_of_failing(stack: Stack):
    """A job that still finds the workspace busy on its last delivery is queued afresh
    (not failed): busy is not broken."""
    [commit] = _commits(stack, 1)
    job_id = _push(stack, commit)["job_id"]
    [body] = stack.drain()
    stack.ctx.lease_wait_s = 0.0
    with stack.ctx.leases.hold("default"):
        worker.handle_message(stack.ctx, body, stack.ctx.max_dequeue)  # returns
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and job.status == QUEUED and "another sync" in (job.error or "")
    # The fresh message, invisible for a while: counted by the queue, not yet received.
    assert 1 == stack.ctx.queue.client.get_queue_properties().approximate_message_count
    assert [] == stack.drain()


def test_workspace_share_is_synced_through_azure_files(
    storage: str, tmp_path: Path, azure_files_share: FakeShare
):
    """With WORKSPACE_SHARE set the worker syncs into that Azure Files share (the fake
    File service beside Azurite) and the local WORKSPACE_ROOT stays untouched."""
    from gitops_sync.adapters.azure_files import AzureFilesStore

    share = azure_files_share
    conn = storage + f"FileEndpoint={share.service.endpoint};"
    stack = make_stack(storage, tmp_path, extra_env={"AzureWebJobsStorage": conn,
                                                     "WORKSPACE_SHARE": share.share})  # fmt: skip
    [commit] = _commits(stack, 1)
    job_id = _push(stack, commit)["job_id"]
    stack.run_queue()
    job = stack.ctx.jobs.get(job_id)
    assert job is not None and job.status == SUCCEEDED, job and job.error
    store = AzureFilesStore.from_connection_string(conn, share.share)
    assert isinstance(stack.ctx.workspace_store(), AzureFilesStore)
    listed = sorted(store.list().files)
    assert listed == sorted(expected_files(stack.repo.path, commit))
    assert not stack.workspace.exists()


@pytest.mark.slow
def test_lease_is_renewed_while_held_and_lapses_after_a_crash(storage: str):
    """A held workspace lease outlives its duration while its holder renews it, and one
    abandoned without renewal (a crashed worker) frees the workspace after the duration."""
    import threading
    import time
    import uuid

    from gitops_sync.adapters.leases import WorkspaceLeases

    container = f"l{uuid.uuid4().hex[:12]}"
    leases = WorkspaceLeases.from_connection_string(storage, container, duration=15)
    release = threading.Event()
    held = threading.Event()

    def holder() -> None:
        with leases.hold("alive"):
            held.set()
            release.wait(120)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(30)
        crashed = leases.try_acquire("crashed")  # taken after "alive", never renewed
        assert crashed is not None
        assert leases.try_acquire("crashed") is None
        # Wait for the event itself: the abandoned lease lapses (15 s, on storage's clock).
        deadline = time.monotonic() + 90
        while leases.try_acquire("crashed") is None:
            assert time.monotonic() < deadline, "an abandoned lease never lapsed"
            time.sleep(0.5)
        # "alive" was taken earlier with the same duration: only renewal keeps it held.
        assert leases.try_acquire("alive") is None
    finally:
        release.set()
        t.join()
    assert leases.try_acquire("alive") is not None  # released on exit


def test_concurrent_pushes_of_different_commits_make_distinct_jobs_without_a_shared_row(
    stack: Stack,
):
    """Ten different commits accepted at the same instant make ten jobs and ten messages,
    the newest job id is the connection's newest job, and no delivery wrote a shared row."""
    import threading

    commits = [f"{i:x}".rjust(40, "a") for i in range(10)]
    barrier = threading.Barrier(len(commits))
    answers: list[dict] = []

    def deliver(commit: str) -> None:
        body = push_payload(commit)
        headers = delivery_headers(body)
        barrier.wait()
        answer = intake.receive(stack.ctx, headers, body)
        assert answer.body is not None
        answers.append(answer.body)

    threads = [threading.Thread(target=deliver, args=(c,)) for c in commits]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = sorted(a["job_id"] for a in answers)
    assert len(set(ids)) == 10
    assert [j.job_id for j in stack.ctx.jobs.list(1, "default")] == ids[:1]
    assert sorted(json.loads(m)["job_id"] for m in stack.drain()) == ids
    assert list(stack.ctx.tables.query("state", "PartitionKey eq @pk", pk="default")) == []


def test_reconcile_prunes_old_finished_jobs_only(stack: Stack):
    """The timer's pass deletes finished job records past the retention; recent ones and
    unfinished old ones stay."""
    import time

    from gitops_sync.jobs import Job, new_job_id

    old = time.time() - worker.JOB_RETENTION_S - 3600
    ids = {}
    for name, when, status in (
        ("old-done", old, SUCCEEDED),
        ("old-failed", old, FAILED),
        ("old-queued", old, QUEUED),
        ("new-done", time.time(), SUCCEEDED),
    ):
        job = Job(new_job_id(when), "default", "acme/site", None, kind="push")
        job.status = status
        stack.ctx.jobs.create(job)
        ids[name] = job.job_id
    worker.reconcile(stack.ctx)
    kept = {name for name, job_id in ids.items() if stack.ctx.jobs.get(job_id) is not None}
    assert {"old-queued", "new-done"} == kept
