"""``gitops-sync connections add|list|remove``: the repositories this deployment syncs.

Through a server's API (``/api/connections``) with ``--url`` or ``GITOPS_SYNC_URL``;
else in the Table Storage of ``AzureWebJobsStorage``; else through the API of the
``gitops-sync dev`` running from this folder or a parent (as ``jobs``). A connection
names the app setting that holds its webhook secret; the secret is never stored or printed.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import quote

import click

from ..connections import EDITABLE, ConnectionStore, new_connection
from ..core.errors import UsageError
from ..settings import Settings
from ._client import fail_for, server_options, server_or_storage


def _store() -> ConnectionStore:
    from ..context import AppContext

    store: ConnectionStore = AppContext.from_settings(Settings.from_env()).connections
    return store


def _refused(resp: Any) -> None:
    """A 400 from the server is the user's mistake, as it is without a server (exit 2)."""
    if resp.status_code == 400:
        detail = ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = str(resp.json().get("error") or "")
        raise UsageError(detail or "the server refused the connection (400)")
    fail_for(resp, "connection")


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
@server_options
def add(
    repository: str,
    secret_setting: str,
    conn_id: str | None,
    branch: str,
    repo_url: str | None,
    token_setting: str | None,
    workspace: str | None,
    share: str | None,
    url: str | None,
    key: str | None,
) -> None:
    """Connect REPOSITORY (owner/name as GitHub sends it), or update its connection."""
    if workspace and share:
        raise UsageError("give --workspace or --share, not both")
    conn = new_connection(
        conn_id,
        repository,
        secret_setting,
        branch=branch,
        repo_url=repo_url,
        token_setting=token_setting,
        workspace=workspace,
        share=share,
    )
    server = server_or_storage(url, key)
    if server is None:
        _store().add(conn)
    else:
        body = {f: getattr(conn, f) for f in EDITABLE}
        _refused(server.request("PUT", f"/api/connections/{quote(conn.id, safe='')}", json=body))
    click.echo(f"connected {repository} as {conn.id} (branch {branch})")


@connections.command("list")
@server_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_connections(url: str | None, key: str | None, as_json: bool) -> None:
    """Every connection, the env one (SYNC_REPOSITORY) first. Secrets are never shown."""
    server = server_or_storage(url, key)
    if server is None:
        docs = [c.describe() for c in _store().all()]
    else:
        docs = server.get_json("/api/connections", "connections route")
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
@server_options
def remove(conn_id: str, url: str | None, key: str | None) -> None:
    """Disconnect ID; its workspace's files are left as they are."""
    server = server_or_storage(url, key)
    if server is None:
        if not _store().remove(conn_id):
            raise UsageError(f"no stored connection {conn_id!r}")
    else:
        resp = server.request("DELETE", f"/api/connections/{quote(conn_id, safe='')}")
        if resp.status_code == 404:
            raise UsageError(f"no stored connection {conn_id!r}")
        _refused(resp)
    click.echo(f"removed {conn_id}")
