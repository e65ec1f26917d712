"""Git's blob id, the one place it is computed: ``sha1(b"blob <size>\\0" + bytes)``.

Used wherever bytes are checked against git (the stores' ``hash_file``, the archive stream).
"""

from __future__ import annotations

import hashlib


class BlobHasher:
    """Computes a git blob id while bytes stream past."""

    __slots__ = ("_h", "seen")

    def __init__(self, size: int) -> None:
        self._h = hashlib.sha1(b"blob %d\0" % size)  # noqa: S324 (git's object id)
        self.seen = 0

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.seen += len(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()
