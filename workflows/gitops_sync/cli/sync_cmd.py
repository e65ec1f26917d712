"""``gitops-sync sync``: one-shot reconcile of a directory to a commit's tree."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from ..core.errors import UsageError
from ._format import human_bytes

if TYPE_CHECKING:
    from rich.progress import TaskID


class _RichProgress:
    """Files and bytes written, on a terminal (stderr), via rich; short syncs draw nothing."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("syncing"),
            BarColumn(),
            TextColumn("{task.fields[done]}/{task.fields[files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: TaskID | None = None
        self._done = 0

    def start(self, files: int, total_bytes: int) -> None:
        if files < 200 and total_bytes < 20 << 20:
            return
        self._bar.start()
        self._task = self._bar.add_task("sync", total=total_bytes or 1, done=0, files=files)

    def advance(self, files: int, nbytes: int) -> None:
        if self._task is not None:
            self._done += files
            self._bar.update(self._task, advance=nbytes, done=self._done)

    def finish(self) -> None:
        if self._task is not None:
            self._bar.stop()


@click.command()
@click.option("--repo", "repo", required=True, help="Repository: URL or local path (bare or not).")
@click.option("--ref", required=True, help="Branch, tag or commit to sync.")
@click.option("--workspace", required=True, help="Directory to make hold exactly REF's files.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def sync(repo: str, ref: str, workspace: str, dry_run: bool, as_json: bool) -> None:
    """Reconcile WORKSPACE to the tree of REF of REPO (needs no storage service)."""
    from ..adapters.dir_store import DirectoryStore
    from ..adapters.git_source import GitSource
    from ..settings import Settings
    from ..sync import sync_workspace

    if not workspace.strip():
        raise UsageError("--workspace is empty")
    settings = Settings.from_env()
    source = GitSource(repo, cache_dir=settings.cache_dir, token=settings.git_token)
    store = DirectoryStore(workspace)
    progress = _RichProgress() if sys.stderr.isatty() and not dry_run else None
    if dry_run:
        result = sync_workspace(source, ref, store, dry_run=True)
    else:
        store.check_writable()
        with store.lock():
            result = sync_workspace(source, ref, store, progress=progress)

    if as_json:
        doc = result.as_json()
        if dry_run:
            p = result.plan
            doc["dry_run"] = True
            doc["plan"] = {
                "add": [f.path for f in p.add],
                "update": [f.path for f in p.update] + [f.path for f in p.chmod],
                "delete": p.blocking_files + p.delete,
                "rename": [list(r) for r in p.renames],
            }
        click.echo(json.dumps(doc))
        return
    if dry_run:
        p = result.plan
        for old, new in p.renames:
            click.echo(f"R {old} -> {new}")
        for f in p.add:
            click.echo(f"+ {f.path}")
        for f in p.update:
            click.echo(f"~ {f.path}")
        for f in p.chmod:
            click.echo(f"m {f.path} (mode {f.mode & 0o777:o})")
        for path in p.blocking_files + p.delete:
            click.echo(f"- {path}")
    for s in result.plan.skipped:
        click.echo(f"skipped {s.path}: {s.reason}", err=True)
    c = result.counts
    verb = "would sync" if dry_run else "synced"
    written = human_bytes(result.plan.bytes_to_write if dry_run else result.bytes_written)
    fn = result.functions
    fn_part = ""
    if fn.changed or fn.unchanged or fn.invalid:
        fn_part = (
            f"; functions: {len(fn.changed)} changed, {len(fn.unchanged)} unchanged,"
            f" {len(fn.invalid)} invalid"
        )
    click.echo(
        f"{verb} {result.commit[:12]}: {c['added']} added, {c['updated']} updated,"
        f" {c['deleted']} deleted, {c['unchanged']} unchanged, {written}"
        f" {'to write' if dry_run else 'written'} in {result.duration_s:.2f}s{fn_part}"
    )
    for inv in fn.invalid:
        click.echo(f"invalid function: {inv['error']}", err=True)
