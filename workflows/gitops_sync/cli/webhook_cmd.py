"""``gitops-sync webhook send``: sign and send a realistic GitHub push delivery, for trying things.

Settings come from the flags, then the environment, then ``.gitops-sync-dev/dev.json``
(what ``gitops-sync dev`` made up), so after ``make dev`` it needs no arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import click

from ..core.errors import UsageError
from ..core.webhook import sign
from ..local import devstate
from ._client import ServerError, connect, server_options

ZERO = "0" * 40
SECRET_SOURCES = "--secret, else GITHUB_WEBHOOK_SECRET, else .gitops-sync-dev/dev.json"  # noqa: S105


def push_payload(
    repository: str, branch: str, commit: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A push event body shaped like GitHub's (the fields receivers read, and then some)."""
    owner, _, name = repository.partition("/")
    details = details or {}
    html = f"https://github.com/{repository}"
    person = {"name": owner, "email": f"{owner}@users.noreply.github.com", "username": owner}
    head = {
        "id": commit,
        "tree_id": details.get("tree_id", ZERO),
        "distinct": True,
        "message": details.get("message", "(commit message unknown)"),
        "timestamp": details.get("timestamp") or datetime.now(UTC).isoformat(timespec="seconds"),
        "url": f"{html}/commit/{commit}",
        "author": {**person, **details.get("author", {})},
        "committer": {**person, **details.get("committer", {})},
        "added": details.get("added", []),
        "removed": details.get("removed", []),
        "modified": details.get("modified", []),
    }
    before = details.get("parent") or ZERO
    return {
        "ref": f"refs/heads/{branch}",
        "before": before,
        "after": commit,
        "created": before == ZERO,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": f"{html}/compare/{before[:12]}...{commit[:12]}",
        "commits": [head],
        "head_commit": head,
        "repository": {
            "id": int(hashlib.sha256(repository.encode()).hexdigest()[:8], 16),
            "name": name,
            "full_name": repository,
            "private": False,
            "owner": {"name": owner, "login": owner, "type": "User"},
            "html_url": html,
            "clone_url": f"{html}.git",
            "default_branch": branch,
            "master_branch": branch,
        },
        "pusher": {"name": owner, "email": person["email"]},
        "sender": {"login": owner, "type": "User"},
    }


def _pick(flag: str | None, env_name: str, state: dict[str, Any], key: str) -> str | None:
    return flag or os.environ.get(env_name) or state.get(key) or None


@click.group()
def webhook() -> None:
    """Send GitHub webhook deliveries to a running server."""


@webhook.command()
@server_options
@click.option(
    "--commit",
    default=None,
    help="Pushed commit (default: the branch head of a local SYNC_REPO_URL).",
)
@click.option("--secret", default=None, help="HMAC secret (default: GITHUB_WEBHOOK_SECRET).")
@click.option("--branch", default=None, help="Pushed branch (default: SYNC_BRANCH or main).")
@click.option("--repository", default=None, help="owner/name (default: SYNC_REPOSITORY).")
@click.option("--event", type=click.Choice(["push", "ping"]), default="push", show_default=True)
@click.option("--delivery", default=None, help="X-GitHub-Delivery id (default: a new UUID).")
@click.option("--json", "as_json", is_flag=True, help="Print only the answer's JSON body.")
def send(
    url: str | None,
    key: str | None,
    commit: str | None,
    secret: str | None,
    branch: str | None,
    repository: str | None,
    event: str,
    delivery: str | None,
    as_json: bool,
) -> None:
    """Sign a push (or ping) delivery with the webhook secret and send it; print the answer."""
    state = devstate.find_state()
    secret = _pick(secret, "GITHUB_WEBHOOK_SECRET", state, "secret")
    if not secret:
        raise UsageError("no webhook secret: pass --secret or set GITHUB_WEBHOOK_SECRET")
    # A full webhook URL is accepted too: its base is the server.
    server = connect(url.split("/api/", 1)[0] if url else None, key)
    branch = _pick(branch, "SYNC_BRANCH", state, "branch") or "main"
    delivery = delivery or str(uuid.uuid4())

    if event == "ping":
        payload: dict[str, Any] = {"zen": "Design for failure.", "hook_id": 1}
    else:
        repository = _pick(repository, "SYNC_REPOSITORY", state, "repository")
        if not repository:
            raise UsageError("no repository: pass --repository or set SYNC_REPOSITORY")
        repo_url = _pick(None, "SYNC_REPO_URL", state, "repo_url")
        details: dict[str, Any] = {}
        if not commit:
            commit = devstate.local_head(repo_url, branch) if repo_url else None
            if not commit:
                raise UsageError(
                    f"cannot read the head of {branch!r}: pass --commit SHA"
                    " (SYNC_REPO_URL is not a local repository with that branch)"
                )
        if repo_url and devstate.local_head(repo_url, branch) is not None:
            details = devstate.commit_details(repo_url.removeprefix("file://"), commit)
        payload = push_payload(repository, branch, commit, details)

    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/gitops-sync",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature-256": sign(secret, body),
    }
    answer = server.request("POST", "/api/github/webhook", content=body, headers=headers)
    text = answer.text.strip()
    if as_json:
        click.echo(text or "{}")
    else:
        click.echo(f"{answer.status_code} {text}".rstrip())
        if answer.status_code == 202:
            try:
                job_id = answer.json().get("job_id")
            except ValueError:
                job_id = None
            if job_id:
                click.echo(f"follow it: gitops-sync jobs show {job_id}", err=True)
    if answer.status_code == 401:
        raise ServerError(
            "the server refused the signature (401): the secret comes from"
            f" {SECRET_SOURCES}, and must equal the server's GITHUB_WEBHOOK_SECRET"
            " (or the secret setting of the repository's connection)"
        )
    if answer.status_code >= 400:
        raise SystemExit(1)
