"""``gitops-sync jobs list|show``: sync jobs, read from Table Storage or a running stack's API.

With ``--url`` (or no storage setting but a running ``gitops-sync dev``) the HTTP API
is asked; otherwise the tables of ``AzureWebJobsStorage`` are read directly.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from ..core.errors import GitopsSyncError, StorageError, UsageError
from ..settings import Settings

_STORAGE_SETTINGS = ("AzureWebJobsStorage", "AzureWebJobsStorage__accountName")


def _api(url: str, path: str, key: str | None, **params: Any) -> Any:
    import httpx

    headers = {"x-functions-key": key} if key else {}
    try:
        r = httpx.get(url.rstrip("/") + path, headers=headers, params=params, timeout=15)
    except httpx.HTTPError as exc:
        raise StorageError(f"cannot reach {url}: {type(exc).__name__}") from exc
    if r.status_code == 404:
        raise UsageError("no such job")
    if r.status_code == 401:
        raise UsageError("the API refused the key: set GITOPS_SYNC_API_KEY")
    if r.status_code >= 400:
        raise GitopsSyncError(f"{url} answered {r.status_code}")
    return r.json()


def _source(url: str | None) -> tuple[str | None, str | None]:
    """(API url, key) to use the HTTP API, or (None, None) to read the tables."""
    key = os.environ.get("GITOPS_SYNC_API_KEY") or None
    if url:
        return url, key
    if any(os.environ.get(name) for name in _STORAGE_SETTINGS):
        return None, None
    from ..local import devstate

    state = devstate.read_state()
    if state.get("url"):
        return str(state["url"]), key or state.get("api_key")
    return None, None


def _context() -> Any:
    from ..context import AppContext

    return AppContext.from_settings(Settings.from_env())


def _print_job(doc: dict[str, Any]) -> None:
    for field in ("job_id", "status", "commit", "repository", "kind", "attempts",
                  "created_at", "started_at", "finished_at", "superseded_by", "error"):  # fmt: skip
        if doc.get(field) not in (None, ""):
            click.echo(f"{field:14} {doc[field]}")
    summary = doc.get("summary")
    if summary:
        counts = ", ".join(f"{k} {summary.get(k, 0)}" for k in ("added", "updated", "deleted"))
        click.echo(f"{'summary':14} {counts}, {summary.get('bytes_written', 0)} bytes written")


URL_HELP = (
    "Ask a running server's API instead of reading Table Storage directly"
    " (default: the API of a running `gitops-sync dev` when AzureWebJobsStorage is unset)."
)


@click.group()
def jobs() -> None:
    """Sync jobs: read from the tables of AzureWebJobsStorage, or from a server's API (--url)."""


@jobs.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--connection", default=None, help="Only this connection's jobs.")
@click.option("--url", default=None, help=URL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_jobs(limit: int, connection: str | None, url: str | None, as_json: bool) -> None:
    """The newest jobs first."""
    api, key = _source(url)
    if api:
        params = {"limit": limit, **({"connection": connection} if connection else {})}
        docs = _api(api, "/api/jobs", key, **params)
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
@click.option("--url", default=None, help=URL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def show_job(job_id: str, url: str | None, as_json: bool) -> None:
    """One job: status, commit, timings, sync summary and error."""
    api, key = _source(url)
    if api:
        doc = _api(api, f"/api/jobs/{job_id}", key)
    else:
        job = _context().jobs.get(job_id)
        if job is None:
            raise UsageError(f"no such job: {job_id[:64]}")
        doc = job.public()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_job(doc)
