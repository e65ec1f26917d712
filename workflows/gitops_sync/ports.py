"""The ports the use cases talk to; each has implementations under ``adapters/``.

``WorkspaceStore`` is the destination of a sync: a directory (the mounted Azure
Files share in Azure, a folder in development) or the Azure Files REST API.
Both pass ``tests/contract/test_workspace_store.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .core.model import RESERVED_DIR

if TYPE_CHECKING:  # the sync's start-up loads no model types before git starts
    from .core.model import Content, Listing

#: stores keep their own bookkeeping (manifest, temporaries) under this directory
META_DIR = RESERVED_DIR


class WorkspaceStore(Protocol):
    """A tree of files the sync writes into. Paths are POSIX and relative.

    Contract (every implementation):
    - ``list()`` returns every file, link and directory except ``.gitops-sync/``,
      never following links; each file carries a stamp that changes whenever the
      file's bytes or mode change.
    - ``write_file`` is atomic: readers see the old file or the whole new one under
      the final name, never a partial one. It creates missing parent directories
      and returns the new stamp.
    - ``delete_file`` / ``delete_dir`` succeed when the path is already gone;
      ``delete_dir`` removes only an empty directory.
    - ``read_meta`` returns None when absent; ``write_meta`` is atomic.
    - ``file_size`` / ``read_chunks`` raise FileNotFoundError for a missing file
      (and for a link or directory: links are never followed).
    - ``lock()`` holds the workspace against other syncs on this machine (a folder
      that ``gitops-sync sync`` may also write); ``ConflictError`` when one runs, and
      ``OSError`` where the file system cannot lock. A remote store's is a no-op.
    """

    @property
    def case_insensitive(self) -> bool:
        """True where two names differing only in case are the same file (Azure Files)."""
        ...

    #: how many writes the apply phase may run at once
    max_concurrency: int

    def describe(self) -> str: ...
    def check_writable(self) -> None: ...
    def lock(self) -> AbstractContextManager[None]: ...
    def name_problem(self, path: str) -> str | None: ...
    def list(self) -> Listing: ...
    def hash_file(self, path: str) -> Content: ...
    def write_file(self, path: str, mode: int, chunks: Iterable[bytes]) -> str: ...
    def set_mode(self, path: str, mode: int) -> str: ...
    def rename(self, old: str, new: str) -> None: ...
    def delete_file(self, path: str) -> None: ...
    def delete_dir(self, path: str) -> None: ...
    def clean_temporaries(self) -> None: ...
    def read_meta(self, name: str) -> bytes | None: ...
    def write_meta(self, name: str, data: bytes) -> None: ...
    def file_size(self, path: str) -> int: ...
    def read_chunks(
        self, path: str, start: int = 0, length: int | None = None
    ) -> Iterator[bytes]: ...


class LocalDirectory(WorkspaceStore, Protocol):
    """A store that is a folder on this machine (``local_root`` not None): the sync
    keeps a git index of it (``adapters/git_index.py``) and lists only what changed."""

    @property
    def local_root(self) -> Path: ...

    @property
    def local_path(self) -> str:
        """``local_root`` as a string (the sync's path: no pathlib)."""
        ...

    @property
    def trust_mode(self) -> bool:
        """False where chmod does not stick (an SMB mount): modes read back are ignored."""
        ...

    def is_empty(self) -> bool: ...
    def observe(self, paths: Iterable[str]) -> Listing: ...
    def read_meta_range(self, name: str, offset: int, length: int) -> tuple[bytes, int] | None: ...
    def append_meta(self, name: str, data: bytes, at: int) -> None: ...
