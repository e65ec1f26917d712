"""The local-stack commands' failure paths and the push they send: one clear line, no traceback."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from gitops_sync.cli.webhook_cmd import push_payload, sign
from gitops_sync.core import webhook as wh
from tests.e2e.local_stack_support import GITOPS_SYNC, base_env, free_port
from tests.gitrepo import Repo


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GITOPS_SYNC, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [x for x in done.stderr.splitlines() if x.startswith("gitops-sync: error:")]
    assert 1 == len(lines), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "extra_env", "message"),
    [
        (["webhook", "send"], {}, "no webhook secret"),
        (
            ["webhook", "send", "--secret", "s3cret-value", "--url", "http://127.0.0.1:{port}"],
            {"SYNC_REPOSITORY": "acme/site", "SYNC_REPO_URL": "https://example.com/acme/site.git"},
            "cannot read the head of 'main'",
        ),
        (
            ["webhook", "send", "--secret", "s3cret-value", "--url", "http://127.0.0.1:{port}"],
            {"SYNC_REPOSITORY": "acme/site"},
            "cannot read the head",
        ),
        (
            ["webhook", "send", "--event", "ping", "--secret", "s3cret-value", "--url",
             "http://127.0.0.1:{port}"],
            {},
            "cannot reach http://127.0.0.1:{port}: connection refused",
        ),
    ],
    ids=["no-secret", "remote-repo-needs-commit", "no-repo-url", "nobody-listening"],
)  # fmt: skip
def test_webhook_send_failures_are_one_line(
    tmp_path: Path, args: list[str], extra_env: dict[str, str], message: str
) -> None:
    """webhook send without what it needs, or with no server, exits non-zero with one line."""
    port = str(free_port())
    done = _run(
        [a.replace("{port}", port) for a in args], base_env(tmp_path, **extra_env), tmp_path
    )
    assert 0 != done.returncode
    assert message.replace("{port}", port) in _one_error_line(done)
    assert "s3cret-value" not in done.stderr + done.stdout


@pytest.mark.parametrize("command", ["serve", "dev"])
def test_taken_port_is_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    """serve/dev on a port already taken exit 2 with one line naming the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run([command, "--port", str(port)], base_env(tmp_path), tmp_path)
    assert 2 == done.returncode
    assert f"port {port}" in _one_error_line(done)


def test_pushed_payload_is_signed_and_describes_the_local_commit(tmp_path: Path) -> None:
    """The push body names the branch head, its parent and changed paths; the signature verifies."""
    from gitops_sync.local.devstate import commit_details, local_head

    repo = Repo(tmp_path / "repo")
    repo.write("a.txt", "a")
    parent = repo.commit("one")
    repo.write("b.txt", "b")
    repo.remove("a.txt")
    head = repo.commit("two: add b")
    assert head == local_head(str(repo.path), "main")
    assert local_head(str(repo.path), "nope") is None
    payload = push_payload("acme/site", "main", head, commit_details(str(repo.path), head))
    body = json.dumps(payload).encode()
    assert wh.signature_valid("k3y-value", body, sign("k3y-value", body))
    push = wh.parse_push(payload)
    assert (push.ref, push.after, push.repository) == ("refs/heads/main", head, "acme/site")
    assert parent == payload["before"]
    assert ["b.txt"] == payload["head_commit"]["added"]
    assert ["a.txt"] == payload["head_commit"]["removed"]
    assert "two: add b" == payload["head_commit"]["message"]
