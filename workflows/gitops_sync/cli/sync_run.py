"""``gitops-sync sync`` without click: its options, the sync, and what it prints.

It runs on every push, so its start-up is part of every sync's time: this module
and what it imports stay free of click, settings and azure.* (``python -X
importtime`` shows it). ``parse_args`` accepts only well-formed options and
returns None for anything else (help, a missing or repeated option, an unknown
one), which ``cli.main`` then hands to click, so errors and usage are click's.
"""

from __future__ import annotations

import os
import sys

from ..core.errors import UsageError
from ._format import human_bytes

TYPE_CHECKING = False  # typing's, without loading typing (the sync's start-up); mypy reads it True

if TYPE_CHECKING:
    from pathlib import Path
    from typing import TextIO

    from ..adapters.dir_store import DirectoryStore
    from ..adapters.git_index import WorktreeScan
    from ..adapters.git_source import GitSource
    from ..sync import SyncResult

#: what ``sync_index`` lists of the tree first (``core.select.SYNCIGNORE`` and
#: ``core.function_report.FUNCTIONS_DIR``; not imported here, a unit test checks them)
FIRST_LISTED = (".syncignore", "functions")
_VALUED = {"--repo": "repo", "--ref": "ref", "--workspace": "workspace"}
_FLAGS = {"--dry-run": "dry_run", "--json": "as_json"}


class SyncOptions:
    """The options of ``gitops-sync sync`` (see ``sync_cmd.sync`` for their help)."""

    __slots__ = ("as_json", "dry_run", "ref", "repo", "workspace")

    def __init__(
        self, repo: str, ref: str, workspace: str, dry_run: bool = False, as_json: bool = False
    ) -> None:
        self.repo, self.ref, self.workspace = repo, ref, workspace
        self.dry_run, self.as_json = dry_run, as_json


def parse_args(args: list[str]) -> SyncOptions | None:
    """ARGS after ``sync`` when they are plainly valid, else None (click decides)."""
    seen: dict[str, object] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in _VALUED:
            if not eq:
                if i + 1 >= len(args):
                    return None
                i += 1
                value = args[i]
            if value.startswith("-") or _VALUED[name] in seen:
                return None
            seen[_VALUED[name]] = value
        elif arg in _FLAGS and _FLAGS[arg] not in seen:
            seen[_FLAGS[arg]] = True
        else:
            return None
        i += 1
    if not all(key in seen for key in _VALUED.values()):
        return None
    return SyncOptions(**seen)  # type: ignore[arg-type]


def cache_dir(env: dict[str, str] | os._Environ[str]) -> Path:
    """Where fetched repositories are kept: ``Settings.cache_dir``, read as it reads it
    (the settings module is not imported here; a unit test checks they agree)."""
    from pathlib import Path

    if env.get("GITOPS_SYNC_CACHE_DIR"):
        return Path(env["GITOPS_SYNC_CACHE_DIR"])
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gitops-sync" / "repos"


def run(opts: SyncOptions) -> None:
    """Reconcile the workspace to REF, then print the summary (or one JSON object)."""
    from ..adapters import git_early

    if not opts.dry_run:  # git's first questions start before the modules below load
        git_early.start_sync(
            opts.repo, opts.ref, opts.workspace, os.environ.get("GIT_TOKEN") or None
        )
    try:
        _run(opts)
    finally:
        git_early.discard()  # whatever was started early and not taken over


def _run(opts: SyncOptions) -> None:
    from ..adapters.dir_store import DirectoryStore
    from ..adapters.git_source import GitSource, is_url

    if not opts.workspace.strip():
        raise UsageError("--workspace is empty")
    env = os.environ
    cache = cache_dir(env) if is_url(opts.repo) else None  # a local repository needs none
    source = GitSource(opts.repo, cache_dir=cache, token=env.get("GIT_TOKEN") or None)
    commit = source.resolve(opts.ref)  # a bad repository or ref is reported first
    store = DirectoryStore(opts.workspace)
    if opts.dry_run:
        from ..sync import sync_workspace

        result = sync_workspace(source, opts.ref, store, dry_run=True, commit=commit)
    else:
        progress = None
        if sys.stderr.isatty():
            from ._progress import RichProgress

            progress = RichProgress()
        store.check_writable()
        with store.lock():
            scan = _scan_early(source, store, commit)
            try:
                from ..sync import sync_workspace  # loads while git looks (the scan)

                result = sync_workspace(
                    source, opts.ref, store, progress=progress, commit=commit, scan=scan
                )
            finally:
                if scan is not None:
                    scan.close()
    if opts.as_json:
        _write(sys.stdout, _json(result))
    else:
        _print_text(result)


def _scan_early(source: GitSource, store: DirectoryStore, commit: str) -> WorktreeScan | None:
    """Start git's look at the workspace's own state (``WorkspaceIndex.start_scan``) now,
    so it runs on the other core while the sync's modules load. Only where the sync
    will use the index (``sync_index.sync_with_index``: a case-sensitive folder holding
    an index and files); elsewhere None, and the sync starts what it needs itself."""
    from ..adapters.git_index import WorkspaceIndex

    root = store.local_path
    if root is None or store.case_insensitive or store.is_empty():
        return None
    idx = WorkspaceIndex(root, source.objects_dir, trust_mode=store.trust_mode)
    if not idx.exists:
        return None
    scan = idx.start_scan(commit)
    source.prefetch_list_tree(commit, *FIRST_LISTED)
    return scan


def _write(stream: TextIO, text: str) -> None:
    if text:
        stream.write(text)
        stream.flush()


def _json(result: SyncResult) -> str:
    import json

    doc = result.as_json()
    if result.dry_run:
        p = result.plan
        doc["dry_run"] = True
        doc["plan"] = {
            "add": [f.path for f in p.add],
            "update": [f.path for f in p.update] + [f.path for f in p.chmod],
            "delete": p.blocking_files + p.delete,
            "rename": [list(r) for r in p.renames],
        }
    return json.dumps(doc) + "\n"


def _print_text(result: SyncResult) -> None:
    """The plan (dry run), skipped paths on stderr, the summary, invalid functions on stderr."""
    dry_run = result.dry_run
    if dry_run:
        p = result.plan
        lines = [f"R {old} -> {new}" for old, new in p.renames]
        lines.extend(f"+ {f.path}" for f in p.add)
        lines.extend(f"~ {f.path}" for f in p.update)
        lines.extend(f"m {f.path} (mode {f.mode & 0o777:o})" for f in p.chmod)
        lines.extend(f"- {path}" for path in p.blocking_files + p.delete)
        _write(sys.stdout, "".join(line + "\n" for line in lines))
    _write(sys.stderr, "".join(f"skipped {s.path}: {s.reason}\n" for s in result.plan.skipped))
    c = result.counts
    verb = "would sync" if dry_run else "synced"
    written = human_bytes(result.plan.bytes_to_write if dry_run else result.bytes_written)
    fn = result.functions
    fn_part = ""
    if fn.changed or fn.unchanged or fn.invalid:
        fn_part = (
            f"; functions: {len(fn.changed)} changed, {len(fn.unchanged)} unchanged,"
            f" {len(fn.invalid)} invalid"
        )
    _write(
        sys.stdout,
        f"{verb} {result.commit[:12]}: {c['added']} added, {c['updated']} updated,"
        f" {c['deleted']} deleted, {c['unchanged']} unchanged, {written}"
        f" {'to write' if dry_run else 'written'} in {result.duration_s:.2f}s{fn_part}\n",
    )
    _write(sys.stderr, "".join(f"invalid function: {i['error']}\n" for i in fn.invalid))
