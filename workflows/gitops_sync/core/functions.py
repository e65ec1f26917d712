"""Deployable functions: ``functions/<dir>/function.toml``, its rules, and its content hash.

An invalid ``function.toml`` fails only that function, with a message naming
the file, the field and the rule. A function's hash covers its normalised
configuration and every synced file under its directory (path, mode and the
git blob id, which is itself a hash of the bytes), so it changes exactly when
something that would be deployed changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .model import SourceFile

FUNCTIONS_DIR = "functions"
FUNCTION_TOML = "function.toml"
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SUPPORTED_RUNTIMES = ("python3.10", "python3.11", "python3.12", "python3.13")
DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_SECONDS = 30
_FIELDS = {"name", "runtime", "handler", "memory_mb", "timeout_seconds", "environment"}


class FunctionConfigError(ValueError):
    """One invalid field of one function.toml; ``str()`` names file, field and rule."""

    def __init__(self, path: str, field_name: str | None, rule: str) -> None:
        where = f"{path}: field '{field_name}'" if field_name else path
        super().__init__(f"{where}: {rule}")
        self.path = path
        self.field = field_name


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    directory: str  # e.g. "functions/process-orders"
    runtime: str
    handler: str
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    environment: Mapping[str, str] = field(default_factory=dict)

    def normalised(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runtime": self.runtime,
            "handler": self.handler,
            "memory_mb": self.memory_mb,
            "timeout_seconds": self.timeout_seconds,
            "environment": dict(sorted(self.environment.items())),
        }


def _int_field(doc: dict[str, Any], path: str, key: str, default: int, lo: int, hi: int) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FunctionConfigError(
            path, key, f"must be an integer from {lo} to {hi} (got {value!r})"
        )
    return value


def parse_function_toml(path: str, data: bytes) -> FunctionSpec:
    """Parse and validate one ``functions/<dir>/function.toml``."""
    directory = path.rsplit("/", 1)[0]
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FunctionConfigError(path, None, "not valid UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise FunctionConfigError(path, None, f"not valid TOML ({exc})") from exc
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise FunctionConfigError(
            path, unknown[0], f"unknown field; allowed: {', '.join(sorted(_FIELDS))}"
        )

    name = doc.get("name", directory.rsplit("/", 1)[-1])
    if not isinstance(name, str) or not (3 <= len(name) <= 63) or not NAME_RE.match(name):
        origin = "" if "name" in doc else " (default: the directory name)"
        raise FunctionConfigError(
            path,
            "name",
            f"must be 3-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
            f" (got {name!r}{origin})",
        )
    runtime = doc.get("runtime")
    if runtime not in SUPPORTED_RUNTIMES:
        raise FunctionConfigError(
            path, "runtime", f"must be one of {', '.join(SUPPORTED_RUNTIMES)} (got {runtime!r})"
        )
    handler = doc.get("handler")
    if not isinstance(handler, str) or not HANDLER_RE.match(handler):
        raise FunctionConfigError(
            path, "handler", f"must be 'module.function', e.g. 'main.handle' (got {handler!r})"
        )
    memory = _int_field(doc, path, "memory_mb", DEFAULT_MEMORY_MB, 64, 8192)
    timeout = _int_field(doc, path, "timeout_seconds", DEFAULT_TIMEOUT_SECONDS, 1, 900)
    env = doc.get("environment", {})
    if not isinstance(env, dict):
        raise FunctionConfigError(path, "environment", 'must be a table of NAME = "value"')
    for key, value in env.items():
        if not ENV_NAME_RE.match(key):
            raise FunctionConfigError(path, f"environment.{key}", "must be a valid variable name")
        if not isinstance(value, str):
            raise FunctionConfigError(
                path, f"environment.{key}", f"must be a string (got {value!r})"
            )
    return FunctionSpec(name, directory, runtime, handler, memory, timeout, dict(env))


def find_function_tomls(desired: Mapping[str, SourceFile]) -> list[str]:
    """Paths of ``functions/<dir>/function.toml`` among the synced files, sorted."""
    prefix, suffix = FUNCTIONS_DIR + "/", "/" + FUNCTION_TOML
    return sorted(
        p for p in desired if p.startswith(prefix) and p.endswith(suffix) and p.count("/") == 2
    )


def function_hash(spec: FunctionSpec, desired: Mapping[str, SourceFile]) -> str:
    """sha256 over the normalised config and (path, mode, blob id) of every file."""
    h = hashlib.sha256()
    h.update(json.dumps(spec.normalised(), sort_keys=True).encode())
    prefix = spec.directory + "/"
    for path in sorted(p for p in desired if p.startswith(prefix)):
        f = desired[path]
        h.update(f"\n{path[len(prefix) :]}\0{f.mode:o}\0{f.blob_id}".encode())
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class RecordedFunction:
    hash: str
    directory: str


@dataclass(slots=True)
class FunctionReport:
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    invalid: list[dict[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)
    specs: dict[str, FunctionSpec] = field(default_factory=dict)

    def recorded(self) -> dict[str, RecordedFunction]:
        return {n: RecordedFunction(h, self.specs[n].directory) for n, h in self.hashes.items()}

    def as_json(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "unchanged": self.unchanged,
            "invalid": self.invalid,
            "removed": self.removed,
        }


def detect_function_changes(
    desired: Mapping[str, SourceFile],
    toml_bytes: Mapping[str, bytes],
    recorded: Mapping[str, RecordedFunction],
) -> FunctionReport:
    """Validate every function and compare its hash with the one last recorded."""
    report = FunctionReport()
    owner: dict[str, str] = {}
    for path in sorted(toml_bytes):
        try:
            spec = parse_function_toml(path, toml_bytes[path])
            if spec.name in owner:
                raise FunctionConfigError(
                    path, "name", f"'{spec.name}' is already used by {owner[spec.name]}"
                )
        except FunctionConfigError as exc:
            report.invalid.append({"path": path, "error": str(exc)})
            continue
        owner[spec.name] = path
        digest = function_hash(spec, desired)
        report.hashes[spec.name] = digest
        report.specs[spec.name] = spec
        before = recorded.get(spec.name)
        same = before is not None and before.hash == digest
        (report.unchanged if same else report.changed).append(spec.name)
    # a function whose toml turned invalid keeps its last good version: not "removed"
    invalid_dirs = {p["path"].rsplit("/", 1)[0] for p in report.invalid}
    report.removed = sorted(
        n for n, r in recorded.items() if n not in report.hashes and r.directory not in invalid_dirs
    )
    report.changed.sort()
    report.unchanged.sort()
    return report
