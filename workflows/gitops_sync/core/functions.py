"""Deployable functions: what a function's package holds, and its content hash.

A function is ``functions/<dir>/function.toml`` (rules in ``function_toml``).
Its package is its directory's synced files at the root plus each ``include``
directory under ``_include/<last part>/``; the content hash covers the
normalised config and (package path, mode, git blob id) of every member, so it
changes exactly when something that would be deployed changes.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .function_report import FunctionReport, RecordedFunction, find_function_tomls
from .function_toml import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_SECONDS,
    FUNCTION_TOML,
    FUNCTIONS_DIR,
    SUPPORTED_RUNTIMES,
    FunctionConfigError,
    FunctionSpec,
    parse_function_toml,
)
from .model import MODE_EXEC, SourceFile

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_SECONDS",
    "FUNCTIONS_DIR",
    "FUNCTION_TOML",
    "SUPPORTED_RUNTIMES",
    "FunctionConfigError",
    "FunctionReport",
    "FunctionSpec",
    "Member",
    "RecordedFunction",
    "detect_function_changes",
    "find_function_tomls",
    "function_hash",
    "package_members",
    "parse_function_toml",
]

INCLUDE_DIR = "_include"
DEPS_DIR = "_deps"
PACKAGE_MANIFEST = "manifest.json"
#: names at a package's root that the package format itself uses
RESERVED_ROOT_NAMES = (PACKAGE_MANIFEST, INCLUDE_DIR, DEPS_DIR)


@dataclass(frozen=True, slots=True)
class Member:
    """One file of a function's package: where it goes, and the git blob it comes from."""

    path: str  # inside the package
    mode: int
    blob_id: str
    size: int
    source: str  # the repository path


class SortedPaths:
    """The synced paths, sorted once, so each directory's files are found by bisection."""

    def __init__(self, desired: Mapping[str, SourceFile]) -> None:
        self.desired = desired
        self.paths = sorted(desired)

    def under(self, directory: str) -> list[str]:
        prefix = directory.rstrip("/") + "/"
        lo = bisect.bisect_left(self.paths, prefix)
        hi = bisect.bisect_left(self.paths, prefix[:-1] + "0")  # "0" sorts right after "/"
        return self.paths[lo:hi]


def package_members(spec: FunctionSpec, index: SortedPaths) -> list[Member]:
    """Every file of ``spec``'s package, sorted by package path.

    Raises ``FunctionConfigError`` (naming the function.toml) for an ``include``
    directory with no synced files, or a file whose name the package format reserves.
    """
    toml_path = f"{spec.directory}/{FUNCTION_TOML}"
    problems: list[tuple[str | None, str]] = []
    members: list[Member] = []
    prefix = spec.directory + "/"
    for path in index.under(spec.directory):
        rel = path[len(prefix) :]
        top = rel.split("/", 1)[0]
        if top in RESERVED_ROOT_NAMES:
            problems.append((None, f"'{path}' uses a name packages reserve ({top}); rename it"))
            continue
        f = index.desired[path]
        members.append(Member(rel, f.mode, f.blob_id, f.size, path))
    for inc in spec.include:
        base = inc.rsplit("/", 1)[-1]
        found = index.under(inc)
        if not found:
            problems.append(("include", f"'{inc}' has no synced files in this commit"))
        for path in found:
            f = index.desired[path]
            rel = f"{INCLUDE_DIR}/{base}/{path[len(inc) + 1 :]}"
            members.append(Member(rel, f.mode, f.blob_id, f.size, path))
    if problems:
        raise FunctionConfigError(toml_path, problems)
    members.sort(key=lambda m: m.path)
    return members


def function_hash(spec: FunctionSpec, members: Sequence[Member]) -> str:
    """sha256 over the normalised config and (package path, mode, blob id) of every member."""
    import hashlib  # deferred: hashlib loads OpenSSL, which a tree without functions never needs

    h = hashlib.sha256()
    h.update(json.dumps(spec.normalised(), sort_keys=True).encode())
    for m in members:
        mode = 0o755 if m.mode == MODE_EXEC else 0o644
        h.update(f"\n{m.path}\0{mode:o}\0{m.blob_id}".encode())
    return h.hexdigest()


def detect_function_changes(
    desired: Mapping[str, SourceFile],
    toml_bytes: Mapping[str, bytes],
    recorded: Mapping[str, RecordedFunction],
) -> FunctionReport:
    """Validate every function and compare its hash with the one last recorded."""
    report = FunctionReport()
    owner: dict[str, str] = {}
    index = SortedPaths(desired)
    for path in sorted(toml_bytes):
        try:
            spec = parse_function_toml(path, toml_bytes[path])
            if spec.name in owner:
                raise FunctionConfigError.one(
                    path, "name", f"'{spec.name}' is already used by {owner[spec.name]}"
                )
            members = package_members(spec, index)
        except FunctionConfigError as exc:
            report.invalid.append({"path": path, "error": str(exc)})
            continue
        owner[spec.name] = path
        digest = function_hash(spec, members)
        report.members[spec.name] = members
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
