"""The versions table on real Azurite: ETag-guarded transactions under real concurrency."""

from __future__ import annotations

import threading
import uuid

import pytest

from gitops_sync.adapters.tables import Tables
from gitops_sync.adapters.versions import FunctionRecord, VersionRecord, VersionStore

pytestmark = pytest.mark.azurite


@pytest.fixture()
def store(storage: str) -> VersionStore:
    return VersionStore(Tables.from_connection_string(storage, f"v{uuid.uuid4().hex[:12]}"))


def _version(name: str, n: int, writer: int) -> VersionRecord:
    return VersionRecord(name, n, f"{writer:064x}", "p" * 64, f"{name}/x.zip", "c", "t", 1, {})


def _deploy(store: VersionStore, name: str, writer: int) -> int:
    """Read the row, take the next number, write both in one transaction; retry on a lost race."""
    while True:
        found = store.get_function(name)
        rec, etag = found if found else (FunctionRecord(name), None)
        n = rec.last_version + 1
        new = FunctionRecord(name, active_version=n, last_version=n, active_sha256=f"{writer:064x}")
        if store.add_version(new, etag, _version(name, n, writer)):
            return n


def test_racing_writers_get_distinct_consecutive_numbers_and_no_lost_update(store):
    """12 threads deploy at once: versions 1..12, each once; the row counts all 12."""
    barrier = threading.Barrier(12)
    got: list[int] = []

    def writer(i: int) -> None:
        barrier.wait()
        got.append(_deploy(store, "orders", i))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert list(range(1, 13)) == sorted(got)
    assert list(range(1, 13)) == [v.version for v in store.list_versions("orders")]
    rec, _ = store.get_function("orders") or (None, None)
    assert rec is not None and 12 == rec.last_version


def test_a_stale_etag_writes_nothing(store):
    """A transaction with an old ETag fails whole: neither the version row nor the function row."""
    _deploy(store, "orders", 1)
    found = store.get_function("orders")
    assert found is not None
    rec, stale = found
    _deploy(store, "orders", 2)  # someone else moves the row on
    rec.last_version = rec.active_version = 3
    assert False is store.add_version(rec, stale, _version("orders", 3, 3))
    assert [1, 2] == [v.version for v in store.list_versions("orders")]
    assert 2 == (store.get_function("orders") or (FunctionRecord("x"),))[0].last_version


def test_get_is_none_and_delete_of_a_missing_version_succeeds(store):
    """Absent rows read as None; deleting what is gone is not an error."""
    assert None is store.get_function("nobody")
    assert None is store.get_version("nobody", 1)
    store.delete_version("nobody", 1)
    assert [] == store.list_versions("nobody")
