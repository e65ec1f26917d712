"""Build one function's package from the synced commit's git blobs (never the workspace files).

The members come from ``core.functions.package_members``; a ``requirements.txt``
at the function's root is installed (wheels only) under ``_deps/``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..adapters.git_source import GitSource
from ..adapters.pip_deps import InstalledDeps, PipInstaller
from ..core.functions import (
    DEPS_DIR,
    FunctionReport,
    FunctionSpec,
    Member,
    RecordedFunction,
    detect_function_changes,
    find_function_tomls,
)
from ..core.model import MODE_EXEC
from ..core.packaging import Entry, Package, build_package
from ..core.select import SYNCIGNORE, SyncIgnore, select_desired

REQUIREMENTS = "requirements.txt"


def _deps_entries(installed: InstalledDeps) -> list[Entry]:
    entries: list[Entry] = []
    root = installed.root
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            if full.is_symlink() or not full.is_file():
                continue
            rel = full.relative_to(root).as_posix()
            executable = bool(full.stat().st_mode & 0o111)
            entries.append(Entry(f"{DEPS_DIR}/{rel}", full.read_bytes(), executable))
    return entries


class PackageBuilder:
    """Reads members through one ``git cat-file --batch`` and writes the reproducible ZIP."""

    def __init__(
        self, source: GitSource, pip: PipInstaller, *, source_date_epoch: str | None
    ) -> None:
        self.source = source
        self.pip = pip
        self.source_date_epoch = source_date_epoch

    def read_members(self, members: Sequence[Member]) -> list[Entry]:
        entries: list[Entry] = []
        with self.source.blobs([m.blob_id for m in members]) as reader:
            for (_oid, _size, chunks), m in zip(reader, members, strict=True):
                entries.append(Entry(m.path, b"".join(chunks), m.mode == MODE_EXEC))
        return entries

    def build(
        self, spec: FunctionSpec, members: Sequence[Member], *, sha256: str, commit: str
    ) -> tuple[Package, list[dict[str, str]]]:
        """The package and the distributions its requirements resolved to.

        Raises ``RequirementsError`` (pip's reason, one line) when they cannot be installed.
        """
        files = self.read_members(members)
        requirements: list[dict[str, str]] = []
        req = next((e for e in files if e.path == REQUIREMENTS), None)
        if req is not None and req.data.strip():
            installed = self.pip.install(req.data, spec.runtime)
            files.extend(_deps_entries(installed))
            requirements = installed.distributions
        package = build_package(
            files,
            name=spec.name,
            sha256=sha256,
            commit=commit,
            config=spec.normalised(),
            requirements=requirements,
            source_date_epoch=self.source_date_epoch,
        )
        return package, requirements


def scan_functions(
    source: GitSource, commit: str, recorded: dict[str, RecordedFunction] | None = None
) -> FunctionReport:
    """The functions of ``commit`` straight from git (the synced selection: .syncignore applies)."""
    records, _bad_names = source.start_list_tree(commit)()
    ignore = next((r for r in records if r.path == SYNCIGNORE), None)
    text = source.read_blob(ignore.blob_id).decode("utf-8", "replace") if ignore else None
    desired, _skipped = select_desired(records, SyncIgnore(text))
    tomls = {p: source.read_blob(desired[p].blob_id) for p in find_function_tomls(desired)}
    return detect_function_changes(desired, tomls, recorded or {})
