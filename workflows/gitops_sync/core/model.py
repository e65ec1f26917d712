"""Plain values the sync passes between its phases.

Paths are always POSIX, relative to the repository/workspace root, without a
leading slash. Modes are git's: 0o100644 (regular) and 0o100755 (executable).
"""

from __future__ import annotations

from .value import FrozenValue, Value

TYPE_CHECKING = False  # typing's, without loading typing (the sync's start-up); mypy reads it True

if TYPE_CHECKING:
    from typing import Literal

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_LINK = 0o120000
MODE_GITLINK = 0o160000

RESERVED_DIR = ".gitops-sync"


# Hot value types are plain slotted classes (``core.value``): a sync builds several
# per file of a 20,000-file tree, and ``dataclasses`` costs its start-up dearly.


class SourceFile(Value):
    """One entry of a commit's tree (``git ls-tree -r``); for a regular file, its
    git blob id stands for its bytes. Entries kept by the selection are synced."""

    __slots__ = ("blob_id", "mode", "path", "size")
    path: str
    mode: int
    blob_id: str
    size: int  # -1 where git reports none (submodules), or where it is not yet known

    def __init__(self, path: str, mode: int, blob_id: str, size: int) -> None:
        self.path = path
        self.mode = mode
        self.blob_id = blob_id
        self.size = size


TreeRecord = SourceFile  # a tree entry before selection: the same shape, the same object


class Skipped(FrozenValue):
    __slots__ = ("path", "reason")
    path: str
    reason: str

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason


class ObservedFile(Value):
    """A non-directory entry the workspace store lists.

    ``stamp`` is an opaque token that changes whenever the file changes (mtime,
    ctime and inode for a directory; the ETag for Azure Files). ``kind`` "link"
    marks a symbolic link, which is never followed and never kept.
    """

    __slots__ = ("kind", "path", "size", "stamp")
    path: str
    size: int
    stamp: str
    kind: Literal["file", "link"]

    def __init__(
        self, path: str, size: int, stamp: str, kind: Literal["file", "link"] = "file"
    ) -> None:
        self.path = path
        self.size = size
        self.stamp = stamp
        self.kind = kind


class Listing(Value):
    """The observed side: every file/link and every directory under the root."""

    __slots__ = ("dirs", "files")
    files: dict[str, ObservedFile]
    dirs: set[str]

    def __init__(
        self, files: dict[str, ObservedFile] | None = None, dirs: set[str] | None = None
    ) -> None:
        self.files = {} if files is None else files
        self.dirs = set() if dirs is None else dirs


class RecordedFile(Value):
    """What the last sync wrote at a path, and the stamp it saw afterwards."""

    __slots__ = ("blob_id", "mode", "size", "stamp")
    blob_id: str
    size: int
    mode: int
    stamp: str

    def __init__(self, blob_id: str, size: int, mode: int, stamp: str) -> None:
        self.blob_id = blob_id
        self.size = size
        self.mode = mode
        self.stamp = stamp


class Content(Value):
    """What a file in the workspace actually holds, found by hashing it."""

    __slots__ = ("blob_id", "mode")
    blob_id: str
    mode: int

    def __init__(self, blob_id: str, mode: int) -> None:
        self.blob_id = blob_id
        self.mode = mode


def parent_dirs(path: str) -> list[str]:
    """``a/b/c.txt`` -> ``["a", "a/b"]``."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
