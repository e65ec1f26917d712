"""The manifest the last sync left in ``.gitops-sync/``: what it wrote, and how it looked.

Read and written on every sync of trees with tens of thousands of files, so the
file list is not JSON: one JSON header line (commit, ref, time, functions), then
NUL-separated fields, five per file (path, blob id, size, mode in octal, stamp);
git paths cannot contain NUL. An unreadable manifest is treated as absent: every
file is then verified by hash, which is slower but never wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from .functions import RecordedFunction
from .model import RecordedFile

MANIFEST_PATH = ".gitops-sync/manifest.json"
FORMAT = 2


@dataclass(slots=True)
class Manifest:
    commit: str | None = None
    ref: str | None = None
    synced_at: str | None = None
    files: dict[str, RecordedFile] = field(default_factory=dict)
    functions: dict[str, RecordedFunction] = field(default_factory=dict)


def dumps_rows(header: Manifest, rows: Iterable[tuple[str, str, int, int, str]]) -> bytes:
    """Serialise ``header`` (its ``files`` ignored) and rows (path, blob, size, mode, stamp)."""
    head = {
        "format": FORMAT,
        "commit": header.commit,
        "ref": header.ref,
        "synced_at": header.synced_at,
        "functions": {n: [f.hash, f.directory] for n, f in sorted(header.functions.items())},
    }
    body = "\0".join(f"{p}\0{b}\0{s}\0{m:o}\0{st}" for p, b, s, m, st in rows)
    return (json.dumps(head, separators=(",", ":")) + "\n" + body).encode()


def dumps(manifest: Manifest) -> bytes:
    rows = ((p, r.blob_id, r.size, r.mode, r.stamp) for p, r in sorted(manifest.files.items()))
    return dumps_rows(manifest, rows)


def loads(data: bytes | None) -> Manifest:
    """Parse a manifest; anything unreadable gives an empty one (see module doc)."""
    if not data:
        return Manifest()
    try:
        head_raw, _, body = data.partition(b"\n")
        head = json.loads(head_raw)
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            return Manifest()
        files: dict[str, RecordedFile] = {}
        if body:
            f = body.decode("utf-8").split("\0")
            if len(f) % 5:
                return Manifest()
            it = iter(f)
            for path, blob, size, mode, stamp in zip(it, it, it, it, it, strict=True):
                files[path] = RecordedFile(blob, int(size), int(mode, 8), stamp)
        functions = {
            str(k): RecordedFunction(str(v[0]), str(v[1]))
            for k, v in head.get("functions", {}).items()
        }
        return Manifest(
            head.get("commit"), head.get("ref"), head.get("synced_at"), files, functions
        )
    except (ValueError, TypeError, IndexError, AttributeError):
        return Manifest()
