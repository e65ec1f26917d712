"""Workspace locks for the local stack: ``flock`` on lock files, freed the moment the holder dies.

Same ``hold(key, wait=...)`` as the blob leases of ``adapters.leases``, which coordinate
machines in Azure but outlive a ``kill -9`` by up to a minute; one machine needs no such wait.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from ..adapters.flock import hold_flock
from ..core.errors import WorkspaceNotWritable


class FileLeases:
    """``with leases.hold(key):`` holds ``key`` across threads and processes of this machine."""

    def __init__(self, folder: Path, scope: str = "") -> None:
        self.folder = folder
        # One workspace root, one set of locks (two stacks on two roots never collide).
        self.prefix = hashlib.sha256(scope.encode()).hexdigest()[:12] if scope else "locks"

    def _path(self, key: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", key)[:80] or "default"
        return self.folder / f"{self.prefix}-{safe}.lock"

    @contextlib.contextmanager
    def hold(self, key: str, *, wait: float = 0.0, poll: float = 0.05) -> Iterator[None]:
        """Hold ``key`` for the block, waiting up to ``wait`` s; else ``ConflictError``."""
        held = contextlib.ExitStack()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            busy = f"another sync holds workspace {key}"
            held.enter_context(hold_flock(self._path(key), busy, wait=wait, poll=poll))
        except OSError as exc:
            raise WorkspaceNotWritable(
                f"cannot create a lock in {self.folder}: {exc.strerror}"
            ) from exc
        with held:
            yield
