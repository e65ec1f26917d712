"""Byte-reproducible ZIP packages: sorted entries, one fixed timestamp, normalised modes.

The same members always give the same bytes, whatever the machine, umask,
checkout time or file order (the rules of Bazel's rules_pkg): entries sorted by
name, DOS time from ``SOURCE_DATE_EPOCH`` clamped to 1980-01-01 and up, modes
0644/0755, no extra fields, deflate at one level, no directory entries.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .functions import PACKAGE_MANIFEST

PACKAGE_FORMAT = 1
DOS_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a ZIP entry can hold
COMPRESS_LEVEL = 6  # zip's own default; one level for every entry
MODE_FILE, MODE_EXEC = 0o644, 0o755


def fixed_date_time(source_date_epoch: str | None) -> tuple[int, int, int, int, int, int]:
    """The one timestamp every entry carries: ``SOURCE_DATE_EPOCH`` (UTC), at least 1980."""
    try:
        epoch = int(source_date_epoch) if source_date_epoch else DOS_EPOCH
    except ValueError:
        epoch = DOS_EPOCH
    t = time.gmtime(max(epoch, DOS_EPOCH))
    # DOS time has 2-second resolution: round down so the value is stable
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec - t.tm_sec % 2)


@dataclass(frozen=True, slots=True)
class Entry:
    """One file to package: its path inside the ZIP, executable or not, and its bytes."""

    path: str
    executable: bool
    data: bytes


def entry_mode(executable: bool) -> int:
    return MODE_EXEC if executable else MODE_FILE


def write_zip(entries: Iterable[Entry], date_time: tuple[int, int, int, int, int, int]) -> bytes:
    """The ZIP of ``entries``, sorted by path; the same entries always give the same bytes."""
    ordered = sorted(entries, key=lambda e: e.path)
    seen: set[str] = set()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", allowZip64=True) as zf:
        for e in ordered:
            if e.path in seen:
                raise ValueError(f"two package entries named {e.path!r}")
            seen.add(e.path)
            info = zipfile.ZipInfo(e.path, date_time=date_time)
            info.create_system = 3  # unix, so the mode bits below mean what they say
            info.external_attr = (0o100000 | entry_mode(e.executable)) << 16
            zf.writestr(
                info, e.data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL
            )
    return out.getvalue()


def package_manifest(
    *,
    name: str,
    sha256: str,
    commit: str,
    config: Mapping[str, Any],
    files: Sequence[Entry],
    requirements: Sequence[Mapping[str, str]],
) -> Entry:
    """``manifest.json``: what the package is, built from which commit, and every file in it."""
    doc = {
        "format": PACKAGE_FORMAT,
        "name": name,
        "sha256": sha256,
        "commit": commit,
        "config": dict(config),
        "files": [
            {
                "path": f.path,
                "mode": f"{entry_mode(f.executable):04o}",
                "size": len(f.data),
                "sha256": hashlib.sha256(f.data).hexdigest(),
            }
            for f in sorted(files, key=lambda f: f.path)
        ],
        "requirements": [dict(r) for r in requirements],
    }
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    return Entry(PACKAGE_MANIFEST, False, text.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Package:
    """A built package: its bytes and their sha256 (what a loader checks)."""

    data: bytes
    package_sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


def build_package(
    files: Sequence[Entry],
    *,
    name: str,
    sha256: str,
    commit: str,
    config: Mapping[str, Any],
    requirements: Sequence[Mapping[str, str]] = (),
    source_date_epoch: str | None = None,
) -> Package:
    """The function's files plus its ``manifest.json``, as a reproducible ZIP."""
    manifest = package_manifest(
        name=name,
        sha256=sha256,
        commit=commit,
        config=config,
        files=files,
        requirements=requirements,
    )
    data = write_zip([*files, manifest], fixed_date_time(source_date_epoch))
    return Package(data, hashlib.sha256(data).hexdigest())


def read_manifest(data: bytes) -> dict[str, Any]:
    """The ``manifest.json`` of a package's bytes (raises ``ValueError`` if it has none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            doc = json.loads(zf.read(PACKAGE_MANIFEST))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a function package: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != PACKAGE_FORMAT:
        raise ValueError("not a function package of a known format")
    return doc
