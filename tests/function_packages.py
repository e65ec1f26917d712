"""Function package ZIPs in the layout the packager writes (manifest.json, root files,
_include/, _deps/), built in memory for the functionapp target's tests."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any


def function_package(
    name: str,
    files: Mapping[str, bytes | str],
    *,
    handler: str = "main.handle",
    requirements: Sequence[Mapping[str, str]] = (),
    environment: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    timeout_seconds: int = 30,
) -> tuple[str, str, bytes]:
    """(name, content sha256, ZIP bytes) of one function version; ``files`` by package path."""
    data = {p: v.encode() if isinstance(v, str) else v for p, v in files.items()}
    config: dict[str, Any] = {
        "name": name,
        "runtime": "python3.11",
        "handler": handler,
        "memory_mb": 128,
        "timeout_seconds": timeout_seconds,
        "warm_workers": 1,
        "max_concurrency": 10,
        "include": [],
        "secrets": list(secrets),
        "environment": dict(environment or {}),
    }
    h = hashlib.sha256(json.dumps([config, list(requirements)], sort_keys=True).encode())
    for path in sorted(data):
        h.update(path.encode() + b"\0" + hashlib.sha256(data[path]).digest())
    sha = h.hexdigest()
    manifest = {
        "format": 1,
        "name": name,
        "sha256": sha,
        "commit": "0" * 40,
        "config": config,
        "files": [{"path": p, "mode": "100644"} for p in sorted(data)],
        "requirements": list(requirements),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for path in sorted(data):
            zf.writestr(path, data[path])
    return name, sha, buf.getvalue()


def dist(name: str, version: str, modules: Mapping[str, str]) -> dict[str, str]:
    """``_deps`` files of an installed distribution: its modules plus a dist-info with RECORD."""
    info = f"{name}-{version}.dist-info"
    files = {f"_deps/{p}": src for p, src in modules.items()}
    files[f"_deps/{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    record = [f"{p},," for p in modules] + [f"{info}/METADATA,,", f"{info}/RECORD,,"]
    files[f"_deps/{info}/RECORD"] = "\n".join(record) + "\n"
    return files
