"""``gitops-sync sync`` for click: its help and usage errors; the work is ``sync_run``'s.

Well-formed ``sync`` options never reach click (``cli.main`` runs ``sync_run``
directly); this command serves ``--help``, usage errors and the command list.
"""

from __future__ import annotations

import click

from .sync_run import SyncOptions, run


@click.command()
@click.option("--repo", "repo", required=True, help="Repository: URL or local path (bare or not).")
@click.option("--ref", required=True, help="Branch, tag or commit to sync.")
@click.option("--workspace", required=True, help="Directory to make hold exactly REF's files.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def sync(repo: str, ref: str, workspace: str, dry_run: bool, as_json: bool) -> None:
    """Reconcile WORKSPACE to the tree of REF of REPO (needs no storage service)."""
    run(SyncOptions(repo, ref, workspace, dry_run, as_json))
