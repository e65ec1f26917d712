"""``sync.sync_workspace`` from a real git repository into every workspace store.

The truth about a commit comes from ``git archive`` (``tests.gitrepo``), not the engine.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from gitops_sync.adapters.azure_files import AzureFilesStore
from gitops_sync.adapters.git_source import GitSource
from gitops_sync.core.errors import CaseConflict, StorageError
from gitops_sync.core.model import MODE_EXEC, MODE_FILE, parent_dirs
from gitops_sync.ports import WorkspaceStore
from gitops_sync.sync import SyncResult, sync_workspace
from tests.contract.conftest import StoreCase, fast_retry
from tests.fakes.azure_files import FakeShare
from tests.gitrepo import Repo, expected_files


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


def sync(repo: Repo, store: WorkspaceStore, ref: str = "main") -> SyncResult:
    source = GitSource(str(repo.path), cache_dir=repo.path.parent / "cache")
    return sync_workspace(source, ref, store)


def store_files(store: WorkspaceStore) -> dict[str, tuple[bytes, bool]]:
    """Every file the store lists, read back through the store, with its executable bit."""
    out = {}
    for path, entry in store.list().files.items():
        assert "file" == entry.kind, path
        data = b"".join(store.read_chunks(path))
        out[path] = (data, store.hash_file(path).mode == MODE_EXEC)
    return out


def assert_exact(repo: Repo, commit: str, store: WorkspaceStore) -> None:
    """The store holds exactly the commit's files, and no directory beyond their parents."""
    want = expected_files(repo.path, commit)
    assert want == store_files(store)
    assert {d for p in want for d in parent_dirs(p)} == store.list().dirs


def first_tree(repo: Repo) -> str:
    repo.write("README.md", "hello\n")
    repo.write("src/app.py", "print(1)\n" * 40)
    repo.write("src/pkg/helpers.py", "x = 1\n")
    repo.write("bin/run.sh", "#!/bin/sh\necho run\n", executable=True)
    repo.write(".github/workflows/ci.yml", "on: push\n")
    repo.write("data/blob.bin", os.urandom(200_000))
    repo.write("empty.txt", "")
    return repo.commit("first")


def test_first_sync_then_nothing_to_do(repo: Repo, store_case: StoreCase):
    """A first sync writes the tree exactly; a second sync of it writes 0 bytes."""
    commit = first_tree(repo)
    store = store_case.store
    first = sync(repo, store)
    assert_exact(repo, commit, store)
    assert (commit, 6, 0) == (first.commit, first.counts["added"], first.counts["deleted"])
    assert sum(len(d) for d, _ in expected_files(repo.path, commit).values()) == (
        first.bytes_written
    )
    second = sync(repo, store)
    assert 0 == second.bytes_written
    assert {"added": 0, "updated": 0, "deleted": 0, "unchanged": 6} == second.counts
    assert_exact(repo, commit, store)


def test_drift_is_repaired(repo: Repo, store_case: StoreCase):
    """Files edited (same size), added or deleted by hand, and a mode flipped, are put back."""
    commit = first_tree(repo)
    store = store_case.store
    sync(repo, store)
    store.write_file("README.md", MODE_FILE, [b"HELLO\n"])  # same size, other bytes
    store.set_mode("src/app.py", MODE_EXEC)
    store.write_file("stray/extra.txt", MODE_FILE, [b"not in git"])
    store.delete_file("src/pkg/helpers.py")
    result = sync(repo, store)
    assert_exact(repo, commit, store)
    assert {"added": 1, "updated": 2, "deleted": 1, "unchanged": 3} == result.counts
    assert len("hello\n") + len("x = 1\n") == result.bytes_written


def test_drift_through_the_directory(repo: Repo, store_case: StoreCase):
    """On a directory workspace, edits made with ordinary file calls are repaired too."""
    if store_case.root is None:
        pytest.skip("only a directory store can be edited outside the store")
    commit = first_tree(repo)
    sync(repo, store_case.store)
    root = store_case.root
    (root / "README.md").write_text("HELLO\n")
    (root / "src" / "pkg" / "helpers.py").unlink()
    (root / "new").mkdir()
    os.chmod(root / "bin" / "run.sh", 0o644)
    sync(repo, store_case.store)
    assert_exact(repo, commit, store_case.store)


def test_file_and_directory_swap(repo: Repo, store_case: StoreCase):
    """A file that becomes a directory, and a directory that becomes a file, both land."""
    repo.write("thing", "a file\n")
    repo.write("tree/inner/leaf.txt", "leaf\n")
    sync(repo, store_case.store, repo.commit("before"))
    repo.remove("thing")
    repo.remove("tree")
    repo.write("thing/now-a-dir.txt", "inside\n")
    repo.write("tree", "now a file\n")
    commit = repo.commit("after")
    sync(repo, store_case.store)
    assert_exact(repo, commit, store_case.store)


def test_exec_bit_change(repo: Repo, store_case: StoreCase):
    """A mode-only change in git is applied without rewriting the bytes."""
    repo.write("tool.sh", "#!/bin/sh\n")
    sync(repo, store_case.store, repo.commit("plain"))
    os.chmod(repo.path / "tool.sh", 0o755)
    commit = repo.commit("executable")
    result = sync(repo, store_case.store)
    assert_exact(repo, commit, store_case.store)
    assert (1, 0) == (result.counts["updated"], result.bytes_written)
    assert MODE_EXEC == store_case.store.hash_file("tool.sh").mode


def test_sync_onto_a_workspace_with_unrelated_content(repo: Repo, store_case: StoreCase):
    """Without a manifest, whatever the workspace held is replaced by exactly the tree."""
    commit = first_tree(repo)
    store = store_case.store
    store.check_writable()
    store.write_file("README.md", MODE_FILE, [b"hello\n"])  # already right: kept, not rewritten
    store.write_file("src/app.py", MODE_FILE, [b"wrong"])
    store.write_file("old/junk.txt", MODE_FILE, [b"junk"])
    result = sync(repo, store)
    assert_exact(repo, commit, store)
    assert ["README.md"] == [f.path for f in result.plan.unchanged]


# ------------------------------------------------------- case-insensitive stores
def case_insensitive(store_case: StoreCase) -> WorkspaceStore:
    if not store_case.store.case_insensitive:
        pytest.skip("the store is case-sensitive")
    return store_case.store


def test_case_only_rename_keeps_the_file(repo: Repo, store_case: StoreCase):
    """``readme.md`` -> ``README.md`` (and a directory's case) ends with the new spelling."""
    store = case_insensitive(store_case)
    repo.write("readme.md", "read me\n")
    repo.write("Docs/guide.md", "guide\n")
    sync(repo, store, repo.commit("lower"))
    repo.git("mv", "readme.md", "README.md")
    repo.git("mv", "Docs", "docs-tmp")
    repo.git("mv", "docs-tmp", "docs")
    commit = repo.commit("upper")
    sync(repo, store)
    assert_exact(repo, commit, store)
    assert 0 == sync(repo, store).bytes_written


def test_case_change_with_content_and_kind_changes(repo: Repo, store_case: StoreCase):
    """A case change that also edits a file, or turns a file into a directory, lands exactly."""
    store = case_insensitive(store_case)
    repo.write("Notes", "a file\n")
    repo.write("lib/Util.py", "v1\n")
    sync(repo, store, repo.commit("before"))
    repo.remove("Notes")
    repo.remove("lib")
    repo.write("NOTES/today.md", "now a directory\n")
    repo.write("Lib/util.py", "v2 is longer\n")
    commit = repo.commit("after")
    sync(repo, store)
    assert_exact(repo, commit, store)


def test_paths_differing_only_in_case_are_refused(repo: Repo, store_case: StoreCase):
    """Two paths differing only in case raise CaseConflict before anything is written."""
    store = case_insensitive(store_case)
    repo.write("keep.txt", "k\n")
    first = repo.commit("first")
    sync(repo, store, first)
    repo.write("a.txt", "lower\n")
    repo.write("A.txt", "upper\n")
    repo.commit("clash")
    with pytest.raises(CaseConflict, match=r"a\.txt"):
        sync(repo, store)
    assert_exact(repo, first, store)
    assert first in (store.read_meta("manifest.json") or b"").decode()


# ------------------------------------------- Azure Files: what goes over the wire
def test_azure_sync_requests(repo: Repo, azure_files_share: FakeShare):
    """A first sync sends create + range + rename per file and one Create Directory per
    directory; a second sync only lists directories and reads no file but the manifest."""
    paths = [f"d{i % 4}/sub{i % 3}/f{i}.txt" for i in range(40)]
    for i, path in enumerate(paths):
        repo.write(path, f"file {i}\n")
    repo.commit("many")
    dirs = {d for p in paths for d in parent_dirs(p)}
    service = azure_files_share.service
    store = AzureFilesStore.from_connection_string(
        azure_files_share.connection_string, azure_files_share.share
    )
    sync(repo, store)
    calls = Counter((method, op) for method, op, _ in service.requests)
    made = Counter(path for method, op, path in service.requests if op == "directory")
    files = len(paths) + 1  # and the manifest
    assert files == calls[("PUT", "")] == calls[("PUT", "range")] == calls[("PUT", "rename")]
    assert dirs | {".gitops-sync", ".gitops-sync/tmp"} == set(made)
    assert {1} == set(made.values())

    service.requests.clear()
    assert 0 == sync(repo, store).bytes_written
    reads = [p for m, op, p in service.requests if (m, op) == ("GET", "")]
    listed = [p for m, op, p in service.requests if (m, op) == ("GET", "list")]
    assert [".gitops-sync/manifest.json"] == reads
    assert dirs | {""} <= set(listed)


def test_azure_interrupted_sync_is_repaired(repo: Repo, azure_files_share: FakeShare):
    """A sync that fails midway (the service keeps erroring) leaves only whole files, and the
    next sync completes the tree exactly."""
    commit = first_tree(repo)
    store = AzureFilesStore.from_connection_string(
        azure_files_share.connection_string, azure_files_share.share, retry_policy=fast_retry()
    )
    azure_files_share.service.fail(500, "InternalError", times=20, path_contains="src/")
    with pytest.raises(StorageError):
        sync(repo, store)
    want = expected_files(repo.path, commit)
    partial = store_files(store)
    assert partial.items() <= want.items()
    assert "src/app.py" not in partial
    azure_files_share.service.faults.clear()
    sync(repo, store)
    assert_exact(repo, commit, store)
