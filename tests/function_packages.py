"""Function package ZIPs in the layout the packager writes (manifest.json, root files,
_include/, _deps/), built in memory for the functionapp target's tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gitops_sync.core.function_toml import FunctionSpec
from gitops_sync.core.packaging import Entry, build_package


def normalised_config(name: str, **config: Any) -> dict[str, Any]:
    """A function's normalised config: function.toml's own defaults, then ``config``."""
    return {**FunctionSpec(name, f"functions/{name}", "python3.11", "main.handle").normalised(),
            **config}  # fmt: skip


def package_bytes(
    name: str,
    files: Mapping[str, bytes | str],
    config: Mapping[str, Any],
    requirements: Sequence[Mapping[str, str]] = (),
) -> tuple[str, bytes]:
    """(content sha256, ZIP bytes), written by the real packager (``core.packaging``)."""
    data = {p: v.encode() if isinstance(v, str) else v for p, v in files.items()}
    h = hashlib.sha256(json.dumps([dict(config), list(requirements)], sort_keys=True).encode())
    for path in sorted(data):
        h.update(path.encode() + b"\0" + hashlib.sha256(data[path]).digest())
    sha = h.hexdigest()
    package = build_package(
        [Entry(p, d, p.endswith(".sh")) for p, d in sorted(data.items())],
        name=name,
        sha256=sha,
        commit="0" * 40,
        config=config,
        requirements=requirements,
    )
    return sha, package.data


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
    config = normalised_config(
        name,
        handler=handler,
        timeout_seconds=timeout_seconds,
        secrets=list(secrets),
        environment=dict(environment or {}),
    )
    sha, data = package_bytes(name, files, config, requirements)
    return name, sha, data


def dist(name: str, version: str, modules: Mapping[str, str]) -> dict[str, str]:
    """``_deps`` files of an installed distribution: its modules plus a dist-info with RECORD."""
    info = f"{name}-{version}.dist-info"
    files = {f"_deps/{p}": src for p, src in modules.items()}
    files[f"_deps/{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    record = [f"{p},," for p in modules] + [f"{info}/METADATA,,", f"{info}/RECORD,,"]
    files[f"_deps/{info}/RECORD"] = "\n".join(record) + "\n"
    return files
