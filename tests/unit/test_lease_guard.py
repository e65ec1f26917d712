"""The lease guard: a store whose lease is lost refuses every write and still reads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.adapters.leases import HeldLease, LeaseLost
from gitops_sync.core.errors import ConflictError
from gitops_sync.lease_guard import LeaseGuardedStore, guard


def _store(tmp_path: Path) -> tuple[DirectoryStore, HeldLease, LeaseGuardedStore]:
    inner = DirectoryStore(tmp_path / "ws")
    inner.check_writable()
    inner.write_file("a.txt", 0o100644, [b"a\n"])
    inner.write_file("d/b.txt", 0o100644, [b"b\n"])
    inner.write_meta("manifest.json", b"{}")
    lease = HeldLease("ws", duration=60, margin=10, taken_at=time.monotonic())
    return inner, lease, LeaseGuardedStore(inner, lease)


WRITES = {
    "check_writable": lambda s: s.check_writable(),
    "write_file": lambda s: s.write_file("c.txt", 0o100644, [b"c\n"]),
    "set_mode": lambda s: s.set_mode("a.txt", 0o100755),
    "rename": lambda s: s.rename("a.txt", "A.txt"),
    "delete_file": lambda s: s.delete_file("a.txt"),
    "delete_dir": lambda s: s.delete_dir("d"),
    "clean_temporaries": lambda s: s.clean_temporaries(),
    "write_meta": lambda s: s.write_meta("manifest.json", b"changed"),
    "append_meta": lambda s: s.append_meta("manifest.json", b"row", 2),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_write_is_refused_once_the_lease_is_lost(tmp_path: Path, write: str):
    """After the lease is lost each mutating method raises LeaseLost (a transient conflict)
    and the workspace, manifest included, is exactly as it was."""
    inner, lease, guarded = _store(tmp_path)
    before = {p: inner.hash_file(p) for p in inner.list().files}
    lease.lose("renewing it failed: 409")
    with pytest.raises(LeaseLost, match="lost the lock on workspace ws") as raised:
        WRITES[write](guarded)
    assert isinstance(raised.value, ConflictError) and not raised.value.permanent
    assert before == {p: inner.hash_file(p) for p in inner.list().files}
    assert b"{}" == inner.read_meta("manifest.json")


@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_write_passes_while_the_lease_holds(tmp_path: Path, write: str):
    """With a lease that is still good every mutating method reaches the store."""
    _inner, _lease, guarded = _store(tmp_path)
    WRITES[write](guarded)


def test_reads_pass_after_the_lease_is_lost(tmp_path: Path):
    """Listing and reading never need the lease: a stopped sync can still be inspected."""
    _inner, lease, guarded = _store(tmp_path)
    lease.lose("gone")
    assert {"a.txt", "d/b.txt"} == set(guarded.list().files)
    assert b"a\n" == b"".join(guarded.read_chunks("a.txt"))
    assert 2 == guarded.file_size("d/b.txt")
    assert b"{}" == guarded.read_meta("manifest.json")
    assert (b"{}", 2) == guarded.read_meta_range("manifest.json", 0, 10)
    assert guarded.describe() == _inner.describe()


def test_a_lease_not_renewed_in_time_is_lost_without_any_refusal():
    """A lease whose last confirmed renewal is older than duration - margin counts as
    lost, even when no renewal has answered at all (storage unreachable)."""
    old = HeldLease("ws", duration=15, margin=2.5, taken_at=time.monotonic() - 13)
    with pytest.raises(LeaseLost, match="not renewed in time"):
        old.check()
    fresh = HeldLease("ws", duration=15, margin=2.5, taken_at=time.monotonic() - 13)
    fresh.renewed(time.monotonic())
    fresh.check()  # a renewal moved the deadline


def test_no_lease_means_no_guard(tmp_path: Path):
    """A lock that cannot lapse (the local stack's flock) leaves the store as it is."""
    inner = DirectoryStore(tmp_path)
    assert inner is guard(inner, None)


def test_a_guarded_local_folder_still_takes_the_index_path(tmp_path: Path):
    """The guard passes the local-folder reads through, so the worker's sync keeps its git index."""
    from gitops_sync.sync_index import local_directory

    inner, _lease, guarded = _store(tmp_path)
    assert local_directory(guarded) is guarded
    assert inner.local_root == guarded.local_root
    assert (inner.trust_mode, inner.is_empty()) == (guarded.trust_mode, guarded.is_empty())
    assert inner.observe(["a.txt"]).files.keys() == guarded.observe(["a.txt"]).files.keys()
