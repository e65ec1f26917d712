"""One exclusive ``flock`` on a file: freed the moment its holder dies, even by ``kill -9``.

The one place the sync takes a machine-local lock: ``DirectoryStore.lock`` (one sync
per workspace folder) and ``local.file_leases`` (the local stack's leases) both use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator

from ..core.errors import ConflictError
from .git_early import adopt_lock


@contextlib.contextmanager
def hold_flock(
    path: str | os.PathLike[str], busy: str, *, wait: float = 0.0, poll: float = 0.05
) -> Iterator[None]:
    """Hold PATH's lock for the block, waiting up to WAIT s; else ``ConflictError(busy)``.

    Each call opens its own file description, so two threads exclude each other too.
    Opening PATH may raise ``OSError`` (a read-only or lock-less mount): the caller decides.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    held = adopt_lock(fd)  # this process took it already, before its imports
    if held is not None:
        os.close(fd)
        fd = held
    try:
        deadline = time.monotonic() + wait
        while True:
            if held is not None:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ConflictError(busy) from None
                time.sleep(poll)
        yield
    finally:
        os.close(fd)  # closing releases the lock
