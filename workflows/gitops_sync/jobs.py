"""Sync jobs: the record of one requested reconcile, from queued to a final status.

Statuses: queued -> running -> succeeded | failed | superseded (a newer push of
the same connection took over). Records live in Table Storage, one entity each.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .adapters.tables import Tables
from .connections import now_iso
from .core.redact import redact

QUEUED, RUNNING, SUCCEEDED, FAILED, SUPERSEDED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "superseded",
)
FINAL = frozenset({SUCCEEDED, FAILED, SUPERSEDED})
# One partition, keyed by job id; ids sort newest first (see new_job_id), so the
# newest jobs are the first page of a plain query.
_PK = "job"
_NEWEST = 10**13  # ms since 1970 stays below this until the year 2286
# Table string properties hold 64 KiB of UTF-16, i.e. 32K characters; keep a margin.
SUMMARY_CHARS = 30_000
ERROR_CHARS = 4_000


def _key_for(epoch_s: float) -> str:
    return f"{_NEWEST - int(epoch_s * 1000):013d}"


def new_job_id(now: float | None = None) -> str:
    """A unique id that sorts newest first: inverted milliseconds, then randomness."""
    return _key_for(time.time() if now is None else now) + uuid.uuid4().hex[:12]


@dataclass(slots=True)
class Job:
    job_id: str
    connection: str
    repository: str
    commit: str | None  # the pushed commit (None for a timer reconcile until it runs)
    kind: str = "push"  # push | reconcile
    status: str = QUEUED
    attempts: int = 0
    delivery: str | None = None
    created_at: str = field(default_factory=now_iso)
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    superseded_by: str | None = None
    synced_commit: str | None = None  # what the sync wrote: the branch head when it ran
    note: str | None = None  # why synced_commit is not the pushed commit, when it is not

    def public(self) -> dict[str, Any]:
        """The contract's job document (plus a few informative fields)."""
        return {
            "job_id": self.job_id,
            "commit": self.commit,
            "status": self.status,
            "summary": self.summary,
            "error": self.error,
            "connection": self.connection,
            "repository": self.repository,
            "kind": self.kind,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "superseded_by": self.superseded_by,
            "synced_commit": self.synced_commit,
            "note": self.note,
        }


def fit_summary(summary: dict[str, Any], limit: int = SUMMARY_CHARS) -> dict[str, Any]:
    """Trim the longest lists (skipped first) until the JSON fits one table property."""
    out = json.loads(json.dumps(summary))
    if len(json.dumps(out)) <= limit:
        return out
    skipped = out.get("skipped") or []
    total = len(skipped)
    while skipped and len(json.dumps(out)) > limit:
        del skipped[len(skipped) // 2 :]  # halving: a few dumps even for huge lists
    out["skipped_total"] = total
    functions = out.get("functions") or {}
    for key in ("failed", "unchanged", "deployed", "removed", "invalid", "changed"):
        items = functions.get(key)
        if isinstance(items, list) and len(json.dumps(out)) > limit:
            functions[f"{key}_total"] = len(items)
            items.clear()
    return out


def clean_error(message: str, secrets: Iterable[str | None]) -> str:
    """One line, no URL query strings or credentials, bounded in size."""
    text = redact(" ".join(message.split()), secrets)
    return text[:ERROR_CHARS]


class JobStore:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    @staticmethod
    def _entity(job: Job) -> dict[str, Any]:
        doc = asdict(job)
        doc["summary"] = json.dumps(fit_summary(job.summary)) if job.summary else ""
        out = {k: v for k, v in doc.items() if v is not None}
        out.update(PartitionKey=_PK, RowKey=job.job_id)
        return out

    @staticmethod
    def _job(e: dict[str, Any]) -> Job:
        names = Job.__dataclass_fields__
        values = {k: v for k, v in e.items() if k in names}
        values.setdefault("commit", None)  # None values are not stored
        values["summary"] = json.loads(e["summary"]) if e.get("summary") else None
        values["attempts"] = int(values.get("attempts", 0))
        if values.get("duration_s") is not None:
            values["duration_s"] = float(values["duration_s"])
        return Job(**values)

    def create(self, job: Job) -> bool:
        return self.tables.insert("jobs", self._entity(job))

    def save(self, job: Job) -> None:
        self.tables.replace("jobs", self._entity(job))

    def get(self, job_id: str) -> Job | None:
        if not job_id or not all(c.isalnum() or c in "-_" for c in job_id) or len(job_id) > 100:
            return None  # never a valid key: not found, rather than a storage error
        got = self.tables.get("jobs", _PK, job_id)
        return self._job(got[0]) if got else None

    def list(self, limit: int = 50, connection: str | None = None) -> list[Job]:
        """The newest ``limit`` jobs (of one connection), newest first; reads only those."""
        query = "PartitionKey eq @pk" + (" and connection eq @conn" if connection else "")
        params: dict[str, Any] = {"pk": _PK}
        if connection:
            params["conn"] = connection
        jobs: list[Job] = []
        for entity in self.tables.query("jobs", query, page_size=min(limit, 1000), **params):
            jobs.append(self._job(entity))
            if len(jobs) >= limit:
                break
        return jobs

    def prune(self, older_than_s: float, limit: int = 1000) -> int:
        """Delete finished jobs created more than ``older_than_s`` ago; returns how many.

        Ids sort newest first, so "older" is one key range; at most ``limit`` a call
        (the periodic reconcile calls it, so a backlog drains over a few passes).
        """
        cutoff = _key_for(time.time() - older_than_s)
        query = "PartitionKey eq @pk and RowKey gt @cutoff"
        deleted = 0
        for e in self.tables.query("jobs", query, page_size=100, pk=_PK, cutoff=cutoff):
            if e.get("status") not in FINAL:
                continue  # a job still queued or running is left to finish
            self.tables.delete("jobs", _PK, str(e["RowKey"]))
            deleted += 1
            if deleted >= limit:
                break
        return deleted
