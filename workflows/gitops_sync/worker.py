"""The queue worker: one message is "reconcile this connection now", as Flux treats a hook.

Under the workspace's lease the job syncs the tracked branch's head as git sees
it then, so the workspace only moves forward; a job that a newer push overtook
ends ``superseded``. Errors say what the queue should do (``.permanent``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .adapters.git_source import GitSource
from .connections import Connection, now_iso
from .core.errors import ConflictError, GitopsSyncError
from .deploy.reconcile import deploy_functions
from .intake import job_for_message, job_message
from .jobs import FAILED, FINAL, QUEUED, RUNNING, SUCCEEDED, SUPERSEDED, Job, clean_error
from .jobs import new_job_id as _new_job_id
from .lease_guard import guard
from .ports import WorkspaceStore
from .sync import sync_workspace

if TYPE_CHECKING:
    from .context import AppContext

log = logging.getLogger("gitops_sync")

#: when a job gave up waiting for a busy workspace, its fresh message waits this long
RETRY_BUSY_S = 15
#: a queued/running job older than this no longer stops the timer from queuing another
STALE_JOB_S = 3600.0
#: finished job records are kept this long; the timer's pass deletes older ones
JOB_RETENTION_S = 14 * 24 * 3600.0


def handle_message(ctx: AppContext, body: str, dequeue_count: int | None) -> None:
    """Process one sync-job message.

    Returns when the job is over (succeeded, failed for good, superseded, or not a
    job at all); raises a transient error so the queue delivers it again. On the
    last allowed delivery the job is recorded failed first, then the error is
    raised, so the poison queue never holds a job that still looks alive.
    """
    try:
        doc = json.loads(body)
        job_id = doc["job_id"]
        if not isinstance(job_id, str):
            raise TypeError("job_id")
    except (ValueError, TypeError, KeyError) as exc:
        log.error("dropping an unreadable queue message (%s)", type(exc).__name__)
        return
    job = job_for_message(ctx, doc)
    if job is None:
        log.warning("dropping a message for unknown job %s", job_id[:64])
        return
    if job.status in FINAL:
        return  # a redelivery after the job was recorded done
    attempt = dequeue_count if dequeue_count else job.attempts + 1
    conn = ctx.connections.get(job.connection)
    if conn is None:
        _finish(ctx, job, FAILED, error=f"connection {job.connection!r} no longer exists")
        return
    secrets = [*ctx.secrets(), conn.secret, conn.token]
    try:
        _run(ctx, conn, job, attempt)
    except ConflictError as exc:
        # Busy, or stopped midway because our lease was lost: not broken either way.
        job.status, job.error = QUEUED, clean_error(str(exc), secrets)
        ctx.jobs.save(job)
        if attempt < ctx.max_dequeue:
            raise
        # A long sync of the same workspace outlasted our deliveries. Queue the job
        # afresh rather than fail it (leases expire, so a crashed holder cannot make
        # this loop forever).
        ctx.queue.send(job_message(job), delay=RETRY_BUSY_S)
        log.info("job %s: workspace busy, queued again", job.job_id)
    except Exception as exc:
        permanent = isinstance(exc, GitopsSyncError) and exc.permanent
        text = str(exc) if isinstance(exc, GitopsSyncError) else f"{type(exc).__name__}: {exc}"
        job.error = clean_error(text, secrets)
        job.attempts = max(job.attempts, attempt)
        if permanent or attempt >= ctx.max_dequeue:
            _finish(ctx, job, FAILED, error=job.error)
            if permanent:
                return
        else:
            job.status = QUEUED  # waiting for the queue's next delivery
            ctx.jobs.save(job)
            log.warning(
                "job %s attempt %d failed, will retry: %s",
                job.job_id,
                attempt,
                job.error,
                extra={"job_id": job.job_id, "repository": conn.repository},
            )
        raise


def _superseded(ctx: AppContext, job: Job) -> bool:
    # Job ids sort newest first: a newer job of this connection (a record, never a
    # marker) takes over, and it syncs the branch head as git sees it then.
    newest = next(iter(ctx.jobs.list(1, job.connection)), None)
    if newest is not None and newest.job_id < job.job_id:
        job.superseded_by = newest.job_id
        _finish(ctx, job, SUPERSEDED)
        return True
    return False


@contextlib.contextmanager
def _local_lock(store: WorkspaceStore) -> Iterator[None]:
    # A workspace folder may also be synced by `gitops-sync sync` on this machine. The
    # lease is what counts; a mount without flock support only loses this extra guard.
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(store.lock())
        except OSError as exc:
            log.debug("no local lock on %s: %s", store.describe(), exc)
        yield


def _run(ctx: AppContext, conn: Connection, job: Job, attempt: int) -> None:
    if _superseded(ctx, job):
        return
    store = ctx.workspace_store(conn.id)
    with ctx.leases.hold(conn.id, wait=ctx.lease_wait_s) as lease, _local_lock(store):
        # Every write checks the lease: one that could not be renewed stops the sync.
        store = guard(store, lease)
        if _superseded(ctx, job):  # a newer push may have arrived while we waited
            return
        job.status, job.attempts, job.started_at = RUNNING, attempt, now_iso()
        job.error = None
        ctx.jobs.save(job)
        started = time.monotonic()
        source = GitSource(conn.repo_url, cache_dir=ctx.settings.cache_dir, token=conn.token)
        ref = f"refs/heads/{conn.branch}"
        # The branch head as git sees it now: never older than the push that queued us.
        commit = source.resolve(ref)
        result = sync_workspace(source, ref, store, commit=commit)
        ctx.heads.mark_synced(conn.id, commit)
        job.commit, job.synced_commit = job.commit or commit, commit
        if job.commit != commit:
            job.note = (
                f"synced {commit[:12]}, the head of {conn.branch} when the job ran; the pushed"
                f" commit {job.commit[:12]} was not (a newer push, or not on the branch)"
            )
        summary = result.as_json()
        # Same job, same lease: deploy what changed. A deploy failure of one function
        # is in the summary; a storage failure raises and the job is retried (the sync
        # is then a no-op, and the deploy completes what it had begun).
        deployed = deploy_functions(ctx.deployer, source, commit, result.functions, conn.id)
        summary["functions"] = deployed.as_json()
        _finish(ctx, job, SUCCEEDED, summary=summary, started=started)


def _finish(
    ctx: AppContext,
    job: Job,
    status: str,
    *,
    error: str | None = None,
    summary: dict[str, object] | None = None,
    started: float | None = None,
) -> None:
    job.status, job.finished_at = status, now_iso()
    if error is not None:
        job.error = error
    if summary is not None:
        job.summary = dict(summary)
    if started is not None:
        job.duration_s = round(time.monotonic() - started, 3)
    ctx.jobs.save(job)
    counts = {k: (job.summary or {}).get(k) for k in ("added", "updated", "deleted", "unchanged")}
    fields = {
        "job_id": job.job_id,
        "repository": job.repository,
        "commit": (job.summary or {}).get("commit") or job.commit,
        "status": status,
        "duration_s": job.duration_s,
        **counts,
    }
    line = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    if status == FAILED:
        log.error("job %s: %s", line, job.error, extra=fields)
    else:
        log.info("job %s", line, extra=fields)


def reconcile(ctx: AppContext) -> list[str]:
    """The timer's pass: queue a reconcile of every connection that has no live job.

    It repairs drift (files changed by hand) and catches webhooks that never came.
    """
    queued: list[str] = []
    for conn in ctx.connections.all():
        current = next(iter(ctx.jobs.list(1, conn.id)), None)
        if current is not None and current.status in (QUEUED, RUNNING) and not _stale(current):
            continue
        job = Job(_new_job_id(), conn.id, conn.repository, None, kind="reconcile")
        ctx.queue.send(job_message(job))  # the message first, as intake does
        ctx.jobs.create(job)
        queued.append(job.job_id)
        log.info("queued reconcile job %s for %s", job.job_id, conn.repository)
    pruned = ctx.jobs.prune(JOB_RETENTION_S)
    if pruned:
        log.info("deleted %d job records older than %d days", pruned, JOB_RETENTION_S // 86400)
    return queued


def _stale(job: Job) -> bool:
    try:
        created = datetime.fromisoformat(job.created_at)
    except ValueError:
        return True
    return (datetime.now(UTC) - created).total_seconds() > STALE_JOB_S
