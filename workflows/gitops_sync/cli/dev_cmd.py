"""``gitops-sync dev``: the whole stack on one machine (Azurite, HTTP API, queue worker).

With no settings at all it still gives a working demo: a throwaway repository,
webhook secret and API key under ``.gitops-sync-dev/``, where ``webhook send`` finds them.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from ..local import devstate
from ..settings import Settings
from .serve_cmd import run_stack, say


def _dev_env(workspace: str | None) -> tuple[dict[str, str], dict[str, Any], list[str]]:
    """The environment ``dev`` runs with, what to remember in dev.json, and notes to print."""
    env = dict(os.environ)
    state = devstate.read_state()
    remember: dict[str, Any] = {}
    notes: list[str] = []
    if not env.get("SYNC_REPOSITORY") and not env.get("SYNC_REPO_URL"):
        repo = devstate.ensure_demo_repo(branch=env.get("SYNC_BRANCH") or "main")
        env["SYNC_REPOSITORY"] = devstate.DEMO_REPOSITORY
        env["SYNC_REPO_URL"] = str(repo)
        remember.update(repository=env["SYNC_REPOSITORY"], repo_url=str(repo))
        notes.append(f"SYNC_REPOSITORY is unset: using the demo repository {_rel(repo)}")
    elif not env.get("SYNC_REPOSITORY"):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(env["SYNC_REPO_URL"]).name) or "repo"
        env["SYNC_REPOSITORY"] = f"local/{name.removesuffix('.git')}"
        remember.update(repository=env["SYNC_REPOSITORY"], repo_url=env["SYNC_REPO_URL"])
        notes.append(
            f"SYNC_REPOSITORY is unset: calling {env['SYNC_REPO_URL']} {env['SYNC_REPOSITORY']}"
        )
    if not env.get("GITHUB_WEBHOOK_SECRET"):
        env["GITHUB_WEBHOOK_SECRET"] = state.get("secret") or devstate.new_secret()
        remember["secret"] = env["GITHUB_WEBHOOK_SECRET"]
        notes.append(f"GITHUB_WEBHOOK_SECRET is unset: using a generated one ({_state_rel()})")
    if not env.get("GITOPS_SYNC_API_KEY"):
        env["GITOPS_SYNC_API_KEY"] = state.get("api_key") or devstate.new_secret()
        remember["api_key"] = env["GITOPS_SYNC_API_KEY"]
        notes.append(f"GITOPS_SYNC_API_KEY is unset: using a generated one ({_state_rel()})")
    if workspace:
        env["WORKSPACE_ROOT"] = str(Path(workspace).absolute())
    elif not env.get("WORKSPACE_ROOT"):
        env["WORKSPACE_ROOT"] = str(Path("workspace").absolute())
        notes.append(f"WORKSPACE_ROOT is unset: syncing into {_rel(Path('workspace'))}")
    remember["branch"] = env.get("SYNC_BRANCH") or "main"
    return env, remember, notes


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path.absolute())
    except ValueError:
        return str(path)


def _command() -> str:
    """How to run gitops-sync from another shell here (``make dev`` leaves no venv active)."""
    exe = Path(sys.executable).parent / "gitops-sync"
    inside = exe.is_file() and Path.cwd() in exe.absolute().parents
    return _rel(exe) if inside else "gitops-sync"


def _state_rel() -> str:
    return _rel(devstate.dev_dir() / devstate.STATE)


@click.command()
@click.option("--port", default=7071, show_default=True, help="Port on 127.0.0.1 (0: any free).")
@click.option("--workspace", default=None, help="Directory to sync into (default WORKSPACE_ROOT).")
def dev(port: int, workspace: str | None) -> None:
    """Run Azurite, the HTTP API and the queue worker together, for trying things locally."""
    env, remember, notes = _dev_env(workspace)
    settings = Settings.from_env(env)
    own_azurite = not (
        env.get("AzureWebJobsStorage") or env.get("AzureWebJobsStorage__accountName")
    )
    for note in notes:
        say(f"gitops-sync dev: {note}")

    def ready(stack: Any) -> None:
        url = stack.url
        az = stack.azurite
        # Where this stack listens and keeps its data, for the other commands run here:
        # the emulator's ports are random: tools that want its storage read them here.
        where = {"url": url, "pid": os.getpid(), "workspace": str(settings.workspace_root)}
        if az is not None:
            where["storage"] = az.connection_string  # Azurite's well-known dev account
        devstate.write_state({**remember, **where})
        storage = (
            f"Azurite (blob {az.ports['blob']}, queue {az.ports['queue']},"
            f" table {az.ports['table']}, in memory)"
            if az is not None
            else "AzureWebJobsStorage"
        )
        say(f"gitops-sync dev: listening on {url}")
        say(f"  webhook    POST {url}/api/github/webhook")
        say(f"  repository {settings.repository} ({settings.repo_url}), branch {settings.branch}")
        say(f"  workspace  {settings.workspace_root}")
        say(f"  storage    {storage}; worker polling queue {settings.queue}")
        say(f"  API key    x-functions-key header (GITOPS_SYNC_API_KEY or {_state_rel()})")
        say("Send a test push from another shell, in this directory:")
        say(f"  {_command()} webhook send")
        if remember.get("repository") == devstate.DEMO_REPOSITORY:
            repo = _rel(Path(remember["repo_url"]))
            say("Then change the demo repository, push again, and watch the workspace:")
            say(f"  echo 'replicas: 3' > {repo}/config/app.yaml")
            say(f"  git -C {repo} commit -qam scale && {_command()} webhook send")
        say("Ctrl-C stops everything.")

    run_stack(
        settings,
        ready,
        http=True,
        worker=True,
        azurite=own_azurite,
        port=port,
        stop_with_parent=True,
    )
