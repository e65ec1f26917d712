"""Directory stamps: ``git ls-files -o`` reads only the directories that changed, and an
untracked file is found wherever it appears, its directory's mtime restored or not.

Real git repositories and real folders, as ``test_sync_index``; which ``ls-files`` ran is
seen by wrapping ``WorkspaceIndex._start`` (each git the scan starts).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gitops_sync.adapters import dir_stamps
from gitops_sync.adapters.dir_stamps import DirStamps
from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.adapters.git_index import WorkspaceIndex
from tests.e2e.test_sync_index import NoChmodStore, assert_exact, many_files, sync
from tests.gitrepo import Repo

#: tests about ``stat`` itself: not run with the stamps taken in Python
STAT_ONLY = {
    "test_stat_takes_the_stamps_python_would_take",
    "test_without_gnu_stat_python_takes_the_stamps_and_the_sync_is_the_same",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test twice: the stamps taken by ``stat`` (as in a large tree) and in Python
    (a small tree's, as these are)."""
    if "stamps_taken_by" in metafunc.fixturenames:
        ways = ["stat"] if metafunc.function.__name__ in STAT_ONLY else ["stat", "inline"]
        metafunc.parametrize("stamps_taken_by", ways, indirect=True)


@pytest.fixture(autouse=True)
def stamps_taken_by(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "stat":
        monkeypatch.setattr(dir_stamps, "INLINE_BYTES", 0)
    return str(request.param)


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


def test_a_directory_changed_within_the_clock_tick_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, untracked_looks: list[list[str]]
) -> None:
    """A stamp is trusted only when the directory's ctime is older than "now" (a file
    made just before the stamps are taken): a directory changed within that tick (here
    "now" is its ctime, as a coarse clock shows it) is read again by the next sync, whose
    stamp is then trusted."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    settled(repo, ws)
    (ws / "d2" / "x").write_text("")
    (ws / "d2" / "x").unlink()
    real_now = DirStamps._now
    monkeypatch.setattr(DirStamps, "_now", lambda self: (ws / "d2").stat().st_ctime_ns)
    untracked_looks.clear()
    sync(repo, DirectoryStore(ws))  # d2 moved: read; its stamp taken within the tick
    monkeypatch.setattr(DirStamps, "_now", real_now)
    sync(repo, DirectoryStore(ws))  # so read again, though the stamp is the same
    sync(repo, DirectoryStore(ws))
    assert [["d2"], ["d2"]] == untracked_looks


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


def test_a_torn_or_older_stamps_file_is_void(
    tmp_path: Path, untracked_looks: list[list[str]]
) -> None:
    """A sync that moves a stamp replaces the file whole; the stamps read back still find
    a stray anywhere. A file cut short (a crash mid-write of an older version) or in the
    older format is void: the next sync reads every directory, and is exact; the one
    after trusts the stamps again."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    settled(repo, ws)
    stamps = ws / ".gitops-sync" / "dirs"
    before = stamps.read_bytes()
    repo.write("d1/f001.txt", "changed\n")
    commit = repo.commit("B")
    sync(repo, DirectoryStore(ws))
    sync(repo, DirectoryStore(ws))  # d1 settles
    assert before != stamps.read_bytes()
    (ws / "d4" / "stray.txt").write_text("not in git\n")
    untracked_looks.clear()
    assert 1 == sync(repo, DirectoryStore(ws)).counts["deleted"]
    assert [["d4"]] == untracked_looks
    assert_exact(repo, commit, ws)
    good = stamps.read_bytes()
    older = good.split(b"\n", 1)[0].split(b" ")[2] + b" 4\n.\0-\0"  # format 1
    for damaged in (good[:-3], good[:40], older):
        stamps.write_bytes(damaged)
        (ws / "d5" / "stray.txt").write_text("not in git\n")
        untracked_looks.clear()
        assert 1 == sync(repo, DirectoryStore(ws)).counts["deleted"]
        assert [[]] == untracked_looks  # the whole workspace: the file said nothing
        assert_exact(repo, commit, ws)
        untracked_looks.clear()
        sync(repo, DirectoryStore(ws))  # every directory unknown yet: all read, stamps taken
        sync(repo, DirectoryStore(ws))
        assert [[]] == untracked_looks  # then trusted again: the second reads none


HOSTILE = [b".", b"plain", b"a b", b"-dash", b"new\nline", "\u00fcml".encode(), b"\xff\xfe",
           b"deep/er/still", b"trailing "]  # fmt: skip


@pytest.fixture
def python_lstats(monkeypatch: pytest.MonkeyPatch) -> list[list[bytes]]:
    """The paths each time the stamps were taken in Python (not by ``stat``)."""
    calls: list[list[bytes]] = []
    real = dir_stamps.lstat_lines

    def spy(root: str, paths: list[bytes]) -> tuple[bytes, list[bytes]]:
        calls.append(list(paths))
        return real(root, paths)

    monkeypatch.setattr(dir_stamps, "lstat_lines", spy)
    return calls


@pytest.mark.parametrize("per_stat", [None, 2])
def test_stat_takes_the_stamps_python_would_take(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    python_lstats: list[list[bytes]],
    per_stat: int | None,
) -> None:
    """GNU ``stat``'s lines are byte for byte the ones Python makes, for names with
    spaces, a leading dash, a newline, non-UTF-8 bytes; a path not there is named as
    gone (``stat`` goes on past it) without falling back to Python, also when ``xargs``
    runs ``stat`` several times (here: 2 names each; a long list does that)."""
    if per_stat:
        monkeypatch.setattr(dir_stamps, "XARGS", ("xargs", "-0", "-n", str(per_stat)))
    root = os.fsencode(tmp_path)
    for name in HOSTILE:
        os.makedirs(os.path.join(root, name), exist_ok=True)
    paths = [*HOSTILE[:4], b"not-there", *HOSTILE[4:]]
    taking = dir_stamps._Taking(str(tmp_path), b"".join(p + b"\0" for p in paths))
    lines, gone = taking.lines()
    assert [] == python_lstats
    assert [b"not-there"] == gone
    expected, missing = dir_stamps.lstat_lines(str(tmp_path), paths)
    assert (expected, [b"not-there"]) == (lines, missing)
    assert len(HOSTILE) == lines.count(b"\0")


#: a ``stat`` that says 0 but stamps only the last directory (well formed, one line short)
ONE_LINE = (
    "#!/bin/sh\nlast=$(tr '\\000' '\\n' | tail -n 1)\nprintf '41ed 1.0 1.0 1 %s\\000' \"$last\"\n"
)


@pytest.mark.parametrize("stat_cmd", ["/no/such/env", "false", "true", "one-line"])
def test_without_gnu_stat_python_takes_the_stamps_and_the_sync_is_the_same(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    untracked_looks: list[list[str]],
    python_lstats: list[list[bytes]],
    stat_cmd: str,
) -> None:
    """No ``env`` (another system), a ``stat`` that refuses (exit 1, nothing said), one that
    answers nothing, or one line short: Python takes the same stamps, and the syncs read
    what they would."""
    if stat_cmd == "one-line":
        fake = tmp_path / "one-line-stat"
        fake.write_text(ONE_LINE)
        fake.chmod(0o755)
        stat_cmd = str(fake)
    monkeypatch.setattr(dir_stamps, "STAT", (stat_cmd,))
    test_no_directory_changed_no_directory_is_read(tmp_path, untracked_looks)
    assert python_lstats  # it was Python that took them


def test_a_directory_gone_is_dropped_from_the_stamps(
    tmp_path: Path,
    untracked_looks: list[list[str]],
    python_lstats: list[list[bytes]],
    stamps_taken_by: str,
) -> None:
    """A commit that empties a directory (the sync removes it) and a directory removed by
    hand: the next look misses them (``stat`` goes on past them: no Python), the sync is
    exact and the stamps settle without them."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    for top in ("d1", "d2"):
        repo.write(f"{top}/sub/x.txt", "x\n")
    settled(repo, ws)
    repo.remove("d1/sub/x.txt")
    commit = repo.commit("no d1/sub")
    sync(repo, DirectoryStore(ws))
    assert not (ws / "d1" / "sub").exists()
    shutil.rmtree(ws / "d2" / "sub")
    untracked_looks.clear()
    python_lstats.clear()
    result = sync(repo, DirectoryStore(ws))
    assert 1 == result.counts["added"]  # d2/sub/x.txt, back
    assert_exact(repo, commit, ws)
    assert [["d1", "d2"]] == untracked_looks  # d1 written into by the last sync, d2 by hand
    assert ([] if stamps_taken_by == "stat" else [python_lstats[0]]) == python_lstats
    sync(repo, DirectoryStore(ws))  # d2 was written into: read once more
    untracked_looks.clear()
    sync(repo, DirectoryStore(ws))
    assert [] == untracked_looks
    assert b"d1/sub\0" not in (ws / ".gitops-sync" / "dirs").read_bytes()


def test_a_workspace_gone_under_the_stamps_is_read_whole(tmp_path: Path) -> None:
    """The workspace itself removed between the stamps file's read and the look: every
    directory is gone, so the answer is "read everything" (not an error)."""
    stamps = DirStamps(str(tmp_path / "ws"), str(tmp_path / "meta"))
    assert (b"", [b".", b"d1"]) == dir_stamps.lstat_lines(stamps.root, [b".", b"d1"])
    taking = dir_stamps._Taking(stamps.root, b".\0d1\0")
    old = dir_stamps.Seen(b".\0d1\0", b"41ed 1.0 1.0 1 .\0" + b"41ed 1.0 1.0 2 d1\0")
    check = dir_stamps.Check(stamps, old, 0, taking)
    dirs, seen = check.finish()
    assert dirs is None and not seen
