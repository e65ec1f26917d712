"""``.gitops-sync-dev/``: what ``dev`` made up for a settings-free demo, for ``webhook send``.

A throwaway git repository, a webhook secret and an API key (reused across runs),
and ``dev.json`` saying where the running stack listens. Written atomically, 0600.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Any

DEV_DIR = ".gitops-sync-dev"
STATE = "dev.json"
DEMO_REPOSITORY = "local/demo"

_DEMO_FILES = {
    "README.md": "# demo\n\nA throwaway repository made by `gitops-sync dev`.\n",
    "config/app.yaml": "replicas: 2\nlog_level: info\n",
    "functions/hello/function.toml": 'runtime = "python3.11"\nhandler = "main.handle"\n',
    "functions/hello/main.py": (
        'def handle(event, context):\n    return {"hello": event.get("name", "world")}\n'
    ),
}


def dev_dir(base: Path | None = None) -> Path:
    return (base or Path.cwd()) / DEV_DIR


def read_state(base: Path | None = None) -> dict[str, Any]:
    """The last ``dev`` run's state, or ``{}`` when there is none (or it is unreadable)."""
    try:
        doc = json.loads((dev_dir(base) / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def find_state(start: Path | None = None, *, running: bool = False) -> dict[str, Any]:
    """The state in this folder or the nearest parent that has one, or ``{}``.

    ``running``: only the state of a ``dev`` whose process is still alive (its ``pid``).
    """
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        if (dev_dir(folder) / STATE).is_file():
            state = read_state(folder)
            if running and not _alive(state.get("pid")):
                return {}
            return state
    return {}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_state(state: dict[str, Any], base: Path | None = None) -> Path:
    """Replace ``dev.json`` atomically, readable by its owner only (it holds the demo secret)."""
    folder = dev_dir(base)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".dev-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, folder / STATE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / STATE


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def ensure_demo_repo(base: Path | None = None, branch: str = "main") -> Path:
    """A small non-bare repository with one commit on ``branch`` (kept if it exists)."""
    repo = dev_dir(base) / "demo-repo"
    if (repo / ".git").is_dir():
        return repo
    # Built beside its final name, then renamed: never a half-made repository.
    dev_dir(base).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dev_dir(base), prefix=".demo-repo-"))
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "gitops-sync dev",
        "GIT_AUTHOR_EMAIL": "dev@gitops-sync.invalid",
        "GIT_COMMITTER_NAME": "gitops-sync dev",
        "GIT_COMMITTER_EMAIL": "dev@gitops-sync.invalid",
    }
    for rel, text in _DEMO_FILES.items():
        path = staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=staging, env=env, check=True, capture_output=True)

    git("init", "-q", "-b", branch)
    git("add", "-A")
    git("commit", "-q", "-m", "demo: first commit")
    os.replace(staging, repo)
    return repo


def local_head(repo_url: str, branch: str) -> str | None:
    """The commit at ``branch`` of a repository given as a local path; None for URLs."""
    if "://" in repo_url or repo_url.startswith("git@"):
        return None
    path = repo_url.removeprefix("file://")
    if not Path(path).exists():
        return None
    done = subprocess.run(
        ["git", "-C", path, "rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def commit_details(repo_path: str, commit: str) -> dict[str, Any]:
    """Author, message, parent and changed paths of ``commit`` (for a realistic push body)."""
    fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%cn%x00%ce%x00%aI%x00%B"
    out = subprocess.run(
        ["git", "-C", repo_path, "show", "-s", f"--format={fmt}", commit],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return {}
    full, tree, parents, an, ae, cn, ce, when, message = out.stdout.split("\x00", 8)
    parent = parents.split()[0] if parents.split() else None
    changes: dict[str, list[str]] = {"added": [], "removed": [], "modified": []}
    diff_args = [parent, full] if parent else ["--root", full]
    diff = subprocess.run(
        ["git", "-C", repo_path, "diff-tree", "-r", "--no-commit-id", "--name-status", *diff_args],
        capture_output=True,
        text=True,
    )
    kinds = {"A": "added", "D": "removed"}
    for line in diff.stdout.splitlines():
        status, _, path = line.partition("\t")
        changes[kinds.get(status[:1], "modified")].append(path)
    return {
        "id": full,
        "tree_id": tree,
        "parent": parent,
        "author": {"name": an, "email": ae},
        "committer": {"name": cn, "email": ce},
        "timestamp": when,
        "message": message.strip(),
        **changes,
    }
