"""The runtime's value types: a version to run, an invocation's answer, errors between layers.

Everything here is plain data; the process and pool code lives in worker.py, pool.py and runtime.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_BODY_BYTES = 6 * 1024 * 1024  # request bodies past this get 413
FUNCTIONS_LOGGER = "gitops_sync.functions"


@dataclass(frozen=True)
class VersionRef:
    """One immutable version of one function."""

    name: str
    version: int
    sha256: str  # content hash (identity)
    package_sha256: str  # sha256 of the ZIP bytes: checked before unpacking
    config: Mapping[str, Any] = field(hash=False, compare=False)

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.name, self.version, self.sha256)


@dataclass(frozen=True)
class InvokeResult:
    """What an invocation answers: an HTTP status, JSON bytes and a few headers."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


def error_result(
    status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> InvokeResult:
    """An error answer: ``{"error": message, ...extra}``."""
    body = json.dumps({"error": message, **extra}).encode()
    return InvokeResult(status, body, {"Content-Type": "application/json", **(headers or {})})


class WorkerStartError(Exception):
    """A worker could not be started; ``status`` is what the invocation answers (500 or 502)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


class WorkerLost(Exception):
    """The worker process died or broke its protocol during an invocation."""


class WorkerTimedOut(Exception):
    """The invocation ran past its deadline; the worker has been killed."""
