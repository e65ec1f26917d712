"""Plain values the sync passes between its phases.

Paths are always POSIX, relative to the repository/workspace root, without a
leading slash. Modes are git's: 0o100644 (regular) and 0o100755 (executable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_LINK = 0o120000
MODE_GITLINK = 0o160000

RESERVED_DIR = ".gitops-sync"


# Hot value types are plain (not frozen) slotted dataclasses: a frozen dataclass is
# ~4x slower to build, and a sync builds several per file of a 20,000-file tree.


@dataclass(slots=True)
class SourceFile:
    """One entry of a commit's tree (``git ls-tree -r``); for a regular file, its
    git blob id stands for its bytes. Entries kept by the selection are synced."""

    path: str
    mode: int
    blob_id: str
    size: int  # -1 where git reports none (submodules)


TreeRecord = SourceFile  # a tree entry before selection: the same shape, the same object


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


@dataclass(slots=True)
class ObservedFile:
    """A non-directory entry the workspace store lists.

    ``stamp`` is an opaque token that changes whenever the file changes (mtime,
    ctime and inode for a directory; the ETag for Azure Files). ``kind`` "link"
    marks a symbolic link, which is never followed and never kept.
    """

    path: str
    size: int
    stamp: str
    kind: Literal["file", "link"] = "file"


@dataclass(slots=True)
class Listing:
    """The observed side: every file/link and every directory under the root."""

    files: dict[str, ObservedFile] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)


@dataclass(slots=True)
class RecordedFile:
    """What the last sync wrote at a path, and the stamp it saw afterwards."""

    blob_id: str
    size: int
    mode: int
    stamp: str


@dataclass(slots=True)
class Content:
    """What a file in the workspace actually holds, found by hashing it."""

    blob_id: str
    mode: int


def parent_dirs(path: str) -> list[str]:
    """``a/b/c.txt`` -> ``["a", "a/b"]``."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
