"""``gitops-sync download`` against a real ``gitops-sync serve``: result, refusals, errors."""

from __future__ import annotations

import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gitops_sync.adapters.dir_store import DirectoryStore
from tests.archive_support import API_KEY, Ctx, live_server, sync
from tests.e2e.local_stack_support import GITOPS_SYNC, StackProcess, base_env, free_port
from tests.gitrepo import Repo, expected_files

KEY = "download-test-key-42"


@dataclass
class Served:
    url: str
    repo: Repo
    commit: str
    workspace: Path
    tmp: Path


@pytest.fixture
def served(tmp_path: Path, storage: str) -> Iterator[Served]:
    repo = Repo(tmp_path / "repo")
    repo.write("README.md", "# demo\n")
    repo.write("bin/go.sh", "#!/bin/sh\necho go\n", executable=True)
    repo.write("src/data.csv", "".join(f"{i},{i * i}\n" for i in range(20_000)))
    commit = repo.commit("first")
    ws = tmp_path / "ws"
    sync(repo.path, commit, ws, tmp_path / "cache")
    port = free_port()
    env = base_env(
        tmp_path,
        AzureWebJobsStorage=storage,
        WORKSPACE_ROOT=str(ws),
        GITOPS_SYNC_API_KEY=KEY,
        SYNC_REPOSITORY="octo/demo",
    )
    proc = StackProcess(["serve", "--port", str(port)], env, tmp_path)
    try:
        proc.wait_for(r"listening on")
        yield Served(f"http://127.0.0.1:{port}", repo, commit, ws, tmp_path)
    finally:
        proc.terminate()
        proc.close()


def _download(
    args: list[str], cwd: Path, key: str | None = KEY
) -> subprocess.CompletedProcess[str]:
    env = base_env(cwd)
    if key is not None:
        env["GITOPS_SYNC_API_KEY"] = key
    return subprocess.run(
        [GITOPS_SYNC, "download", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def test_download_writes_a_checked_zip_of_the_workspace(served: Served) -> None:
    """The CLI saves a ZIP that extracts to exactly the synced files, and says what it got."""
    out = served.tmp / "ws.zip"
    done = _download(["-o", str(out), "--url", served.url], served.tmp)
    assert done.returncode == 0, done.stderr
    assert f"commit {served.commit[:12]}" in done.stdout
    with zipfile.ZipFile(out) as zf:
        got = {
            i.filename: (zf.read(i), bool((i.external_attr >> 16) & 0o100)) for i in zf.infolist()
        }
    assert got == expected_files(served.repo.path, served.commit)
    assert _leftovers(served.tmp) == []


def test_an_existing_file_is_kept_without_force(served: Served) -> None:
    """Without --force an existing file is left alone; with it, it is replaced by the ZIP."""
    out = served.tmp / "ws.zip"
    out.write_bytes(b"precious")
    refused = _download(["-o", str(out), "--url", served.url], served.tmp)
    assert refused.returncode != 0
    assert refused.stderr.strip().count("\n") == 0
    assert "--force" in refused.stderr
    assert out.read_bytes() == b"precious"
    forced = _download(["-o", str(out), "--url", served.url, "--force"], served.tmp)
    assert forced.returncode == 0, forced.stderr
    assert zipfile.is_zipfile(out)


@pytest.mark.parametrize(
    ("key", "flag"), [(None, []), ("wrong", []), (None, ["--key", "wrong-too"])],
    ids=["missing", "wrong-env", "wrong-flag"],
)  # fmt: skip
def test_missing_or_wrong_key_is_one_clear_line(
    served: Served, key: str | None, flag: list[str]
) -> None:
    """The server answers 401; the CLI says so in one line, writes nothing and leaks no key."""
    out = served.tmp / "ws.zip"
    done = _download(["-o", str(out), "--url", served.url, *flag], served.tmp, key=key)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "401" in done.stderr
    assert "wrong" not in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and _leftovers(served.tmp) == []
    bare = httpx.get(f"{served.url}/api/workspace/archive", headers={"x-functions-key": "bad"})
    assert (bare.status_code, bare.content) == (401, b"")


def test_connection_refused_is_one_clear_line(tmp_path: Path) -> None:
    """Nothing listening: one line naming the problem, no file."""
    out = tmp_path / "ws.zip"
    done = _download(["-o", str(out), "--url", f"http://127.0.0.1:{free_port()}"], tmp_path)
    assert done.returncode != 0
    assert "connection refused" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() and _leftovers(tmp_path) == []


def test_a_broken_transfer_leaves_no_file(served: Served) -> None:
    """A workspace that no longer matches its manifest breaks the stream; nothing is saved."""
    (served.workspace / "src/data.csv").write_text("edited by hand\n")
    out = served.tmp / "ws.zip"
    done = _download(["-o", str(out), "--url", served.url], served.tmp)
    assert done.returncode != 0
    assert "broke off" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() and _leftovers(served.tmp) == []


def test_never_synced_workspace_is_a_clear_404(tmp_path: Path, storage: str) -> None:
    """Before any sync the CLI reports that there is nothing to download yet."""
    port = free_port()
    env = base_env(tmp_path, AzureWebJobsStorage=storage, WORKSPACE_ROOT=str(tmp_path / "empty"),
                   GITOPS_SYNC_API_KEY=KEY)  # fmt: skip
    proc = StackProcess(["serve", "--port", str(port)], env, tmp_path)
    try:
        proc.wait_for(r"listening on")
        done = _download(["-o", str(tmp_path / "ws.zip"), "--url", f"http://127.0.0.1:{port}"],
                         tmp_path)  # fmt: skip
    finally:
        proc.terminate()
        proc.close()
    assert done.returncode != 0
    assert "404" in done.stderr and "not been synced" in done.stderr
    assert not (tmp_path / "ws.zip").exists()


def test_connection_option_downloads_that_workspace(tmp_path: Path) -> None:
    """``--connection ID`` fetches that connection's workspace, not the default one."""
    first, second = Repo(tmp_path / "r1"), Repo(tmp_path / "r2")
    first.write("one.txt", "1\n")
    second.write("two.txt", "2\n")
    c1, c2 = first.commit("one"), second.commit("two")
    sync(first.path, c1, tmp_path / "ws1", tmp_path / "cache")
    sync(second.path, c2, tmp_path / "ws2", tmp_path / "cache")
    ctx = Ctx(DirectoryStore(tmp_path / "ws1"))
    ctx.connections.extra["two"] = ("octo/two", DirectoryStore(tmp_path / "ws2"))
    out = tmp_path / "two.zip"
    with live_server(ctx) as base:
        done = _download(
            ["-o", str(out), "--url", base, "--connection", "two"], tmp_path, key=API_KEY
        )
    assert done.returncode == 0, done.stderr
    assert f"commit {c2[:12]}" in done.stdout
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["two.txt"]
