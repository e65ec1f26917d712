"""The manifest's records on a folder: appended in place, read without the lock.

A reader (another process, as the archive server is: no lock) reads the manifest
over and over while many syncs append records and some rewrite it whole; every
state it reads must be one some sync left whole: the rows of exactly the commit
its header names. A sync killed (SIGKILL) in the middle of its append leaves a
torn record that readers ignore, and the next sync repairs exactly. Real git,
real folders, real processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from itertools import pairwise
from pathlib import Path

import pytest

from gitops_sync import sync_index
from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.archive import load_manifest
from tests.e2e.test_sync_index import assert_exact, many_files, sync
from tests.gitrepo import Repo

READER = textwrap.dedent(
    """
    import json, os, sys
    from gitops_sync.core.manifest import loads
    manifest, expected_file, stop, out = sys.argv[1:5]
    expected = json.load(open(expected_file))
    seen, bad, reads = {}, [], 0
    while not os.path.exists(stop) or reads == 0:
        with open(manifest, "rb") as f:
            data = f.read()
        m = loads(data)
        reads += 1
        rows = {p: r.blob_id for p, r in m.files.items()}
        if m.commit not in expected or rows != expected[m.commit]:
            bad.append([m.commit, len(data)])
        seen[m.commit] = seen.get(m.commit, 0) + 1
    json.dump({"reads": reads, "seen": seen, "bad": bad[:5]}, open(out, "w"))
    """
)


def blobs(repo: Repo, commit: str) -> dict[str, str]:
    """What the manifest's rows must name for COMMIT (``git ls-tree``, .github/ left out)."""
    out = {}
    for item in filter(None, repo.git("ls-tree", "-r", "-z", "--full-tree", commit).split("\0")):
        meta, path = item.split("\t", 1)
        if not path.startswith(".github/"):
            out[path] = meta.split()[2]
    return out


def test_a_reader_racing_many_syncs_sees_only_whole_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 syncs (appends, and a whole rewrite every few: ``MIN_RECORDS`` made small) while
    another process reads the manifest as fast as it can: every read names a commit some
    sync finished and exactly that commit's rows."""
    monkeypatch.setattr(sync_index, "MIN_RECORDS", 4)
    monkeypatch.setattr(sync_index, "TAIL", 64)  # the long-record branch is taken too
    repo = Repo(tmp_path / "repo")
    commits = [many_files(repo, 30)]
    for i in range(40):
        repo.write(f"d{i % 6}/f{i % 30:03d}.txt", f"round {i}\n" * (i % 7 + 1))
        if i % 5 == 0:
            repo.write(f"new/n{i}.txt", f"added in round {i}\n")
        if i % 5 == 3:
            repo.remove(f"new/n{i - 3}.txt")
        commits.append(repo.commit(f"round {i}"))
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps({c: blobs(repo, c) for c in commits}))
    ws = tmp_path / "ws"
    repo.git("checkout", "-q", commits[0])
    sync(repo, DirectoryStore(ws), commits[0])
    stop, out = tmp_path / "stop", tmp_path / "reader.json"
    manifest = ws / ".gitops-sync" / "manifest.json"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(manifest), str(expected), str(stop), str(out)]
    )
    try:
        sizes = []
        for commit in commits[1:]:
            sync(repo, DirectoryStore(ws), commit)
            sizes.append(manifest.stat().st_size)
            assert blobs(repo, commit) == {p: r.blob_id for p, r in load_manifest(
                DirectoryStore(ws)).files.items()}  # fmt: skip
    finally:
        stop.touch()
        assert 0 == reader.wait(timeout=60)
    report = json.loads(out.read_text())
    assert [] == report["bad"]
    assert report["reads"] > len(commits)
    assert len(report["seen"]) > 1  # it read while the syncs ran
    grew = sum(b > a for a, b in pairwise(sizes))
    shrank = sum(b < a for a, b in pairwise(sizes))
    assert grew > 20 and shrank >= 5  # records appended; whole rewrites in between
    assert_exact(repo, commits[-1], ws)


KILLED_APPEND = textwrap.dedent(
    """
    import os, signal, sys
    from gitops_sync.adapters.dir_store import DirectoryStore
    from gitops_sync.adapters.git_source import GitSource
    from gitops_sync.sync import sync_workspace

    def half_then_die(self, name, data, at):
        fd = os.open(os.path.join(self._meta, name), os.O_WRONLY | os.O_APPEND)
        os.write(fd, data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    DirectoryStore.append_meta = half_then_die
    repo, ws, cache = sys.argv[1:4]
    sync_workspace(GitSource(repo, cache_dir=cache), "main", DirectoryStore(ws))
    """
)


def test_a_sync_killed_mid_append_leaves_the_last_whole_state_and_is_repaired(
    tmp_path: Path,
) -> None:
    """SIGKILL halfway through the record's write: readers see the state before that sync
    (its header and rows), and the next sync repairs exactly, rewriting the file whole."""
    repo = Repo(tmp_path / "repo")
    a = many_files(repo, 20)
    ws = tmp_path / "ws"
    sync(repo, DirectoryStore(ws))
    repo.write("d1/f001.txt", "changed\n")
    repo.remove("d2/f002.txt")
    b = repo.commit("B")
    manifest = ws / ".gitops-sync" / "manifest.json"
    before = manifest.read_bytes()
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_APPEND, str(repo.path), str(ws), str(tmp_path / "c")],
        capture_output=True,
    )
    assert -signal.SIGKILL == proc.returncode, proc.stderr
    torn = manifest.read_bytes()
    assert torn.startswith(before) and len(torn) > len(before)  # half a record is there
    seen = load_manifest(DirectoryStore(ws))
    assert (a, blobs(repo, a)) == (seen.commit, {p: r.blob_id for p, r in seen.files.items()})
    result = sync(repo, DirectoryStore(ws))
    assert (b, 0) == (result.commit, result.bytes_written)  # the files were written already
    assert_exact(repo, b, ws)
    assert not manifest.read_bytes().startswith(before)  # rewritten whole, not appended to
    inode = manifest.stat().st_ino
    repo.write("d3/f003.txt", "changed again\n")
    c = repo.commit("C")
    sync(repo, DirectoryStore(ws))
    assert_exact(repo, c, ws)
    assert inode == manifest.stat().st_ino  # appended to again, in place
