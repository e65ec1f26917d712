"""Builds function packages in the layout the deploy side produces, for runtime tests and benches.

``make_package`` returns the ZIP bytes and a VersionRef naming them; ``PackageStore`` plays the
deploy side's ``load_package`` (it counts loads, and can be told to fail).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitops_sync.runtime import VersionRef
from tests.function_packages import normalised_config, package_bytes


def make_package(
    name: str,
    version: int,
    files: Mapping[str, str | bytes],
    **config: Any,
) -> tuple[VersionRef, bytes]:
    """A package ZIP (manifest.json + ``files`` at their paths) and the VersionRef naming it."""
    normalised = normalised_config(name, **config)
    sha256, data = package_bytes(name, files, normalised)
    ref = VersionRef(name, version, sha256, hashlib.sha256(data).hexdigest(), normalised)
    return ref, data


@dataclass
class PackageStore:
    """An in-memory ``load_package``: packages by (name, version); counts every load."""

    packages: dict[tuple[str, int], bytes] = field(default_factory=dict)
    loads: list[tuple[str, int]] = field(default_factory=list)
    fail_with: Exception | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self, name: str, version: int, files: Mapping[str, str | bytes], **config: Any
    ) -> VersionRef:
        ref, data = make_package(name, version, files, **config)
        self.packages[(name, version)] = data
        return ref

    def __call__(self, ref: VersionRef) -> bytes:
        with self._lock:
            self.loads.append((ref.name, ref.version))
        if self.fail_with is not None:
            raise self.fail_with
        return self.packages[(ref.name, ref.version)]
