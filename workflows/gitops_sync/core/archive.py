"""Pure rules of the workspace archive: which entries, in what order, compressed how, named what.

No I/O here: the use case (``gitops_sync.archive``) feeds bytes through these rules
and the HTTP layer turns the results into headers.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Literal

from .blobid import BlobHasher as BlobHasher  # re-exported for the archive stream
from .model import MODE_EXEC, RESERVED_DIR, RecordedFile
from .paths import safe_relative_path

#: deflate level of every compressed entry; 6 is zlib's and ``zip``'s default
DEFLATE_LEVEL = 6

Method = Literal["stored", "deflated"]

# Formats that are already compressed: deflating them again costs CPU and saves nothing.
# fmt: off
PRECOMPRESSED_SUFFIXES = frozenset({
    "7z", "aac", "apk", "avif", "br", "bz2", "cab", "deb", "docx", "epub", "flac", "gif", "gz",
    "heic", "jar", "jpeg", "jpg", "lz", "lz4", "lzma", "m4a", "m4v", "mkv", "mov", "mp3", "mp4",
    "mpg", "npz", "odp", "ods", "odt", "ogg", "opus", "png", "pptx", "rar", "rpm", "tbz2",
    "tgz", "txz", "war", "webm", "webp", "whl", "woff", "woff2", "xlsx", "xz", "z", "zip",
    "zst",
})
# fmt: on

# Leading bytes of compressed formats, for files whose name says nothing.
_MAGIC = (
    b"\x1f\x8b",  # gzip
    b"PK\x03\x04",  # zip, jar, docx, whl
    b"BZh",  # bzip2
    b"\xfd7zXZ\x00",  # xz
    b"(\xb5/\xfd",  # zstd
    b"7z\xbc\xaf\x27\x1c",  # 7-zip
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # jpeg
    b"GIF8",
    b"Rar!\x1a\x07",
    b"\x04\x22\x4d\x18",  # lz4 frame
    b"OggS",
    b"fLaC",
    b"wOFF",
    b"wOF2",
)
#: how much of a file's head the cheap probe compresses
PROBE_BYTES = 16 << 10
#: smaller files are not probed: deflating them costs less than the probe would save
PROBE_MIN_SIZE = 256 << 10


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One file of the archive, as the manifest recorded it."""

    path: str
    size: int
    blob_id: str
    executable: bool


def archive_entries(files: dict[str, RecordedFile]) -> list[ArchiveEntry]:
    """The manifest's files in archive order: sorted by path, bookkeeping and unsafe names left out.

    Sorting by the UTF-8 bytes makes the order the same on every machine and host.
    A name ``safe_relative_path`` would not serve (``..``, absolute, reserved) never
    reaches an archive, even from a tampered manifest.
    """
    entries = [
        ArchiveEntry(path, rec.size, rec.blob_id, rec.mode == MODE_EXEC)
        for path, rec in files.items()
        if safe_relative_path(path) == path and path and not _reserved(path)
    ]
    entries.sort(key=lambda e: e.path.encode("utf-8", "surrogateescape"))
    return entries


def _reserved(path: str) -> bool:
    return path == RESERVED_DIR or path.startswith(RESERVED_DIR + "/")


def looks_compressed(head: bytes, size: int) -> bool:
    """True when ``head`` (the first bytes of a ``size``-byte file) is already compressed.

    Magic bytes first; then, for files of ``PROBE_MIN_SIZE`` or more, a probe that
    deflates ``PROBE_BYTES`` at level 1 (about 0.1 ms, against deflating a whole
    incompressible file for nothing).
    """
    if head.startswith(_MAGIC):
        return True
    if head[4:8] == b"ftyp" or (head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"AVI ")):
        return True  # mp4/mov/heic, webp/avi
    if size < PROBE_MIN_SIZE or len(head) < PROBE_BYTES:
        return False
    sample = head[:PROBE_BYTES]
    return len(zlib.compress(sample, 1)) >= len(sample) * 0.97


def compression_for(path: str, head: bytes, size: int) -> Method:
    """STORED for already-compressed content (by suffix, then by probe), DEFLATED otherwise."""
    name = path.rsplit("/", 1)[-1]
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix in PRECOMPRESSED_SUFFIXES or looks_compressed(head, size):
        return "stored"
    return "deflated"


def external_attr(executable: bool) -> int:
    """The ZIP external attributes of a regular file: Unix mode in the high 16 bits."""
    return (0o100755 if executable else 0o100644) << 16


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def archive_filename(repository: str | None, commit: str) -> str:
    """``<repo>-<short commit>.zip``: the repository's name (not owner), made filename-safe."""
    name = (repository or "").rstrip("/").rsplit("/", 1)[-1]
    name = name.removesuffix(".git")
    name = _UNSAFE_NAME.sub("-", name).strip("-.") or "workspace"
    short = _UNSAFE_NAME.sub("", commit)[:12] or "unknown"
    return f"{name[:80]}-{short}.zip"


def content_disposition(filename: str) -> str:
    """An ``attachment`` header value; the name is already ASCII-safe (``archive_filename``)."""
    return f'attachment; filename="{filename}"'


def etag_for(value: str) -> str:
    return f'"{value}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an ``If-None-Match`` list against ``etag``."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """One ``bytes=`` range of a file of ``size`` bytes as ``(start, end_inclusive)``.

    None means "serve the whole file" (no header, a syntax this server ignores,
    or several ranges, which RFC 9110 lets a server answer with the whole
    representation); "unsatisfiable" means 416.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1
    start = int(first)
    if start >= size:
        return "unsatisfiable"
    end = size - 1 if last == "" else min(int(last), size - 1)
    if end < start:
        return None  # invalid range-spec: ignored, as RFC 9110 says
    return start, end
