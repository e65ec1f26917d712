"""``gitops-sync jobs list|show``: sync jobs, read from a server's API or from Table Storage.

With ``--url`` or ``GITOPS_SYNC_URL`` the API is asked; else, with ``AzureWebJobsStorage``
set, its tables are read; else the API of a running ``gitops-sync dev`` (or the default URL).
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..core.errors import UsageError
from ..settings import Settings
from ._client import server_options
from ._client import server_or_storage as _source


def _context() -> Any:
    from ..context import AppContext

    return AppContext.from_settings(Settings.from_env())


def _print_job(doc: dict[str, Any]) -> None:
    for field in ("job_id", "status", "commit", "synced_commit", "note", "repository", "kind",
                  "attempts", "created_at", "started_at", "finished_at", "superseded_by",
                  "error"):  # fmt: skip
        if doc.get(field) not in (None, ""):
            click.echo(f"{field:14} {doc[field]}")
    summary = doc.get("summary")
    if summary:
        counts = ", ".join(f"{k} {summary.get(k, 0)}" for k in ("added", "updated", "deleted"))
        click.echo(f"{'summary':14} {counts}, {summary.get('bytes_written', 0)} bytes written")


@click.group()
def jobs() -> None:
    """Sync jobs, from a server's API (--url, GITOPS_SYNC_URL, a running dev) or the tables
    of AzureWebJobsStorage."""


@jobs.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--connection", default=None, help="Only this connection's jobs.")
@server_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_jobs(
    limit: int, connection: str | None, url: str | None, key: str | None, as_json: bool
) -> None:
    """The newest jobs first."""
    server = _source(url, key)
    if server:
        params = {"limit": limit, **({"connection": connection} if connection else {})}
        docs = server.get_json("/api/jobs", "jobs route", **params)
    else:
        docs = [j.public() for j in _context().jobs.list(limit, connection)]
    if as_json:
        click.echo(json.dumps(docs, indent=2))
        return
    if not docs:
        click.echo("no jobs")
        return
    for d in docs:
        commit = (d.get("commit") or "-")[:12]
        click.echo(
            f"{d['job_id']}  {d['status']:10}  {d.get('kind', ''):9}  {commit:12}"
            f"  {d.get('created_at', '')}  {d.get('repository', '')}"
        )


@jobs.command("show")
@click.argument("job_id")
@server_options
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def show_job(job_id: str, url: str | None, key: str | None, as_json: bool) -> None:
    """One job: status, commit, timings, sync summary and error."""
    server = _source(url, key)
    if server:
        doc = server.get_json(f"/api/jobs/{job_id}", "job")
    else:
        job = _context().jobs.get(job_id)
        if job is None:
            raise UsageError(f"no such job: {job_id[:64]}")
        doc = job.public()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_job(doc)
