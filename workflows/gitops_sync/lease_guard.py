"""A workspace store that stops writing the moment the sync's lease is lost.

``guard(store, lease)`` passes reads through and asks ``lease.check()`` before every
write, so a sync whose lease lapsed stops before its next write (the manifest is
written last: the next sync repairs what was left).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from .core.model import Content, Listing
from .ports import WorkspaceStore


class Lease(Protocol):
    def check(self) -> None:
        """Raise (``ConflictError``) once the holder must not write any more."""
        ...


def guard(store: WorkspaceStore, lease: Lease | None) -> WorkspaceStore:
    """``store`` with every write checked against ``lease`` (None: a lock that cannot lapse)."""
    return store if lease is None else LeaseGuardedStore(store, lease)


class LeaseGuardedStore:
    """A ``WorkspaceStore`` whose mutating methods and ``check_writable`` check a lease first."""

    def __init__(self, store: WorkspaceStore, lease: Lease) -> None:
        self.store = store
        self.lease = lease
        self.max_concurrency = store.max_concurrency

    @property
    def case_insensitive(self) -> bool:
        return self.store.case_insensitive

    # ------------------------------------------------------------- reads: passed through
    @property
    def local_root(self) -> Path | None:
        """The folder a local store is (the sync keeps a git index there), else None."""
        return getattr(self.store, "local_root", None)

    @property
    def local_path(self) -> str | None:
        """``local_root`` as a string (without loading pathlib), else None."""
        from .sync import local_path

        return local_path(self.store)

    @property
    def trust_mode(self) -> bool:
        return bool(getattr(self.store, "trust_mode", True))

    def is_empty(self) -> bool:
        return bool(self.store.is_empty())  # type: ignore[attr-defined]

    def observe(self, paths: Iterable[str]) -> Listing:
        return self.store.observe(paths)  # type: ignore[attr-defined]

    def read_meta_range(self, name: str, offset: int, length: int) -> tuple[bytes, int] | None:
        return self.store.read_meta_range(name, offset, length)  # type: ignore[attr-defined]

    def describe(self) -> str:
        return self.store.describe()

    def name_problem(self, path: str) -> str | None:
        return self.store.name_problem(path)

    def lock(self) -> AbstractContextManager[None]:
        return self.store.lock()

    def list(self) -> Listing:
        return self.store.list()

    def hash_file(self, path: str) -> Content:
        return self.store.hash_file(path)

    def read_meta(self, name: str) -> bytes | None:
        return self.store.read_meta(name)

    def file_size(self, path: str) -> int:
        return self.store.file_size(path)

    def read_chunks(self, path: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        return self.store.read_chunks(path, start, length)

    # ------------------------------------------------------------ writes: lease first
    def check_writable(self) -> None:
        self.lease.check()
        self.store.check_writable()

    def write_file(self, path: str, mode: int, chunks: Iterable[bytes]) -> str:
        self.lease.check()
        return self.store.write_file(path, mode, chunks)

    def set_mode(self, path: str, mode: int) -> str:
        self.lease.check()
        return self.store.set_mode(path, mode)

    def rename(self, old: str, new: str) -> None:
        self.lease.check()
        self.store.rename(old, new)

    def delete_file(self, path: str) -> None:
        self.lease.check()
        self.store.delete_file(path)

    def delete_dir(self, path: str) -> None:
        self.lease.check()
        self.store.delete_dir(path)

    def clean_temporaries(self) -> None:
        self.lease.check()
        self.store.clean_temporaries()

    def write_meta(self, name: str, data: bytes) -> None:
        self.lease.check()
        self.store.write_meta(name, data)

    def append_meta(self, name: str, data: bytes, at: int) -> None:
        self.lease.check()
        self.store.append_meta(name, data, at)  # type: ignore[attr-defined]
