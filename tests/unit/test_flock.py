"""The one flock helper: exclusive across holders, released on exit, used by both lock users."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.adapters.flock import hold_flock
from gitops_sync.core.errors import ConflictError
from gitops_sync.local.file_leases import FileLeases


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    """While one block holds the lock another gets ConflictError; afterwards it gets the lock."""
    lock = tmp_path / "x.lock"
    with (
        hold_flock(lock, "busy"),
        pytest.raises(ConflictError, match="busy"),
        hold_flock(lock, "busy"),
    ):
        pass
    with hold_flock(lock, "busy"):
        pass


def test_a_waiting_holder_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    """A holder waiting up to 60 s gets the lock as soon as the other block ends."""
    lock = tmp_path / "x.lock"
    held, release, got = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with hold_flock(lock, "busy"):
            held.set()
            release.wait(60)

    t = threading.Thread(target=first)
    t.start()
    assert held.wait(60)
    release.set()
    with hold_flock(lock, "busy", wait=60, poll=0.01):
        got.set()
    t.join(60)
    assert got.is_set()


def test_store_lock_and_file_leases_exclude_like_before(tmp_path: Path) -> None:
    """DirectoryStore.lock and FileLeases.hold both refuse a second holder with their message."""
    store = DirectoryStore(tmp_path / "ws")
    with (
        store.lock(),
        pytest.raises(ConflictError, match="another sync is running"),
        DirectoryStore(tmp_path / "ws").lock(),
    ):
        pass
    leases = FileLeases(tmp_path / "locks")
    with (
        leases.hold("conn"),
        pytest.raises(ConflictError, match="holds workspace conn"),
        leases.hold("conn"),
    ):
        pass
