"""Git started before the sync's modules load (``adapters.git_early``): taken over when it
is exactly what the sync asks for, ended otherwise, and never a different answer.

Real repositories and folders; the CLI entry point runs in this process (``cli.main``
with arguments), so the early processes can be watched.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitops_sync.adapters import dir_stamps, git_early
from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.adapters.git_index import WorkspaceIndex
from gitops_sync.cli import main
from tests.e2e.test_dir_stamps import settled
from tests.e2e.test_sync_index import assert_exact
from tests.gitrepo import Repo


def cli_sync(repo: Repo, ws: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    main(["sync", "--repo", str(repo.path), "--ref", "main", "--workspace", str(ws), "--json"])
    return json.loads(capsys.readouterr().out)


def assert_nothing_left(ws: Path, pids: list[int]) -> None:
    """No early process unreaped, no registry entry, and the workspace lock is free."""
    assert ({}, {}, []) == (git_early._started, git_early._stamps, git_early._locks)
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    fd = os.open(ws / ".gitops-sync" / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


@pytest.fixture
def early(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """What ``start_sync`` started (pids), what the sync took over (command lines) and
    whether it took over the stamps being taken (``stamps``: the directories they named).
    The stamps are taken by ``stat`` here, as in a large tree (a small one's in Python)."""
    monkeypatch.setattr(dir_stamps, "INLINE_BYTES", 0)
    seen: dict[str, list] = {"pids": [], "adopted": [], "stamps": []}
    start, adopt, adopt_stamps = git_early.start_sync, git_early.adopt, git_early.adopt_stamps

    def start_spy(*args: str | None) -> None:
        start(*args)  # type: ignore[arg-type]
        seen["pids"].extend(p.pid for p in git_early._started.values())
        for check in git_early._stamps.values():
            if check.taking is not None and check.taking.proc is not None:
                seen["pids"].append(check.taking.proc.pid)

    def adopt_stamps_spy(*args):  # type: ignore[no-untyped-def]
        found = adopt_stamps(*args)
        if found is not None:
            seen["stamps"].append(found[1])
        return found

    def adopt_spy(argv, env):  # type: ignore[no-untyped-def]
        found = adopt(argv, env)
        if found is not None:
            seen["adopted"].append([a for a in argv[1:6] if a != "-C"][:3])
        return found

    monkeypatch.setattr(git_early, "start_sync", start_spy)
    monkeypatch.setattr(git_early, "adopt", adopt_spy)
    monkeypatch.setattr(git_early, "adopt_stamps", adopt_stamps_spy)
    return seen


def test_the_early_processes_are_taken_over_and_nothing_is_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], early: dict[str, list]
) -> None:
    """rev-parse, diff-files and the ``stat`` taking the directory stamps are the early
    ones, and their answer names d2 (a stray file moved it) for ``ls-files -o``; the sync
    is exact, the stray is gone, nothing is left running."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    settled(repo, ws)
    (ws / "d2" / "stray.txt").write_text("not in git\n")
    repo.write("d1/f001.txt", "changed\n")
    b = repo.commit("B")
    doc = cli_sync(repo, ws, capsys)
    assert (1, 1) == (doc["updated"], doc["deleted"])
    assert_exact(repo, b, ws)
    assert [
        [str(repo.path), "rev-parse", "--absolute-git-dir"],
        [str(ws), "diff-files", "--raw"],
    ] == early["adopted"]
    assert [["d2"]] == early["stamps"]
    assert 3 == len(early["pids"])  # rev-parse, diff-files, stat
    assert_nothing_left(ws, early["pids"])


def test_a_guess_not_taken_over_is_ended_and_the_sync_is_the_same(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    early: dict[str, list],
) -> None:
    """The environment changes between the early start and the sync (so no command is the
    one the sync asks for): each early git is ended and reaped, the lock and the stamps
    (which no environment changes) taken over all the same, and the sync is exact."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    settled(repo, ws)
    (ws / "d3" / "stray.txt").write_text("not in git\n")
    repo.write("d1/f001.txt", "changed\n")
    b = repo.commit("B")
    start = git_early.start_sync

    def start_then_change_env(*args: str | None) -> None:
        start(*args)  # type: ignore[arg-type]
        monkeypatch.setenv("GITOPS_SYNC_EARLY_TEST", "another environment")

    monkeypatch.setattr(git_early, "start_sync", start_then_change_env)
    doc = cli_sync(repo, ws, capsys)
    assert (1, 1) == (doc["updated"], doc["deleted"])
    assert_exact(repo, b, ws)
    assert [] == early["adopted"]
    assert [["d3"]] == early["stamps"]
    assert 3 == len(early["pids"])
    assert_nothing_left(ws, early["pids"])


def test_a_file_added_after_the_look_is_found_by_the_next_sync(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    early: dict[str, list],
) -> None:
    """The stamps kept are those taken early, before ``ls-files -o`` read the directory: a
    file added to it after that look (once the file system's clock moved, so a later
    stamp would look settled) moves the stamp, and the next sync removes it."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    commit = settled(repo, ws)
    (ws / "d2" / "gone.txt").write_text("x")
    (ws / "d2" / "gone.txt").unlink()  # d2's stamp moved; nothing untracked in it
    observe = WorkspaceIndex.observe
    late = ws / "d2" / "late.txt"

    def observe_then_add(self: WorkspaceIndex, *args: object) -> object:
        answer = observe(self, *args)  # type: ignore[arg-type]
        assert [] == answer[2]  # the look is over: it saw nothing untracked
        late.write_text("added after the look\n")
        clock = ws / ".gitops-sync" / "tmp" / "clock"
        while True:  # until the file system's clock has moved past the addition
            clock.write_text("")
            if clock.stat().st_ctime_ns > late.stat().st_ctime_ns:
                break
        clock.unlink()
        return answer

    monkeypatch.setattr(WorkspaceIndex, "observe", observe_then_add)
    cli_sync(repo, ws, capsys)
    monkeypatch.setattr(WorkspaceIndex, "observe", observe)
    assert [["d2"]] == early["stamps"]  # taken early, and d2 was read
    assert late.exists()  # not seen by this sync's look
    assert 1 == cli_sync(repo, ws, capsys)["deleted"]
    assert_exact(repo, commit, ws)
    assert 0 == cli_sync(repo, ws, capsys)["deleted"]


def test_a_no_op_through_the_cli_writes_no_bookkeeping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI starts the scan (and takes the stamps) before the sync's own index exists:
    a no-op still finds the stamps file saying what it would write, and leaves it (and
    the manifest and index) as they were (the stamps were rewritten on every sync)."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    settled(repo, ws)
    cli_sync(repo, ws, capsys)  # settles every stamp through the CLI path too
    meta = ws / ".gitops-sync"
    names = ("dirs", "manifest.json", "index")
    before = {n: (meta / n).stat().st_ino for n in names}
    assert 0 == cli_sync(repo, ws, capsys)["bytes_written"]
    assert before == {n: (meta / n).stat().st_ino for n in names}


def test_where_chmod_does_not_stick_no_scan_is_started_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an SMB-like mount (the mode probe fails) only rev-parse starts early."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    settled(repo, ws)
    monkeypatch.setattr(git_early, "probe_chmod", lambda tmp: False)
    git_early.start_sync(str(repo.path), "main", str(ws), None)
    try:
        assert [["rev-parse"]] == [list(k[0][3:4]) for k in git_early._started]  # type: ignore[index]
        assert {} == git_early._stamps
    finally:
        git_early.discard()
    assert_nothing_left(ws, [])


def test_nothing_starts_early_without_an_index_or_while_another_sync_holds_the_lock(
    tmp_path: Path,
) -> None:
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    git_early.start_sync(str(repo.path), "main", str(ws), None)  # no workspace yet
    assert ({}, []) == (git_early._started, git_early._locks)
    settled(repo, ws)
    with DirectoryStore(ws).lock():
        git_early.start_sync(str(repo.path), "main", str(ws), None)
        assert ({}, []) == (git_early._started, git_early._locks)


def test_the_early_module_loads_only_what_the_interpreter_has(tmp_path: Path) -> None:
    """``start_sync`` runs before pathlib, subprocess, re or contextlib are imported, and
    imports none of them itself (that is its point)."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    settled(repo, ws)
    code = (
        "import sys\n"
        "from gitops_sync.adapters import git_early\n"
        f"git_early.start_sync({str(repo.path)!r}, 'main', {str(ws)!r}, None)\n"
        "started = len(git_early._started)\n"
        "git_early.discard()\n"
        "print(started, sorted(set(sys.modules) & {'pathlib', 'subprocess', 're', 'enum',"
        " 'contextlib', 'threading', 'json', 'typing', 'signal'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "2 []" == out.stdout.strip()  # rev-parse and diff-files; no directory moved


#: what no sync through the index loads: ``dataclasses`` (with ``inspect``) and ``typing``
#: (the value types are plain classes; annotations only, ``TYPE_CHECKING = False``)
NEVER_ON_A_SYNC = {"dataclasses", "inspect", "typing"}
#: and what a no-op or an incremental one does not load either: git starts with
#: ``git_proc`` (posix_spawn), the store, index and source keep their paths as strings
NEVER_ON_A_SMALL_SYNC = NEVER_ON_A_SYNC | {
    "subprocess", "threading", "signal", "pathlib", "urllib.parse", "fnmatch",
}  # fmt: skip


def test_a_sync_loads_none_of_the_heavy_modules(tmp_path: Path) -> None:
    """A full sync into an empty folder, then a no-op and an incremental one, each a whole
    process under ``-X importtime``: none loads what it does not need."""
    repo = Repo(tmp_path / "repo")
    repo.write("a.txt", "a")
    repo.commit("A")
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-X", "importtime", "-m", "gitops_sync", "sync", "--repo",
           str(repo.path), "--ref", "main", "--workspace", str(ws)]  # fmt: skip
    for step, never in (("full", NEVER_ON_A_SYNC), ("no-op", NEVER_ON_A_SMALL_SYNC),
                        ("incremental", NEVER_ON_A_SMALL_SYNC)):  # fmt: skip
        if step == "incremental":
            repo.write("a.txt", "changed\n")
            repo.commit("B")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert 0 == proc.returncode, proc.stderr
        imported = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines() if "|" in ln}
        assert "gitops_sync.sync_index" in imported, step  # the measure works
        assert set() == imported & never, step
    assert_exact(repo, repo.git("rev-parse", "main"), ws)


@pytest.mark.parametrize("bad", ["ref", "workspace"])
def test_a_name_posix_spawn_refuses_leaves_the_early_start_to_the_sync(
    tmp_path: Path, bad: str
) -> None:
    """A NUL in the ref or the workspace path: nothing starts early, nothing is left, and
    the early start raises nothing (the sync reports what it reports without it)."""
    repo = Repo(tmp_path / "repo")
    ws = tmp_path / "ws"
    settled(repo, ws)
    ref, where = ("ma\0in", str(ws)) if bad == "ref" else ("main", f"{ws}\0x")
    git_early.start_sync(str(repo.path), ref, where, None)
    assert_nothing_left(ws, [])


@pytest.mark.parametrize("given", ["ws", "./ws", "ws/", "ws//", "sub/../ws", "ABS"])
def test_the_store_root_is_the_path_pathlib_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """``DirectoryStore`` keeps a string: its ``root``, ``local_root`` and ``local_path``
    are what ``Path(root).absolute()`` gives, relative, dotted or absolute."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    raw = str(tmp_path / "ws") if given == "ABS" else given
    store = DirectoryStore(raw)
    assert Path(raw).absolute() == store.root == store.local_root
    assert str(Path(raw).absolute()) == store.local_path == store.describe()
