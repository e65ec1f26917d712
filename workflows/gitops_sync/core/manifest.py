"""The manifest the last sync left in ``.gitops-sync/``: what it wrote, and how it looked.

Serialised as compact JSON (one array per file) because it is read and written
on every sync of trees with tens of thousands of files. An unreadable manifest
is treated as absent: every file is then verified by hash, which is slower but
never wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .functions import RecordedFunction
from .model import RecordedFile

MANIFEST_PATH = ".gitops-sync/manifest.json"
FORMAT = 1


@dataclass(slots=True)
class Manifest:
    commit: str | None = None
    ref: str | None = None
    synced_at: str | None = None
    files: dict[str, RecordedFile] = field(default_factory=dict)
    functions: dict[str, RecordedFunction] = field(default_factory=dict)


def dumps(manifest: Manifest) -> bytes:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "commit": manifest.commit,
        "ref": manifest.ref,
        "synced_at": manifest.synced_at,
        "functions": {n: [f.hash, f.directory] for n, f in sorted(manifest.functions.items())},
        "files": {
            p: [r.blob_id, r.size, r.mode, r.stamp] for p, r in sorted(manifest.files.items())
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def loads(data: bytes | None) -> Manifest:
    """Parse a manifest; anything unreadable gives an empty one (see module doc)."""
    if not data:
        return Manifest()
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            return Manifest()
        files = {
            str(p): RecordedFile(str(v[0]), int(v[1]), int(v[2]), str(v[3]))
            for p, v in doc.get("files", {}).items()
        }
        functions = {
            str(k): RecordedFunction(str(v[0]), str(v[1]))
            for k, v in doc.get("functions", {}).items()
        }
        return Manifest(doc.get("commit"), doc.get("ref"), doc.get("synced_at"), files, functions)
    except (ValueError, TypeError, IndexError, AttributeError):
        return Manifest()
