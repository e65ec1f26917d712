"""Webhook intake: a verified delivery becomes at most one queued job, in milliseconds.

As Flux's receiver, it only authenticates, deduplicates and records "reconcile
requested"; the worker does the work. Dedup is atomic insert-if-absent markers: the
commit's marker names the job and the delivery that claimed it, so racing deliveries
make one job. A delivery gets a marker of its own only when it did not claim the
commit (a new delivery of a commit whose job is live, an adoption, a takeover), so a
first delivery costs three storage calls: claim, message, record.

Crash safety: the steps are claim the marker(s), send the message, write the job
record, and every step can be redone by whoever comes next under the same job id.
A message is sent before its record is written, so a record always has a message
(the worker writes a missing record from its message). A marker whose job has no
record is adopted by the next delivery of that id or commit, which finishes its
steps; an answer never names a job that has no record. No shared row is written,
so deliveries of one repository never contend.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .connections import Connection, now_iso, valid_repository
from .core import webhook as wh
from .core.errors import StorageError
from .core.webhook import Answer
from .jobs import QUEUED, RUNNING, SUCCEEDED, Job, new_job_id

if TYPE_CHECKING:
    from .context import AppContext

log = logging.getLogger("gitops_sync")

#: how long a marker's job may lack a record before another delivery adopts it (a racing
#: first delivery writes it milliseconds later, or seconds on a loaded machine)
SETTLE_S, SETTLE_PAUSE_S = 1.5, 0.02


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def receive(
    ctx: AppContext, headers: Mapping[str, str], body: bytes, digests: wh.Digests | None = None
) -> Answer:
    """Answer one delivery (the body already capped by the caller), per the contract.

    ``digests`` are HMACs computed while the body streamed in (secret -> hex digest).
    """
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
        if not wh.signature_valid(conn.secret, body, signature, digests):
            return wh.UNAUTHORIZED
    elif not any(
        wh.signature_valid(c.secret, body, signature, digests) for c in ctx.connections.all()
    ):
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
    """Queue a job for ``commit`` unless this delivery or commit already has a live one.

    Storage calls: 3 for a new commit (claim, message, record), 3 for its redelivery
    (claim refused, read the marker, read the job), 4 for a new delivery of a commit
    whose job is live (and a marker naming that job), 5 for that one's redelivery.
    """
    fresh = new_job_id()
    d_key = _delivery_key(delivery) if delivery else None
    if ctx.tables.insert("markers", _marker(conn, "c-" + commit, fresh, d_key)):
        return _queue(ctx, conn, commit, delivery, fresh, fresh)
    answer = _plain_duplicate(ctx, conn, commit, d_key)
    if answer is not None:
        return answer
    # The careful path: an intake that stopped midway, a race, a job that is over.
    job_id = fresh
    if d_key:
        # A redelivery stands for the job its first delivery claimed, whatever became of it.
        job_id = _claim_delivery(ctx, conn, d_key, fresh)
        if job_id != fresh and ctx.jobs.get(job_id) is not None:
            return wh.duplicate(job_id)
    owner, recorded = _claim_commit(ctx, conn, commit, job_id, d_key)
    if owner != job_id:
        if d_key:  # so a redelivery of this id names the job that exists
            _point(ctx, conn, d_key, owner)
        if recorded or ctx.jobs.get(owner) is not None:  # read again only to adopt (rare)
            return wh.duplicate(owner)
        job_id = owner  # adopted: its intake stopped before the record; finish it
    return _queue(ctx, conn, commit, delivery, job_id, fresh)


def _plain_duplicate(
    ctx: AppContext, conn: Connection, commit: str, d_key: str | None
) -> Answer | None:
    """The answer when the commit's claim settles it: this very delivery made the claim
    (a redelivery) and its job has a record, or the claim's job is live (this delivery
    then gets a marker naming it). None when only the careful path can tell."""
    got = ctx.tables.get("markers", conn.id, "c-" + commit)
    if got is None:
        return None
    owner = str(got[0]["job_id"])
    job = ctx.jobs.get(owner)
    if job is None:
        return None  # its intake is still writing it, or stopped: settle or adopt
    if d_key is not None and got[0].get("delivery") == d_key:
        return wh.duplicate(owner)
    if not _live(ctx, conn, commit, job):
        return None
    if d_key is None or ctx.tables.insert("markers", _marker(conn, d_key, owner)):
        return wh.duplicate(owner)
    mine = ctx.tables.get("markers", conn.id, d_key)  # a redelivery of such a delivery
    if mine is not None and str(mine[0]["job_id"]) == owner:
        return wh.duplicate(owner)
    return None


def _queue(
    ctx: AppContext, conn: Connection, commit: str, delivery: str | None, job_id: str, fresh: str
) -> Answer:
    """Send the job's message, then write its record (see the module's crash safety)."""
    kept = wh.short(delivery) if delivery else None  # sender-controlled: bounded
    job = Job(job_id, conn.id, conn.repository, commit, "push", delivery=kept)
    ctx.queue.send(job_message(job))
    if not ctx.jobs.create(job) and job_id != fresh:
        return wh.duplicate(job_id)  # another delivery finished the same job meanwhile
    log.info(
        "queued job %s for %s commit %s",
        job_id,
        conn.repository,
        commit,
        extra={"job_id": job_id, "repository": conn.repository, "commit": commit},
    )
    return wh.queued(job_id, commit)


def job_message(job: Job) -> str:
    """The queue message: enough of the job to write its record if that write was lost."""
    return json.dumps(
        {
            "job_id": job.job_id,
            "connection": job.connection,
            "repository": job.repository,
            "commit": job.commit,
            "kind": job.kind,
            "created_at": job.created_at,
        }
    )


def job_for_message(ctx: AppContext, doc: Mapping[str, Any]) -> Job | None:
    """The job a queue message names; written from the message when its intake stopped
    between sending it and writing the record. None for a message that is not a job."""
    job_id = doc.get("job_id")
    if not isinstance(job_id, str):
        return None
    found = ctx.jobs.get(job_id)
    if found is not None:
        return found
    fields = [doc.get(k) for k in ("connection", "repository", "kind", "created_at")]
    commit = doc.get("commit")
    if not all(isinstance(v, str) and v for v in fields) or not isinstance(commit, str | None):
        return None
    connection, repository, kind, created_at = (str(v) for v in fields)
    job = Job(job_id, connection, repository, commit, kind, created_at=created_at)
    if not ctx.jobs.create(job):
        return ctx.jobs.get(job_id)
    log.info("recorded job %s from its queue message", job_id)
    return job


def _marker(conn: Connection, key: str, job_id: str, delivery: str | None = None) -> dict[str, Any]:
    """A claim: ``key`` (a delivery's, or a commit's naming the delivery that claimed it)
    stands for ``job_id``."""
    entity = {"PartitionKey": conn.id, "RowKey": key, "job_id": job_id, "created_at": now_iso()}
    if delivery:
        entity["delivery"] = delivery
    return entity


def _point(ctx: AppContext, conn: Connection, key: str, job_id: str) -> None:
    ctx.tables.replace("markers", _marker(conn, key, job_id))


def _claim_delivery(ctx: AppContext, conn: Connection, key: str, job_id: str) -> str:
    """The job this delivery stands for: ``job_id`` if it is the first, else the first's."""
    for _ in range(10):
        if ctx.tables.insert("markers", _marker(conn, key, job_id)):
            return job_id
        got = ctx.tables.get("markers", conn.id, key)
        if got is not None:
            return _settled(ctx, conn, key, str(got[0]["job_id"]), got[0])
    raise StorageError("too much contention claiming a delivery")


def _claim_commit(
    ctx: AppContext, conn: Connection, commit: str, job_id: str, d_key: str | None
) -> tuple[str, bool]:
    """Make ``job_id`` the owner of the commit unless a live job owns it; returns the owner
    and whether another owner has a record (read here, so the caller need not again).

    Insert-if-absent decides the common race; a marker whose job is over is taken over
    with its ETag, so exactly one racer wins that too. An owner returned that is not
    ``job_id`` either has a live record or has none (the caller adopts it). Before a
    takeover, the delivery the old claim named gets its own marker, so its redelivery
    still names its job.
    """
    key = "c-" + commit
    entity = _marker(conn, key, job_id, d_key)
    for _ in range(10):
        if ctx.tables.insert("markers", entity):
            return job_id, False
        got = ctx.tables.get("markers", conn.id, key)
        if got is None:
            continue  # released meanwhile: try inserting again
        current, etag = got
        owner = str(current["job_id"])
        if owner == job_id:
            return job_id, False  # ours already: an earlier try of this job claimed it
        job = ctx.jobs.get(owner)
        if job is None:
            owner = _settled(ctx, conn, key, owner, current)
            job = ctx.jobs.get(owner)
            if job is None:
                return owner, False
        if _live(ctx, conn, commit, job):
            return owner, True
        claimer = current.get("delivery")
        if isinstance(claimer, str) and claimer and claimer != d_key:
            ctx.tables.insert("markers", _marker(conn, claimer, owner))  # False: it has one
        if ctx.tables.replace("markers", entity, etag=etag):
            return job_id, False
    raise StorageError(f"too much contention claiming commit {commit[:12]}")


def _owner(ctx: AppContext, conn: Connection, key: str) -> str:
    got = ctx.tables.get("markers", conn.id, key)
    return str(got[0]["job_id"]) if got else ""


def _settled(
    ctx: AppContext,
    conn: Connection,
    key: str,
    owner: str,
    current: Mapping[str, Any] | None = None,
) -> str:
    """The owner of marker ``key`` once it has a record, or once it is clearly abandoned.

    A racing first delivery writes its record milliseconds after its marker (or
    re-points the marker to the commit's job); wait for that, at most ``SETTLE_S``
    after the marker was written. An owner still without a record then is adopted.
    """
    since = _age(str((current or {}).get("created_at", "")))
    deadline = time.monotonic() + max(0.0, SETTLE_S - since)
    pause = SETTLE_PAUSE_S
    while ctx.jobs.get(owner) is None and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)
        owner = _owner(ctx, conn, key) or owner
    return owner


def _age(since: str) -> float:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(since)).total_seconds()
    except ValueError:
        return 0.0


def _live(ctx: AppContext, conn: Connection, commit: str, job: Job) -> bool:
    """Queued, running, or synced and still the workspace's commit."""
    if job.status in (QUEUED, RUNNING):
        return True
    return job.status == SUCCEEDED and ctx.heads.read(conn.id).synced_commit == commit
