"""``gitops-sync connections add|list|remove``: the repositories this deployment syncs.

Kept in Table Storage: ``AzureWebJobsStorage``, else the storage of the ``gitops-sync
dev`` running from this folder or a parent (its emulator's ports are random; dev
records them). A connection names the app setting that holds its webhook secret;
the secret itself is never stored or printed.
"""

from __future__ import annotations

import json
import os

import click

from ..connections import Connection, ConnectionStore, slug
from ..core.errors import UsageError
from ..settings import Settings

_STORAGE_SETTINGS = ("AzureWebJobsStorage", "AzureWebJobsStorage__accountName")


def _store() -> ConnectionStore:
    from ..context import AppContext
    from ..local import devstate

    env = dict(os.environ)
    dev = devstate.find_state(running=True)
    if not any(env.get(name) for name in _STORAGE_SETTINGS) and dev.get("storage"):
        env["AzureWebJobsStorage"] = str(dev["storage"])
        for name, field in (("SYNC_REPOSITORY", "repository"), ("SYNC_REPO_URL", "repo_url")):
            if not env.get(name) and dev.get(field):
                env[name] = str(dev[field])
    store: ConnectionStore = AppContext.from_settings(Settings.from_env(env)).connections
    return store


@click.group()
def connections() -> None:
    """Connected repositories (each with its branch, workspace and secret setting)."""


@connections.command("add")
@click.argument("repository")
@click.option(
    "--secret-setting",
    required=True,
    help="NAME of the app setting holding this repository's webhook secret (not the secret).",
)
@click.option("--id", "conn_id", default=None, help="Connection id (default: from REPOSITORY).")
@click.option("--branch", default="main", show_default=True, help="The tracked branch.")
@click.option(
    "--repo-url", default=None, help="Where to fetch (default https://github.com/REPOSITORY.git)."
)
@click.option("--token-setting", default=None, help="NAME of the app setting with a git token.")
@click.option("--workspace", default=None, help="Folder under WORKSPACE_ROOT (default: the id).")
@click.option("--share", default=None, help="An Azure Files share as the workspace instead.")
def add(
    repository: str,
    secret_setting: str,
    conn_id: str | None,
    branch: str,
    repo_url: str | None,
    token_setting: str | None,
    workspace: str | None,
    share: str | None,
) -> None:
    """Connect REPOSITORY (owner/name as GitHub sends it), or update its connection."""
    if workspace and share:
        raise UsageError("give --workspace or --share, not both")
    conn = Connection(
        id=conn_id or slug(repository),
        repository=repository,
        branch=branch,
        repo_url=repo_url or f"https://github.com/{repository}.git",
        secret_setting=secret_setting,
        token_setting=token_setting,
        workspace=None if share else (workspace or conn_id or slug(repository)),
        share=share,
    )
    _store().add(conn)
    click.echo(f"connected {repository} as {conn.id} (branch {branch})")


@connections.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_connections(as_json: bool) -> None:
    """Every connection, the env one (SYNC_REPOSITORY) first. Secrets are never shown."""
    docs = [c.describe() for c in _store().all()]
    if as_json:
        click.echo(json.dumps(docs, indent=2))
        return
    if not docs:
        click.echo("no connections")
    for d in docs:
        secret = "secret ok" if d["secret_configured"] else f"secret {d['secret_setting']} unset"
        click.echo(
            f"{d['id']:20}  {d['repository']:30}  {d['branch']:12}  {d['workspace']}  ({secret})"
        )


@connections.command("remove")
@click.argument("conn_id", metavar="ID")
def remove(conn_id: str) -> None:
    """Disconnect ID; its workspace's files are left as they are."""
    if not _store().remove(conn_id):
        raise UsageError(f"no stored connection {conn_id!r}")
    click.echo(f"removed {conn_id}")
