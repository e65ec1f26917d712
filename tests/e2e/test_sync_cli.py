"""``gitops-sync sync`` as a real process on real repositories: the contract's sync behaviour."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gitrepo import Repo, empty_dirs, expected_files, workspace_files

CLI = [sys.executable, "-m", "gitops_sync"]


def run_sync(repo: str | Path, ref: str, ws: Path, *extra: str, env: dict | None = None):
    proc = subprocess.run(
        [*CLI, "sync", "--repo", str(repo), "--ref", ref, "--workspace", str(ws), *extra],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return proc


def sync_json(repo: str | Path, ref: str, ws: Path, **kw) -> dict:
    proc = run_sync(repo, ref, ws, "--json", **kw)
    assert 0 == proc.returncode, proc.stderr
    return json.loads(proc.stdout)


def assert_exact(repo: Repo, commit: str, ws: Path) -> None:
    assert expected_files(repo.path, commit) == workspace_files(ws)
    assert [] == empty_dirs(ws)


def build_history(repo: Repo) -> list[str]:
    """Commits exercising adds, deletes, renames, swaps, modes and case changes."""
    commits = []
    repo.write("README.md", "hello\n")
    repo.write("src/app.py", "print(1)\n" * 50)
    repo.write("src/util/helpers.py", "x = 1\n")
    repo.write("bin/run.sh", "#!/bin/sh\necho run\n", executable=True)
    repo.write(".github/workflows/ci.yml", "on: push\n")
    repo.write("data/blob.bin", os.urandom(300_000))
    commits.append(repo.commit("A"))
    # rename a file, delete one, change modes both ways
    repo.git("mv", "src/app.py", "src/main.py")
    repo.remove("src/util/helpers.py")
    os.chmod(repo.path / "bin/run.sh", 0o644)
    repo.write("tool.sh", "#!/bin/sh\n", executable=True)
    commits.append(repo.commit("B"))
    # file -> directory and directory -> file
    repo.remove("README.md")
    repo.write("README.md/index.md", "now a directory\n")
    repo.remove("data")
    repo.write("data", "now a file\n")
    commits.append(repo.commit("C"))
    # case-only rename and an empty-content file, plus a deep tree
    repo.git("mv", "src/main.py", "src/Main.py")
    repo.write("empty.txt", b"")
    for i in range(30):
        repo.write(f"deep/a/b/c/f{i}.txt", f"{i}\n" * i)
    commits.append(repo.commit("D"))
    # delete most of it
    repo.remove("deep")
    repo.write("src/Main.py", "print(2)\n")
    commits.append(repo.commit("E"))
    return commits


@pytest.mark.slow
def test_history_replay_in_order_is_exact_every_time(tmp_path):
    """Each commit of a history, synced in order, leaves exactly its files."""
    repo = Repo(tmp_path / "repo")
    commits = build_history(repo)
    ws = tmp_path / "ws"
    for commit in commits:
        report = sync_json(repo.path, commit, ws)
        assert commit == report["commit"]
        assert_exact(repo, commit, ws)
        again = sync_json(repo.path, commit, ws)
        assert 0 == again["bytes_written"]
        assert (0, 0, 0) == (again["added"], again["updated"], again["deleted"])


@pytest.mark.slow
def test_any_order_and_force_push_back_is_exact(tmp_path):
    """Syncs in a shuffled order, and a branch force-pushed back, each end exact."""
    repo = Repo(tmp_path / "repo")
    commits = build_history(repo)
    ws = tmp_path / "ws"
    order = commits * 2
    random.Random(7).shuffle(order)
    for commit in order:
        sync_json(repo.path, commit, ws)
        assert_exact(repo, commit, ws)
    repo.git("reset", "-q", "--hard", commits[1])  # force-push back to an old commit
    report = sync_json(repo.path, "main", ws)
    assert commits[1] == report["commit"]
    assert_exact(repo, commits[1], ws)


def test_counts_and_bytes_match_the_change(tmp_path):
    """An incremental sync reports what changed and writes exactly the changed bytes."""
    repo = Repo(tmp_path / "repo")
    for i in range(20):
        repo.write(f"f{i}.txt", f"v1 {i}\n")
    a = repo.commit("A")
    repo.write("f0.txt", "v2 changed\n")
    repo.write("new.txt", "brand new\n")
    repo.remove("f1.txt")
    b = repo.commit("B")
    ws = tmp_path / "ws"
    sync_json(repo.path, a, ws)
    report = sync_json(repo.path, b, ws)
    assert {"added": 1, "updated": 1, "deleted": 1, "unchanged": 18} == {
        k: report[k] for k in ("added", "updated", "deleted", "unchanged")
    }
    assert len("v2 changed\n") + len("brand new\n") == report["bytes_written"]


def test_hand_made_drift_is_repaired_on_the_same_commit(tmp_path):
    """Files edited (even with mtime restored), added, removed or re-moded by hand are put back."""
    repo = Repo(tmp_path / "repo")
    commit = build_history(repo)[0]
    ws = tmp_path / "ws"
    sync_json(repo.path, commit, ws)

    app = ws / "src/app.py"
    st = app.stat()
    app.write_bytes(b"X" * st.st_size)  # same size
    os.utime(app, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime
    (ws / "stray.txt").write_text("not in git")
    (ws / "stray-dir/sub").mkdir(parents=True)
    (ws / "README.md").unlink()
    os.chmod(ws / "bin/run.sh", 0o644)
    shutil.rmtree(ws / "src/util")
    os.symlink("/etc/passwd", ws / "src/util")

    report = sync_json(repo.path, commit, ws)
    assert_exact(repo, commit, ws)
    assert report["updated"] >= 2 and report["added"] >= 2 and report["deleted"] >= 1
    assert 0 == sync_json(repo.path, commit, ws)["bytes_written"]


def test_lost_manifest_is_rebuilt_by_hashing_without_rewriting(tmp_path):
    """With the manifest gone, identical files are verified by hash, not rewritten."""
    repo = Repo(tmp_path / "repo")
    commit = build_history(repo)[0]
    ws = tmp_path / "ws"
    sync_json(repo.path, commit, ws)
    shutil.rmtree(ws / ".gitops-sync")
    report = sync_json(repo.path, commit, ws)
    assert 0 == report["bytes_written"]
    assert_exact(repo, commit, ws)


def test_links_submodules_and_syncignore(tmp_path):
    """Symlinks and submodules are skipped and reported; .syncignore and .github/ are not synced."""
    repo = Repo(tmp_path / "repo")
    repo.write("a.txt", "a")
    repo.write("build/out.o", "obj")
    repo.write("notes.tmp", "tmp")
    repo.write(".syncignore", "build/\n*.tmp\n")
    repo.write(".github/x.yml", "x")
    repo.write(".gitops-sync/manifest.json", "{}")
    os.symlink("a.txt", repo.path / "link.txt")
    sub = Repo(tmp_path / "sub")
    sub.write("s.txt", "s")
    sub_commit = sub.commit("S")
    repo.git("add", "-A")
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{sub_commit},vendor/sub")
    repo.git("commit", "-q", "-m", "A")
    commit = repo.git("rev-parse", "HEAD")
    ws = tmp_path / "ws"
    report = sync_json(repo.path, commit, ws)
    assert {".syncignore", "a.txt"} == set(workspace_files(ws))
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert {".gitops-sync/manifest.json", "link.txt", "vendor/sub"} == set(reasons)
    assert "symbolic link" in reasons["link.txt"] and "submodule" in reasons["vendor/sub"]


def test_functions_changed_unchanged_invalid(tmp_path):
    """The JSON reports functions changed / unchanged / invalid against the last sync."""
    repo = Repo(tmp_path / "repo")
    toml = 'runtime = "python3.11"\nhandler = "main.handle"\n'
    repo.write("functions/orders/function.toml", toml)
    repo.write("functions/orders/main.py", "def handle(e, c): return e\n")
    repo.write("functions/billing/function.toml", toml + "memory_mb = 256\n")
    repo.write("functions/billing/main.py", "def handle(e, c): return {}\n")
    a = repo.commit("A")
    repo.write("functions/orders/main.py", "def handle(e, c): return {'v': 2}\n")
    repo.write("functions/broken/function.toml", toml + "timeout_seconds = 0\n")
    b = repo.commit("B")
    ws = tmp_path / "ws"
    first = sync_json(repo.path, a, ws)["functions"]
    assert (["billing", "orders"], []) == (first["changed"], first["unchanged"])
    second = sync_json(repo.path, b, ws)["functions"]
    assert (["orders"], ["billing"]) == (second["changed"], second["unchanged"])
    assert ["functions/broken/function.toml"] == [i["path"] for i in second["invalid"]]
    assert "timeout_seconds" in second["invalid"][0]["error"]


def test_dry_run_changes_nothing(tmp_path):
    """--dry-run prints the plan and leaves the workspace exactly as it was."""
    repo = Repo(tmp_path / "repo")
    repo.write("a.txt", "a")
    a = repo.commit("A")
    repo.write("b.txt", "b")
    b = repo.commit("B")
    ws = tmp_path / "ws"
    sync_json(repo.path, a, ws)
    before = workspace_files(ws), (ws / ".gitops-sync/manifest.json").read_bytes()
    proc = run_sync(repo.path, b, ws, "--dry-run")
    assert 0 == proc.returncode, proc.stderr
    assert "+ b.txt" in proc.stdout
    assert before == (workspace_files(ws), (ws / ".gitops-sync/manifest.json").read_bytes())
    fresh = tmp_path / "never-created"
    assert 0 == run_sync(repo.path, b, fresh, "--dry-run").returncode
    assert not fresh.exists()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown-ref", "unknown ref"),
        ("not-a-repo", "not a git repository"),
        ("missing-path", "no such file or directory"),
        ("unreachable-url", "file:///"),
        ("workspace-is-a-file", "not a directory"),
        ("bad-ref-syntax", "invalid ref"),
    ],
)
def test_failures_are_one_clear_line_and_leave_the_workspace(tmp_path, case, message):
    """Each failure exits non-zero with one stderr line, no traceback, workspace untouched."""
    repo = Repo(tmp_path / "repo")
    repo.write("a.txt", "a")
    repo.commit("A")
    ws = tmp_path / "ws"
    sync_json(repo.path, "main", ws)
    (ws / "hand.txt").write_text("drift that a failed sync must not touch")
    before = workspace_files(ws)
    plain = tmp_path / "plain"
    plain.mkdir()
    source, ref, target = str(repo.path), "main", ws
    if case == "unknown-ref":
        ref = "no-such-branch"
    elif case == "not-a-repo":
        source = str(plain)
    elif case == "missing-path":
        source = str(tmp_path / "nope")
    elif case == "unreachable-url":
        source = f"file://{tmp_path}/nope.git"
    elif case == "workspace-is-a-file":
        target = tmp_path / "afile"
        target.write_text("x")
    elif case == "bad-ref-syntax":
        ref = "--upload-pack=touch /tmp/pwned"
    proc = run_sync(source, ref, target, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert 0 != proc.returncode
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert 1 == len(lines), proc.stderr
    assert lines[0].startswith("gitops-sync: error: ")
    assert message in lines[0]
    assert before == workspace_files(ws)


def test_missing_argument_is_a_usage_error(tmp_path):
    """A missing option is exit code 2 with the usage, no traceback."""
    proc = subprocess.run([*CLI, "sync", "--repo", "x"], capture_output=True, text=True)
    assert 2 == proc.returncode
    assert "Missing option" in proc.stderr and "Traceback" not in proc.stderr


def test_url_source_uses_a_persistent_shallow_cache(tmp_path):
    """A file:// URL is fetched into the cache once; later syncs fetch only what is new."""
    upstream = Repo(tmp_path / "up")
    upstream.write("a.txt", "a")
    a = upstream.commit("A")
    url = f"file://{upstream.path}"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    ws = tmp_path / "ws"
    assert a == sync_json(url, "main", ws, env=env)["commit"]
    caches = list((tmp_path / "cache/gitops-sync/repos").iterdir())
    assert 1 == len(caches)
    assert (caches[0] / "shallow").exists()
    upstream.write("b.txt", "b")
    b = upstream.commit("B")
    assert b == sync_json(url, "main", ws, env=env)["commit"]
    assert_exact(upstream, b, ws)
    assert a == sync_json(url, a, ws, env=env)["commit"]  # by commit id
    upstream.git("tag", "v1", b)
    assert b == sync_json(url, "v1", ws, env=env)["commit"]  # by tag
    assert_exact(upstream, b, ws)
    assert caches == list((tmp_path / "cache/gitops-sync/repos").iterdir())


def test_token_never_appears_in_output(tmp_path):
    """GIT_TOKEN is used for fetching and never printed, even when the fetch fails."""
    token = "ghp_verysecrettokenvalue123"
    proc = run_sync(
        "https://127.0.0.1:9/o/r.git?access_token=zzz",
        "main",
        tmp_path / "ws",
        env={"GIT_TOKEN": token, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert 0 != proc.returncode
    assert token not in proc.stderr + proc.stdout
    assert "zzz" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_names_that_are_not_utf8_are_skipped_and_reported(tmp_path):
    """A tree entry whose name is not UTF-8 is reported as skipped; the rest syncs."""
    repo = Repo(tmp_path / "repo")
    repo.write("ok.txt", "ok")
    (repo.path / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"latin-1 name")
    commit = repo.commit("A")
    ws = tmp_path / "ws"
    report = sync_json(repo.path, commit, ws)
    assert {"ok.txt"} == set(workspace_files(ws))
    assert [("caf\\xe9.txt", "name is not valid UTF-8")] == [
        (s["path"], s["reason"]) for s in report["skipped"]
    ]


def test_awkward_but_valid_names_sync_byte_for_byte(tmp_path):
    """Non-ASCII, spaces, tabs, quotes and backslashes in names arrive unquoted and exact."""
    repo = Repo(tmp_path / "repo")
    names = ["ü.txt", "sp ace/f.txt", 'tab\tq"uote\\.txt', "日本/語.md", "-dash.txt"]
    for i, name in enumerate(names):
        repo.write(name, f"content {i}\n")
    commit = repo.commit("A")
    ws = tmp_path / "ws"
    report = sync_json(repo.path, commit, ws)
    assert [] == report["skipped"]
    assert_exact(repo, commit, ws)
