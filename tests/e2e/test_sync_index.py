"""The git-index path of the sync on a directory: only changes are read, every crash repairs.

Real git repositories and real folders; the truth comes from ``git archive``
(``tests.gitrepo``) and ``git ls-tree``, not from the engine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from gitops_sync import sync_index
from gitops_sync.adapters import git_index
from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.adapters.git_source import GitSource
from gitops_sync.core.errors import WorkspaceNotWritable
from gitops_sync.core.manifest import loads
from gitops_sync.core.model import Content, Listing
from gitops_sync.sync import SyncResult, sync_workspace
from tests.gitrepo import Repo, empty_dirs, expected_files, workspace_files


class CountingStore(DirectoryStore):
    """A directory store that records which paths the sync looked at and hashed."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.observed: list[str] = []
        self.hashed: list[str] = []
        self.listed = 0

    def observe(self, paths: Iterable[str]) -> Listing:
        paths = list(paths)
        self.observed.extend(paths)
        return super().observe(paths)

    def hash_file(self, path: str) -> Content:
        self.hashed.append(path)
        return super().hash_file(path)

    def list(self) -> Listing:
        self.listed += 1
        return super().list()


class NoChmodStore(DirectoryStore):
    """An SMB-like mount (``file_mode=0755``): chmod does not stick, every file reads 755."""

    def _fchmod(self, fd: int, perm: int) -> None:
        os.fchmod(fd, 0o755)


class CaseInsensitiveNoChmodStore(NoChmodStore):
    """The same mount as the Azure Files share really is: case-insensitive (manifest path)."""

    @property
    def case_insensitive(self) -> bool:
        return True


def sync(repo: Repo, store: DirectoryStore, ref: str = "main") -> SyncResult:
    source = GitSource(str(repo.path), cache_dir=repo.path.parent / "cache")
    return sync_workspace(source, ref, store)


def assert_exact(repo: Repo, commit: str, root: Path) -> None:
    """Files, modes, no empty directory, and manifest rows that name exactly the commit's blobs."""
    assert expected_files(repo.path, commit) == workspace_files(root)
    assert [] == empty_dirs(root)
    tree = repo.git("ls-tree", "-r", "-z", "--full-tree", commit).split("\0")
    blobs = {}
    for item in filter(None, tree):
        meta, path = item.split("\t", 1)
        if not path.startswith(".github/"):
            blobs[path] = meta.split()[2]
    rows = loads((root / ".gitops-sync/manifest.json").read_bytes()).files
    assert blobs == {p: r.blob_id for p, r in rows.items()}


def many_files(repo: Repo, n: int = 60) -> str:
    for i in range(n):
        repo.write(f"d{i % 6}/f{i:03d}.txt", f"file {i}\n" * (i + 1))
    repo.write("bin/run.sh", "#!/bin/sh\n", executable=True)
    repo.write(".github/ci.yml", "on: push\n")
    return repo.commit("many")


def test_incremental_sync_observes_only_the_changed_paths(tmp_path: Path) -> None:
    """After a first sync, a commit changing 2 of 61 files makes the sync look at those 2 only."""
    repo = Repo(tmp_path / "repo")
    many_files(repo)
    ws = tmp_path / "ws"
    first = sync(repo, CountingStore(ws))
    assert (61, 0) == (first.counts["added"], first.counts["unchanged"])
    repo.write("d1/f001.txt", "changed\n")
    repo.remove("d2/f002.txt")
    b = repo.commit("B")
    store = CountingStore(ws)
    result = sync(repo, store)
    assert_exact(repo, b, ws)
    assert ({"d1/f001.txt", "d2/f002.txt"}, 0) == (set(store.observed), store.listed)
    assert {"added": 0, "updated": 1, "deleted": 1, "unchanged": 59} == result.counts
    again = CountingStore(ws)
    manifest_inode = (ws / ".gitops-sync/manifest.json").stat().st_ino
    noop = sync(repo, again)
    assert ([], [], 0) == (again.observed, again.hashed, noop.bytes_written)
    assert 60 == noop.counts["unchanged"]
    assert manifest_inode == (ws / ".gitops-sync/manifest.json").stat().st_ino  # not rewritten


def test_manifest_rows_stay_exact_through_appends_and_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve incremental syncs append rows; the manifest always names exactly the tree's blobs."""
    repo = Repo(tmp_path / "repo")
    many_files(repo, 20)
    ws = tmp_path / "ws"
    sync(repo, DirectoryStore(ws))
    for i in range(12):
        repo.write(f"d{i % 6}/f{i:03d}.txt", f"round {i}\n")
        if i % 3 == 0:
            repo.remove(f"d{(i + 1) % 6}/f{i + 1:03d}.txt")
        commit = repo.commit(f"round {i}")
        sync(repo, DirectoryStore(ws))
        assert_exact(repo, commit, ws)
    head = (ws / ".gitops-sync/manifest.json").read_bytes().split(b"\n", 1)[0]
    assert b'"appended":0' not in head  # rows were appended, not all rewritten


def test_a_failed_manifest_write_after_the_index_update_is_repaired(tmp_path: Path) -> None:
    """The index is updated but the manifest write fails: the next sync rewrites the rows."""

    class FailMeta(DirectoryStore):
        def write_meta(self, name: str, data: bytes) -> None:
            raise OSError("disk gone")

        def append_meta(self, name: str, data: bytes, at: int) -> None:
            raise OSError("disk gone")  # the manifest's other write (a record appended)

    repo = Repo(tmp_path / "repo")
    many_files(repo, 10)
    ws = tmp_path / "ws"
    sync(repo, DirectoryStore(ws))
    repo.write("d0/f000.txt", "new content\n")
    b = repo.commit("B")
    with pytest.raises(OSError, match="disk gone"):
        sync(repo, FailMeta(ws))
    result = sync(repo, DirectoryStore(ws))
    assert (0, b) == (result.bytes_written, result.commit)
    assert_exact(repo, b, ws)


def test_a_lease_lapsing_between_checkout_batches_stops_the_first_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Git writes an empty folder in batches; a lapsed lease stops it; the next sync repairs."""

    class Lapses(DirectoryStore):
        checks = 0

        def check_writable(self) -> None:
            Lapses.checks += 1
            if Lapses.checks > 3:
                raise WorkspaceNotWritable("lease lost")
            super().check_writable()

    monkeypatch.setattr(git_index, "CHECKOUT_BATCH", 10)
    monkeypatch.setattr(sync_index, "CHECKOUT_BATCH", 10)
    repo = Repo(tmp_path / "repo")
    a = many_files(repo, 60)
    ws = tmp_path / "ws"
    with pytest.raises(WorkspaceNotWritable):
        sync(repo, Lapses(ws))
    written = len(workspace_files(ws))
    assert 0 < written < 61
    repaired = sync(repo, DirectoryStore(ws))
    assert_exact(repo, a, ws)
    assert 61 - written == repaired.counts["added"]


def test_a_killed_git_lock_and_a_damaged_index_are_survived(tmp_path: Path) -> None:
    """A stale ``index.lock`` is cleared; an unreadable index falls back to the manifest path."""
    repo = Repo(tmp_path / "repo")
    many_files(repo, 10)
    ws = tmp_path / "ws"
    sync(repo, DirectoryStore(ws))
    (ws / ".gitops-sync/index.lock").write_bytes(b"")
    repo.write("d0/f000.txt", "B\n")
    b = repo.commit("B")
    assert 2 == sync(repo, DirectoryStore(ws)).bytes_written
    assert_exact(repo, b, ws)
    (ws / ".gitops-sync/index").write_bytes(b"not an index at all")
    repo.write("d1/f001.txt", "C\n")
    c = repo.commit("C")
    result = sync(repo, DirectoryStore(ws))
    assert (2, 1) == (result.bytes_written, result.counts["updated"])
    assert_exact(repo, c, ws)
    assert 0 == sync(repo, DirectoryStore(ws)).bytes_written


def test_syncignore_changes_select_again_through_the_index(tmp_path: Path) -> None:
    """A new .syncignore removes what it matches; dropping it brings the files back."""
    repo = Repo(tmp_path / "repo")
    many_files(repo, 12)
    ws = tmp_path / "ws"
    sync(repo, DirectoryStore(ws))
    repo.write(".syncignore", "d1/\n*.sh\n")
    b = repo.commit("ignore")
    result = sync(repo, DirectoryStore(ws))
    assert {"d1/f001.txt", "d1/f007.txt", "bin/run.sh"}.isdisjoint(workspace_files(ws))
    assert 3 == result.counts["deleted"]
    assert ".syncignore" in workspace_files(ws)
    repo.remove(".syncignore")
    c = repo.commit("no ignore")
    sync(repo, DirectoryStore(ws))
    assert_exact(repo, c, ws)
    del b


def test_gitattributes_never_convert_bytes(tmp_path: Path) -> None:
    """eol, text and ident attributes in the tree change nothing: files land byte for byte."""
    repo = Repo(tmp_path / "repo")
    repo.write(".gitattributes", "* text eol=crlf ident\n")
    repo.write("a.txt", b"line one\nline two $Id$\n")
    a = repo.commit("A")
    ws = tmp_path / "ws"
    sync(repo, DirectoryStore(ws))
    repo.write("b.txt", b"more\n")
    b = repo.commit("B")
    sync(repo, DirectoryStore(ws))
    for commit, path in ((a, "a.txt"), (a, ".gitattributes"), (b, "b.txt")):
        blob = subprocess.run(
            ["git", "cat-file", "blob", f"{commit}:{path}"],
            cwd=repo.path, check=True, capture_output=True,
        ).stdout  # fmt: skip
        assert blob == (ws / path).read_bytes()
    assert b"line one\nline two $Id$\n" == (ws / "a.txt").read_bytes()


@pytest.mark.parametrize("store_cls", [NoChmodStore, CaseInsensitiveNoChmodStore])
def test_where_chmod_does_not_stick_nothing_churns(tmp_path: Path, store_cls: type) -> None:
    """On an SMB-like mount every file reads 755; syncs of one commit still write nothing."""

    def smb_sync() -> SyncResult:
        result = sync(repo, store_cls(ws))
        for dirpath, _dirs, names in os.walk(ws):  # what the mount reports, whoever wrote
            for name in names:
                os.chmod(os.path.join(dirpath, name), 0o755)
        return result

    repo = Repo(tmp_path / "repo")
    many_files(repo, 10)
    ws = tmp_path / "ws"
    smb_sync()
    assert not store_cls(ws).trust_mode
    for _ in range(2):
        again = smb_sync()
        assert (0, 0) == (again.bytes_written, again.counts["updated"])
    os.utime(ws / "d0/f000.txt", (1, 1))  # stamp moved, bytes the same: hashed, not rewritten
    touched = smb_sync()
    assert (0, 0) == (touched.bytes_written, touched.counts["updated"])
    repo.write("bin/run.sh", "#!/bin/sh\n", executable=False)  # a mode change in git
    repo.commit("mode")
    smb_sync()
    settled = smb_sync()
    assert (0, 0) == (settled.bytes_written, settled.counts["updated"])


def test_a_stray_git_directory_at_the_top_is_removed(tmp_path: Path) -> None:
    """A ``.git`` the sync did not write goes, as on the manifest path (git never lists it)."""
    repo = Repo(tmp_path / "repo")
    a = many_files(repo, 5)
    ws = tmp_path / "ws"
    sync(repo, DirectoryStore(ws))
    (ws / ".git" / "objects").mkdir(parents=True)
    (ws / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    result = sync(repo, DirectoryStore(ws))
    assert (1, False) == (result.counts["deleted"], (ws / ".git").exists())
    assert_exact(repo, a, ws)


def test_a_name_git_refuses_to_check_out_falls_back_to_the_manifest_path(tmp_path: Path) -> None:
    """A tree holding ``.GIT/x`` (git will not check it out) still syncs exactly, twice."""
    repo = Repo(tmp_path / "repo")
    blob = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"], input=b"hi\n", cwd=repo.path,
        check=True, capture_output=True,
    ).stdout.decode().strip()  # fmt: skip

    def mktree(text: str) -> str:
        return (
            subprocess.run(
                ["git", "mktree"],
                input=text.encode(),
                cwd=repo.path,
                check=True,
                capture_output=True,
            )
            .stdout.decode()
            .strip()
        )

    sub = mktree(f"100644 blob {blob}\tx\n")
    tree = mktree(f"040000 tree {sub}\t.GIT\n100644 blob {blob}\tok.txt\n")
    commit = repo.git("commit-tree", tree, "-m", "odd name")
    ws = tmp_path / "ws"
    source = GitSource(str(repo.path), cache_dir=tmp_path / "cache")
    sync_workspace(source, commit, DirectoryStore(ws))
    assert {".GIT/x": b"hi\n", "ok.txt": b"hi\n"} == {
        p: d for p, (d, _x) in workspace_files(ws).items()
    }
    assert 0 == sync_workspace(source, commit, DirectoryStore(ws)).bytes_written


def test_sizes_come_from_the_written_blobs_and_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An incremental sync asks git for no size: written blobs and files already holding
    the blob give them, and the manifest rows and bytes written are exact."""
    repo = Repo(tmp_path / "repo")
    many_files(repo, 12)
    ws = tmp_path / "ws"
    sync(repo, DirectoryStore(ws))
    repo.write("d1/f001.txt", "a longer line than before\n")  # rewritten
    repo.write("d2/new.txt", "already there\n")  # added, and the workspace holds it already
    (ws / "d2/new.txt").write_text("already there\n")
    repo.write("bin/run.sh", "#!/bin/sh\n", executable=False)  # a mode change only
    b = repo.commit("B")

    def no_sizes(self: GitSource, oids: Iterable[str]) -> dict[str, int]:
        raise AssertionError("blob_sizes called")

    monkeypatch.setattr(GitSource, "blob_sizes", no_sizes)
    result = sync(repo, DirectoryStore(ws))
    assert len("a longer line than before\n") == result.bytes_written
    assert {"added": 0, "updated": 2, "deleted": 0} == {  # d2/new.txt: unchanged
        k: v for k, v in result.counts.items() if k != "unchanged"
    }
    assert_exact(repo, b, ws)
    rows = loads((ws / ".gitops-sync/manifest.json").read_bytes()).files
    assert {p: (ws / p).stat().st_size for p in rows} == {p: r.size for p, r in rows.items()}
