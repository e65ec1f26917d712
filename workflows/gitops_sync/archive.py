"""The workspace download use case: a ZIP of the last synced commit, produced as it streams.

The archive's file list is the manifest's. Each file is read while its git blob id
is computed; a file that is missing or whose id differs from the manifest's (a sync
landed mid-download) aborts the stream with ``WorkspaceChanged``, so a client gets
a failed transfer, never a valid archive mixing two commits. Memory stays flat: one
read chunk and a few output pieces at a time, plus ~100 bytes per entry (the ZIP's
central directory), whatever the files' sizes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from itertools import chain

from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream

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
def open_file(
    store: WorkspaceStore, path: str, start: int = 0, length: int | None = None
) -> Iterator[bytes]:
    """The bytes of a workspace file (optionally a range); FileNotFoundError before any byte.

    The file is opened before this returns, so "missing" is known before a
    response starts. ``path`` must already be safe (``core.paths.safe_client_path``).
    """
    chunks = store.read_chunks(path, start, length)
    # Stores' readers are generators: pull the first chunk now so a missing file
    # raises here, not halfway through a response.
    first = next(chunks, None)
    return chain([first], chunks) if first is not None else iter(())


def verified_chunks(store: WorkspaceStore, entry: ArchiveEntry) -> Iterator[bytes]:
    """The bytes of ``entry``, raising ``WorkspaceChanged`` unless they are the manifest's blob."""
    try:
        chunks = open_file(store, entry.path)
    except FileNotFoundError as exc:
        raise WorkspaceChanged(f"{entry.path} vanished while it was being read") from exc
    return check_blob(chunks, entry)


def check_blob(chunks: Iterator[bytes], entry: ArchiveEntry) -> Iterator[bytes]:
    """Pass ``chunks`` through; raise ``WorkspaceChanged`` unless they hash to the blob id.

    The last chunk is held back until the id is checked, so a file served with a
    Content-Length never arrives complete with the wrong bytes (same size, other
    content): the transfer stops short instead. Nothing past the recorded size is
    ever passed on. The check is one SHA-1 pass over bytes read anyway.
    """
    hasher = BlobHasher(entry.size)
    held: bytes | None = None
    for chunk in chunks:
        hasher.update(chunk)
        if hasher.seen > entry.size:
            break
        if held is not None:
            yield held
        held = chunk
    if hasher.seen != entry.size or hasher.hexdigest() != entry.blob_id:
        raise WorkspaceChanged(f"{entry.path} changed while it was being read")
    if held is not None:
        yield held


# --------------------------------------------------------------------- the archive
def stream_archive(store: WorkspaceStore, manifest: Manifest) -> Iterator[bytes]:
    """The ZIP of the manifest's files, produced piece by piece (ZIP64 where needed).

    Raises ``WorkspaceChanged`` mid-stream when the workspace moves to another
    commit meanwhile; the caller must then abort the transfer (never finish it).
    """
    entries = archive_entries(manifest.files)
    commit = manifest.commit
    del manifest  # the entries are all that is needed: let the parsed manifest go
    # The level goes with each deflated entry, not on the stream: zipstream-ng logs
    # a warning for every STORED entry of a stream that has a default level.
    zs = ZipStream(compress_type=ZIP_DEFLATED)
    # Small pieces are gathered and joined once: growing and clearing one buffer
    # would reallocate it at every piece.
    pending: list[bytes] = []
    pending_size = 0
    try:
        for entry in entries:
            chunks = verified_chunks(store, entry)
            first = next(chunks, b"")
            method = compression_for(entry.path, first[:PROBE_BYTES], entry.size)
            if method == "stored":
                zs.add(
                    chain([first], chunks), entry.path, size=entry.size, compress_type=ZIP_STORED
                )
            else:
                zs.add(chain([first], chunks), entry.path, size=entry.size,
                       compress_type=ZIP_DEFLATED, compress_level=DEFLATE_LEVEL)  # fmt: skip
            for piece in zs.all_files():
                if not pending and len(piece) >= OUTPUT_CHUNK:
                    yield piece
                    continue
                pending.append(piece)
                pending_size += len(piece)
                if pending_size >= OUTPUT_CHUNK:
                    yield b"".join(pending)
                    pending.clear()
                    pending_size = 0
            _settle(zs, entry)
        pending.extend(zs.footer())
        if pending:
            yield b"".join(pending)
    except WorkspaceChanged as exc:
        log.warning("workspace archive of %s aborted: %s", commit, exc)
        raise


class _WrittenEntry:
    """All zipstream-ng's footer needs of a streamed entry: its central-directory record."""

    __slots__ = ("_record",)

    def __init__(self, record: bytes) -> None:
        self._record = record

    def _central_directory_header_data(self) -> bytes:
        return self._record


def _settle(zs: ZipStream, entry: ArchiveEntry) -> None:
    """Give the entry just streamed its Unix mode, and keep only its ~100-byte record.

    zipstream-ng streams entries with mode 0600 and no way to pass one, and keeps
    a full ZipInfo (~1.4 KiB) per entry until the footer: with 100,000 files that
    alone would be 140 MiB. The mode lives only in the central directory, written
    at the end, so both are safe to settle once the entry's bytes are out. This
    touches zipstream-ng internals (pinned 1.9.3); every archive test reads the
    result back with ``zipfile``, so a change there fails loudly.
    """
    with contextlib.suppress(AttributeError, IndexError):
        info = zs._filelist[-1]
        info.external_attr = external_attr(entry.executable)
        zs._filelist[-1] = _WrittenEntry(info._central_directory_header_data())
