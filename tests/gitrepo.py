"""A real git repository for tests, and the independent truth about what a commit holds."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

EXCLUDED_PREFIXES = (".github/", ".gitops-sync/")


class Repo:
    """A non-bare repository built commit by commit with real ``git``."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", branch)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.path, check=True, capture_output=True, text=True
        ).stdout.strip()

    def write(self, rel: str, data: bytes | str, executable: bool = False) -> None:
        full = self.path / rel
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(full, 0o755 if executable else 0o644)

    def remove(self, rel: str) -> None:
        self.git("rm", "-r", "-q", "--", rel)

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def expected_files(repo: Path, commit: str) -> dict[str, tuple[bytes, bool]]:
    """What a sync of COMMIT must produce, from ``git archive`` (independent of the engine)."""
    tar_bytes = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=repo, check=True, capture_output=True
    ).stdout
    out: dict[str, tuple[bytes, bool]] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar.getmembers():
            if not member.isfile() or member.name.startswith(EXCLUDED_PREFIXES):
                continue
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            out[member.name] = (data, bool(member.mode & 0o100))
    return out


def workspace_files(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Every regular file under ROOT except ``.gitops-sync/``, with its executable bit."""
    out: dict[str, tuple[bytes, bool]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != ".gitops-sync"]
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                out[rel] = (Path(full).read_bytes(), bool(st.st_mode & stat.S_IXUSR))
            else:
                out[rel] = (b"<not a regular file>", False)
    return out


def empty_dirs(root: Path) -> list[str]:
    """Directories under ROOT (outside ``.gitops-sync/``) that hold nothing."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel.split(os.sep)[0] == ".gitops-sync":
            continue
        if rel != "." and not dirnames and not filenames:
            found.append(rel)
    return found
