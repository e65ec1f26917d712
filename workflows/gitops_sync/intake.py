"""Webhook intake: a verified delivery becomes at most one queued job, in milliseconds.

As Flux's receiver, it only authenticates, deduplicates and records "reconcile
requested"; the worker does the work. Dedup is two atomic insert-if-absent
markers (the delivery id, then the commit), so racing deliveries make one job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .connections import Connection, now_iso, valid_repository
from .core import webhook as wh
from .core.errors import StorageError
from .core.webhook import Answer
from .jobs import FAILED, QUEUED, RUNNING, SUCCEEDED, Job, clean_error, new_job_id

if TYPE_CHECKING:
    from .context import AppContext

log = logging.getLogger("gitops_sync")

#: a marker whose job record is still missing after this long was left by a crash
ABANDONED_AFTER_S = 120.0
#: how long a duplicate waits for a racing first delivery to settle its marker
SETTLE_TRIES, SETTLE_PAUSE_S = 20, 0.025


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def receive(ctx: AppContext, headers: Mapping[str, str], body: bytes) -> Answer:
    """Answer one delivery (the body already capped by the caller), per the contract."""
    event = (_header(headers, "x-github-event") or "").strip()
    delivery = (_header(headers, "x-github-delivery") or "").strip() or None
    signature = _header(headers, "x-hub-signature-256")
    if not wh.signature_well_formed(signature):
        return wh.UNAUTHORIZED  # decided before any storage call or JSON parsing

    payload = wh.json_object(body)
    full_name = wh.repository_name(payload)
    # A sender controls the name: only a plausible one is looked up in storage.
    known = full_name is not None and valid_repository(full_name)
    conn = ctx.connections.for_repository(full_name) if known and full_name else None
    if conn is not None:
        # The repository picks the secret: repo A's secret can never act for repo B.
        if not wh.signature_valid(conn.secret, body, signature):
            return wh.UNAUTHORIZED
    elif not any(wh.signature_valid(c.secret, body, signature) for c in ctx.connections.all()):
        return wh.UNAUTHORIZED

    if payload is None:
        return wh.bad_request("body is not a JSON object")
    if event == "ping":
        return wh.PONG
    if event != "push":
        return wh.ignored(f"event {wh.short(event) or '(none)'!r} is not handled")
    try:
        push = wh.parse_push(payload)
    except wh.BadDelivery as exc:
        return wh.bad_request(str(exc))
    if conn is None:
        return wh.ignored(f"repository {wh.short(push.repository)} is not connected")
    reason = wh.why_ignored(push, conn.branch)
    if reason is not None:
        return wh.ignored(reason)
    return accept_push(ctx, conn, push.after, delivery)


def _delivery_key(delivery: str) -> str:
    # Hashed: a sender controls the id, and table keys forbid / \ # ? and control characters.
    return "d-" + hashlib.sha256(delivery.encode("utf-8", "replace")).hexdigest()[:40]


def accept_push(ctx: AppContext, conn: Connection, commit: str, delivery: str | None) -> Answer:
    """Queue a job for ``commit`` unless this delivery or commit already has a live one."""
    job_id = new_job_id()
    tables = ctx.tables
    marker = {"PartitionKey": conn.id, "job_id": job_id, "created_at": now_iso()}
    if delivery:
        # A redelivery never makes a second job, whatever became of the first.
        key = _delivery_key(delivery)
        won, owner = _claim(ctx, conn, key, job_id, _recorded_or_young(ctx))
        if not won:
            return wh.duplicate(_settled_owner(ctx, conn, key, owner))

    def commit_live(owner: str, since: str) -> bool:
        return _still_live(ctx, conn, commit, owner, since)

    won, owner = _claim(ctx, conn, "c-" + commit, job_id, commit_live)
    if not won:
        if delivery:  # so a redelivery of this id names the job that exists
            tables.replace(
                "markers", {**marker, "RowKey": _delivery_key(delivery), "job_id": owner}
            )
        return wh.duplicate(owner)

    seq = ctx.heads.advance(conn.id, job_id, commit)
    kept = wh.short(delivery) if delivery else None  # sender-controlled: bounded
    job = Job(job_id, conn.id, conn.repository, commit, "push", seq, delivery=kept)
    ctx.jobs.create(job)
    try:
        ctx.queue.send(job_message(job))
    except StorageError as exc:
        # Leave nothing that looks live: the job is failed and the markers released,
        # so GitHub's redelivery (or the next push) queues it again.
        job.status, job.error = FAILED, clean_error(f"could not queue: {exc}", ctx.secrets())
        ctx.jobs.save(job)
        tables.delete("markers", conn.id, "c-" + commit)
        if delivery:
            tables.delete("markers", conn.id, _delivery_key(delivery))
        raise
    log.info(
        "queued job %s for %s commit %s",
        job_id,
        conn.repository,
        commit,
        extra={"job_id": job_id, "repository": conn.repository, "commit": commit, "seq": seq},
    )
    return wh.queued(job_id, commit)


def job_message(job: Job) -> str:
    return json.dumps({"job_id": job.job_id, "connection": job.connection, "seq": job.seq})


def _claim(
    ctx: AppContext, conn: Connection, key: str, job_id: str, live: Callable[[str, str], bool]
) -> tuple[bool, str]:
    """Atomically make ``job_id`` the owner of marker ``key`` unless its owner is ``live``.

    Returns (won, owner). Insert-if-absent decides the common race; a marker whose
    owner is over is taken over with its ETag, so exactly one racer wins that too.
    """
    entity = {"PartitionKey": conn.id, "RowKey": key, "job_id": job_id, "created_at": now_iso()}
    owner = job_id
    for _ in range(10):
        if ctx.tables.insert("markers", entity):
            return True, job_id
        got = ctx.tables.get("markers", conn.id, key)
        if got is None:
            continue  # released meanwhile: try inserting again
        current, etag = got
        owner = str(current["job_id"])
        if live(owner, str(current.get("created_at", ""))):
            return False, owner
        if ctx.tables.replace("markers", entity, etag=etag):
            return True, job_id
    return False, owner


def _settled_owner(ctx: AppContext, conn: Connection, key: str, owner: str) -> str:
    """The job a duplicate delivery should name.

    A racing first delivery may still own the marker while it finds its commit
    already queued and re-points the marker to that job; its own id never becomes
    a job. Wait briefly until the owner has a record or the marker moves on.
    """
    for _ in range(SETTLE_TRIES):
        if ctx.jobs.get(owner) is not None:
            return owner
        time.sleep(SETTLE_PAUSE_S)
        got = ctx.tables.get("markers", conn.id, key)
        if got is not None:
            owner = str(got[0]["job_id"])
    return owner


def _young(since: str) -> bool:
    # The winner records its job right after its markers; only a crash leaves none.
    try:
        age = (datetime.now(UTC) - datetime.fromisoformat(since)).total_seconds()
    except ValueError:
        return False
    return age < ABANDONED_AFTER_S


def _recorded_or_young(ctx: AppContext) -> Callable[[str, str], bool]:
    return lambda owner, since: ctx.jobs.get(owner) is not None or _young(since)


def _still_live(ctx: AppContext, conn: Connection, commit: str, job_id: str, since: str) -> bool:
    """Queued, running, or synced and still the workspace's commit."""
    job = ctx.jobs.get(job_id)
    if job is None:
        return _young(since)
    if job.status in (QUEUED, RUNNING):
        return True
    return job.status == SUCCEEDED and ctx.heads.read(conn.id).synced_commit == commit
