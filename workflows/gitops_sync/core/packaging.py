"""A function's package: its files plus ``manifest.json``, as a byte-reproducible ZIP.

The ZIP rules are ``core.zipwrite``'s (those of Bazel's rules_pkg): entries sorted,
one DOS time from ``SOURCE_DATE_EPOCH`` clamped to 1980-01-01 and up, modes
0644/0755, no extra fields, one deflate level, no directory entries.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .functions import PACKAGE_MANIFEST
from .zipwrite import ZipEntry, write_zip

PACKAGE_FORMAT = 1
MODE_FILE, MODE_EXEC = 0o644, 0o755
Entry = ZipEntry  # one file to package: its path inside the ZIP, its bytes, executable or not


def epoch_from(source_date_epoch: str | None) -> int | None:
    """``SOURCE_DATE_EPOCH`` as a number (None when unset or not a number: 1980-01-01)."""
    raw = (source_date_epoch or "").strip()
    return int(raw) if raw.isdigit() else None


def entry_mode(executable: bool) -> int:
    return MODE_EXEC if executable else MODE_FILE


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
    return Entry(PACKAGE_MANIFEST, text.encode("utf-8"))


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
    data = write_zip([*files, manifest], source_date_epoch=epoch_from(source_date_epoch))
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
