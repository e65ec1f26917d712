"""On a terminal, a long sync shows progress on stderr; stdout stays clean."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from tests.gitrepo import Repo


def run_with_tty_stderr(args: list[str]) -> tuple[int, str, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "COLUMNS": "100"}
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.stdout is not None
    with proc.stdout:
        out = proc.stdout.read().decode()
    proc.wait()
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode("utf-8", "replace")


def test_progress_on_a_terminal_and_clean_json(tmp_path):
    """A sync of hundreds of files draws a progress bar on the terminal; --json stays parseable."""
    repo = Repo(tmp_path / "repo")
    for i in range(300):
        repo.write(f"d{i % 7}/f{i}.txt", f"{i}\n" * 100)
    commit = repo.commit("A")
    cmd = [sys.executable, "-m", "gitops_sync", "sync", "--repo", str(repo.path), "--ref", "main"]
    code, out, term = run_with_tty_stderr([*cmd, "--workspace", str(tmp_path / "ws"), "--json"])
    assert 0 == code
    assert "syncing" in term
    assert "/300 files" in term  # the bar counts files, not bytes
    assert commit == json.loads(out)["commit"]
    code, out, term = run_with_tty_stderr([*cmd, "--workspace", str(tmp_path / "ws2")])
    assert 0 == code
    assert out.startswith(f"synced {commit[:12]}: 300 added")
