"""The workspace download use case: a ZIP of the last synced commit, produced as it streams.

The archive's file list is the manifest's. Each file is read while its git blob id
is computed; a file that is missing or whose id differs from the manifest's (a sync
landed mid-download) aborts the stream with ``WorkspaceChanged``, so a client gets
a failed transfer, never a valid archive mixing two commits. Memory stays flat: one
read chunk and one output buffer at a time, whatever the workspace's size.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator
from itertools import chain

from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream

from .adapters.dir_store import DirectoryStore
from .core.archive import (
    DEFLATE_LEVEL,
    PROBE_BYTES,
    ArchiveEntry,
    BlobHasher,
    archive_entries,
    compression_for,
    external_attr,
)
from .core.errors import WorkspaceError
from .core.manifest import Manifest, loads
from .ports import WorkspaceStore

log = logging.getLogger("gitops_sync")
MANIFEST = "manifest.json"
#: the stream hands the server pieces of about this size (zlib emits many tiny ones)
OUTPUT_CHUNK = 256 << 10
READ_CHUNK = 1 << 20


class WorkspaceNotSynced(WorkspaceError):
    """The workspace has no manifest yet: nothing was ever synced into it."""

    permanent = True


class WorkspaceChanged(WorkspaceError):
    """A file changed or vanished while it was being read (a sync landed meanwhile)."""

    permanent = False


def load_manifest(store: WorkspaceStore) -> Manifest:
    """The manifest of the last completed sync; ``WorkspaceNotSynced`` when there is none."""
    manifest = loads(store.read_meta(MANIFEST))
    if not manifest.commit:
        raise WorkspaceNotSynced("the workspace has not been synced yet")
    return manifest


# ------------------------------------------------------------------ reading files
def _open_beneath(root: str, path: str) -> int:
    """Open ``root/path`` read-only, never following a link at any component.

    ``DirectoryStore`` refuses a link as the last component; a linked *parent*
    directory (``dir -> /etc``) would still lead outside the workspace, so every
    component is opened relative to its parent with ``O_NOFOLLOW``.
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


def _read_fd(fd: int, start: int, length: int | None) -> Iterator[bytes]:
    with os.fdopen(fd, "rb", buffering=0) as f:
        if start:
            f.seek(start)
        left = length
        while left is None or left > 0:
            data = f.read(READ_CHUNK if left is None else min(READ_CHUNK, left))
            if not data:
                return
            if left is not None:
                left -= len(data)
            yield data


def open_file(
    store: WorkspaceStore, path: str, start: int = 0, length: int | None = None
) -> Iterator[bytes]:
    """The bytes of a workspace file (optionally a range); FileNotFoundError before any byte.

    The file is opened before this returns, so "missing" is known before a
    response starts. ``path`` must already be safe (``core.paths.safe_client_path``).
    """
    if isinstance(store, DirectoryStore):
        return _read_fd(_open_beneath(str(store.root), path), start, length)
    chunks = store.read_chunks(path, start, length)
    # Stores' readers are generators: pull the first chunk now so a missing file
    # raises here, not halfway through a response.
    first = next(chunks, None)
    return chain([first], chunks) if first is not None else iter(())


def file_size(store: WorkspaceStore, path: str) -> int:
    """The size of a regular workspace file, refusing links anywhere on the way."""
    if isinstance(store, DirectoryStore):
        fd = _open_beneath(str(store.root), path)
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)
    return store.file_size(path)


def verified_chunks(store: WorkspaceStore, entry: ArchiveEntry) -> Iterator[bytes]:
    """The bytes of ``entry``, raising ``WorkspaceChanged`` unless they are the manifest's blob."""
    try:
        chunks = open_file(store, entry.path)
    except FileNotFoundError as exc:
        raise WorkspaceChanged(f"{entry.path} vanished while it was being read") from exc
    return check_blob(chunks, entry)


def check_blob(chunks: Iterator[bytes], entry: ArchiveEntry) -> Iterator[bytes]:
    """Pass ``chunks`` through; raise ``WorkspaceChanged`` at the end unless they hash to the id.

    The check costs one SHA-1 pass, which runs while the bytes are on their way
    anyway; nothing past the recorded size is ever passed on.
    """
    hasher = BlobHasher(entry.size)
    for chunk in chunks:
        hasher.update(chunk)
        if hasher.seen > entry.size:
            break
        yield chunk
    if hasher.seen != entry.size or hasher.hexdigest() != entry.blob_id:
        raise WorkspaceChanged(f"{entry.path} changed while it was being read")


# --------------------------------------------------------------------- the archive
def stream_archive(store: WorkspaceStore, manifest: Manifest) -> Iterator[bytes]:
    """The ZIP of the manifest's files, produced piece by piece (ZIP64 where needed).

    Raises ``WorkspaceChanged`` mid-stream when the workspace moves to another
    commit meanwhile; the caller must then abort the transfer (never finish it).
    """
    entries = archive_entries(manifest.files)
    # The level goes with each deflated entry, not on the stream: zipstream-ng logs
    # a warning for every STORED entry of a stream that has a default level.
    zs = ZipStream(compress_type=ZIP_DEFLATED)
    buf = bytearray()
    try:
        for entry in entries:
            chunks = verified_chunks(store, entry)
            first = next(chunks, b"")
            method = compression_for(entry.path, first[:PROBE_BYTES])
            if method == "stored":
                zs.add(
                    chain([first], chunks), entry.path, size=entry.size, compress_type=ZIP_STORED
                )
            else:
                zs.add(chain([first], chunks), entry.path, size=entry.size,
                       compress_type=ZIP_DEFLATED, compress_level=DEFLATE_LEVEL)  # fmt: skip
            for piece in zs.all_files():
                if not buf and len(piece) >= OUTPUT_CHUNK:
                    yield piece
                    continue
                buf += piece
                if len(buf) >= OUTPUT_CHUNK:
                    yield bytes(buf)
                    buf.clear()
            _set_mode(zs, entry)
        for piece in zs.footer():
            buf += piece
        if buf:
            yield bytes(buf)
    except WorkspaceChanged as exc:
        log.warning("workspace archive of %s aborted: %s", manifest.commit, exc)
        raise


def _set_mode(zs: ZipStream, entry: ArchiveEntry) -> None:
    # zipstream-ng gives streamed entries mode 0600 and no way to pass one; the
    # mode lives only in the central directory, written at the end, so setting it
    # on the entry just streamed is safe. Pinned zipstream-ng 1.9.3 (tested).
    with contextlib.suppress(AttributeError, IndexError):
        zs._filelist[-1].external_attr = external_attr(entry.executable)
