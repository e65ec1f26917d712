"""File-system calls of the directory store that need care: open a file without
following a link anywhere on its path, and append to a file only at a known size."""

from __future__ import annotations

import errno
import os
import stat


def open_regular(root: str, path: str) -> int:
    """Open ROOT/PATH, a regular file, read-only, never following a link at any component.

    A link as the last component is refused, and so is a linked *parent* directory
    (``dir -> /etc``): every component is opened relative to its parent with
    ``O_NOFOLLOW``. Anything else is FileNotFoundError.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    parts = path.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    raise FileNotFoundError(path) from exc
                raise
            os.close(fd)
            fd = nxt
        try:
            ffd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT, errno.EISDIR):
                raise FileNotFoundError(path) from exc
            raise
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(ffd).st_mode):
        os.close(ffd)
        raise FileNotFoundError(path)
    return ffd


def append_at(path: str, data: bytes, at: int) -> bool:
    """Write DATA at the end of PATH if it is AT bytes long; False (nothing written) if
    not. In place: a reader may see part of DATA (the caller's format tells)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size != at:
            return False
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return True
    finally:
        os.close(fd)
