"""Byte-reproducible ZIP files: the same entries always give the same bytes.

Entries sorted by name, one DOS timestamp (1980-01-01, or ``SOURCE_DATE_EPOCH``
clamped to 1980..2107), modes 0644/0755, no extra fields, one deflate level.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

from .paths import safe_relative_path

#: deflate level of every entry; 6 is zlib's and ``zip``'s default
ZIP_DEFLATE_LEVEL = 6
DOS_EPOCH = (1980, 1, 1, 0, 0, 0)
_DOS_MIN = 315532800  # 1980-01-01T00:00:00Z
_DOS_MAX = 4354819198  # 2107-12-31T23:59:58Z, the last DOS timestamp
_UNIX = 3  # create_system: the mode bits in external_attr are Unix ones


@dataclass(frozen=True, slots=True)
class ZipEntry:
    path: str  # '/'-separated, relative, no '..'
    data: bytes
    executable: bool = False


class ZipLayoutError(ValueError):
    """An entry's name is unsafe or used twice."""


def zip_timestamp(source_date_epoch: int | None) -> tuple[int, int, int, int, int, int]:
    """The DOS date_time of every entry: 1980-01-01, or the epoch clamped to DOS's range."""
    if source_date_epoch is None:
        return DOS_EPOCH
    seconds = min(max(source_date_epoch, _DOS_MIN), _DOS_MAX)
    t = time.gmtime(seconds - seconds % 2)  # DOS time has a 2-second resolution
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def write_zip(entries: Iterable[ZipEntry], *, source_date_epoch: int | None = None) -> bytes:
    """The ZIP bytes of ``entries``; raises ``ZipLayoutError`` for a bad or repeated name."""
    by_path: dict[str, ZipEntry] = {}
    for entry in entries:
        if not entry.path or safe_relative_path(entry.path) != entry.path:
            raise ZipLayoutError(f"unsafe entry name {entry.path!r}")
        if entry.path in by_path:
            raise ZipLayoutError(f"entry {entry.path!r} appears twice")
        by_path[entry.path] = entry
    stamp = zip_timestamp(source_date_epoch)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=ZIP_DEFLATE_LEVEL) as zf:
        for path in sorted(by_path):
            entry = by_path[path]
            info = zipfile.ZipInfo(path, date_time=stamp)
            info.create_system = _UNIX
            info.external_attr = (0o100755 if entry.executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.extra = b""
            zf.writestr(info, entry.data, compresslevel=ZIP_DEFLATE_LEVEL)
    return buf.getvalue()


def is_executable(info: zipfile.ZipInfo) -> bool:
    """Whether a read entry carries an executable bit (Unix mode in ``external_attr``)."""
    return bool((info.external_attr >> 16) & 0o111)
