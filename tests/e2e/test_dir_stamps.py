"""Directory stamps: ``git ls-files -o`` reads only the directories that changed, and an
untracked file is found wherever it appears, its directory's mtime restored or not.

Real git repositories and real folders, as ``test_sync_index``; which ``ls-files`` ran is
seen by wrapping ``WorkspaceIndex._start`` (each git the scan starts).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.adapters.git_index import WorkspaceIndex
from tests.e2e.test_sync_index import NoChmodStore, assert_exact, many_files, sync
from tests.gitrepo import Repo


@pytest.fixture
def untracked_looks(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The pathspecs of every ``ls-files -o`` started ([] for the whole workspace)."""
    looks: list[list[str]] = []
    start = WorkspaceIndex._start

    def spy(self: WorkspaceIndex, *args: str) -> Callable[[], bytes]:
        if args[:3] == ("ls-files", "-z", "-o"):
            looks.append(list(args[args.index("--") + 1 :]) if "--" in args else [])
        return start(self, *args)

    monkeypatch.setattr(WorkspaceIndex, "_start", spy)
    return looks


def settled(repo: Repo, ws: Path) -> str:
    """A first sync, then one more (which takes every directory's stamp)."""
    commit = many_files(repo, 24)
    sync(repo, DirectoryStore(ws))
    sync(repo, DirectoryStore(ws))
    return commit


def restore_times(path: Path, before: os.stat_result) -> None:
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_no_directory_changed_no_directory_is_read(
    tmp_path: Path, untracked_looks: list[list[str]]
) -> None:
    """A no-op reads no directory; after a commit changing one file, only its directory."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    settled(repo, ws)
    untracked_looks.clear()
    assert 0 == sync(repo, DirectoryStore(ws)).bytes_written
    assert [] == untracked_looks
    repo.write("d1/f001.txt", "changed\n")
    b = repo.commit("B")
    sync(repo, DirectoryStore(ws))  # its stamps were taken before the write: d1 moved
    assert_exact(repo, b, ws)
    untracked_looks.clear()
    sync(repo, DirectoryStore(ws))
    assert [["d1"]] == untracked_looks
    untracked_looks.clear()
    sync(repo, DirectoryStore(ws))
    assert [] == untracked_looks


@pytest.mark.parametrize(
    "new", ["d2/stray.txt", "d3/sub/deeper/stray.txt", "stray-at-the-top.txt", "bin/new-dir/"]
)
def test_an_untracked_file_is_found_though_its_directory_mtime_is_restored(
    tmp_path: Path, new: str
) -> None:
    """The ctime moves with any change and cannot be set back: the stamp still moves."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    commit = settled(repo, ws)
    parts = new.strip("/").split("/")
    first_new = next(
        ws.joinpath(*parts[: i + 1])
        for i in range(len(parts))
        if not ws.joinpath(*parts[: i + 1]).exists()
    )
    parent = first_new.parent
    before = parent.stat()
    target = ws / new
    if new.endswith("/"):
        target.mkdir()
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("not in git\n")
    restore_times(parent, before)
    assert before.st_mtime_ns == parent.stat().st_mtime_ns
    result = sync(repo, DirectoryStore(ws))
    assert 1 == result.counts["deleted"] or new.endswith("/")
    assert not first_new.exists()
    assert_exact(repo, commit, ws)


def test_an_untracked_file_left_behind_is_found_again(tmp_path: Path) -> None:
    """A removal that did not happen (here: skipped once) leaves its directory to be read
    again by the next sync, though the directory did not change since its stamp."""

    class ForgetfulStore(DirectoryStore):
        def delete_file(self, path: str) -> None:
            if path != "d4/stray.txt":
                super().delete_file(path)

    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    commit = settled(repo, ws)
    (ws / "d4/stray.txt").write_text("not in git\n")
    sync(repo, ForgetfulStore(ws))
    assert (ws / "d4/stray.txt").exists()
    assert 1 == sync(repo, DirectoryStore(ws)).counts["deleted"]
    assert_exact(repo, commit, ws)


def test_stamps_of_another_index_are_void(tmp_path: Path, untracked_looks: list[list[str]]) -> None:
    """The stamps name the index they were taken for: an index changed by another hand
    (here: an entry dropped, so its file is untracked now) makes the sync read everything."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    commit = settled(repo, ws)
    store = DirectoryStore(ws)
    WorkspaceIndex(ws, ws / "unused", trust_mode=True).set_entries((), ["d5/f005.txt"])
    untracked_looks.clear()
    assert 0 == sync(repo, store).bytes_written
    assert [[]] == untracked_looks  # the whole workspace: no stamp was valid
    assert_exact(repo, commit, ws)


def test_where_stamps_cannot_be_trusted_every_directory_is_read(
    tmp_path: Path, untracked_looks: list[list[str]]
) -> None:
    """Where chmod does not stick (an SMB mount) no stamp is kept: every sync reads all."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    many_files(repo, 12)
    for _ in range(3):
        sync(repo, NoChmodStore(ws))
    assert [[], []] == untracked_looks
    assert not (ws / ".gitops-sync/dirs").exists()


def test_moved_stamps_are_appended_and_a_torn_file_is_void(
    tmp_path: Path, untracked_looks: list[list[str]]
) -> None:
    """A sync that moves a few stamps appends them (the file is not rewritten); the stamps
    read back through the appended segments still find a stray anywhere; a torn file (a
    crash mid-append) is void: the next sync reads every directory, and is exact."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    settled(repo, ws)
    stamps = ws / ".gitops-sync" / "dirs"
    before = stamps.stat()
    repo.write("d1/f001.txt", "changed\n")
    commit = repo.commit("B")
    sync(repo, DirectoryStore(ws))
    sync(repo, DirectoryStore(ws))  # d1 settles: appended again
    after = stamps.stat()
    assert before.st_ino == after.st_ino and after.st_size > before.st_size
    (ws / "d4" / "stray.txt").write_text("not in git\n")
    untracked_looks.clear()
    assert 1 == sync(repo, DirectoryStore(ws)).counts["deleted"]
    assert [["d4"]] == untracked_looks
    assert_exact(repo, commit, ws)
    with open(stamps, "r+b") as f:
        f.truncate(stamps.stat().st_size - 3)
    (ws / "d5" / "stray.txt").write_text("not in git\n")
    untracked_looks.clear()
    assert 1 == sync(repo, DirectoryStore(ws)).counts["deleted"]
    assert [[]] == untracked_looks  # the whole workspace: the torn file said nothing
    assert_exact(repo, commit, ws)
    untracked_looks.clear()
    sync(repo, DirectoryStore(ws))  # every directory unknown yet: all read, stamps taken
    sync(repo, DirectoryStore(ws))
    assert [[]] == untracked_looks  # then trusted again: the second reads none
