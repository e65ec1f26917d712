"""The sync use case: resolve -> list -> compare -> apply -> record.

Three named phases, as rclone's: *list* both sides (git tree; workspace listing
plus the last manifest), *compare* (pure, ``core.plan``), *apply* (the only code
that changes anything; ``dry_run`` stops right before it). The manifest is
written last, so a crash anywhere leaves a state the next sync repairs exactly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping

from .adapters.git_source import GitSource
from .core.manifest import Manifest, dumps_rows, loads
from .core.model import MODE_EXEC, MODE_FILE, Content, Skipped, SourceFile
from .core.plan import (
    Plan,
    apply_renames,
    check_case_conflicts,
    paths_to_verify,
    plan_case_renames,
    plan_sync,
)
from .core.select import SYNCIGNORE, SyncIgnore, select_desired
from .core.value import Value

TYPE_CHECKING = False  # typing's, without loading typing (the sync's start-up); mypy reads it True

if TYPE_CHECKING:
    from typing import Any, Protocol

    from .ports import WorkspaceStore

    class Progress(Protocol):
        def start(self, files: int, total_bytes: int) -> None: ...
        def advance(self, files: int, nbytes: int) -> None: ...
        def finish(self) -> None: ...

    from concurrent.futures import Future

    from .adapters.git_index import WorktreeScan
    from .core.function_report import FunctionReport

MANIFEST = "manifest.json"
INLINE_LIMIT = 4 << 20  # blobs up to this size are read whole and may be written in parallel


class SyncResult(Value):
    __slots__ = (
        "bytes_written",
        "commit",
        "dry_run",
        "duration_s",
        "extra",
        "functions",
        "plan",
        "previous_commit",
    )  # fmt: skip

    def __init__(
        self,
        commit: str,
        plan: Plan,
        functions: FunctionReport,
        dry_run: bool = False,
        bytes_written: int = 0,
        duration_s: float = 0.0,
        previous_commit: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.commit = commit
        self.plan = plan
        self.functions = functions
        self.dry_run = dry_run
        self.bytes_written = bytes_written
        self.duration_s = duration_s
        self.previous_commit = previous_commit
        self.extra: dict[str, Any] = {} if extra is None else extra

    @property
    def counts(self) -> dict[str, int]:
        p = self.plan
        return {
            "added": len(p.add),
            "updated": len(p.update) + len(p.chmod),
            "deleted": len(p.delete) + len(p.blocking_files),
            "unchanged": len(p.unchanged) + p.untouched,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            **self.counts,
            "bytes_written": self.bytes_written,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.plan.skipped],
            "functions": self.functions.as_json(),
        }


def local_path(store: WorkspaceStore) -> str | None:
    """The folder a local store is, as a string (``local_path``, else ``local_root``), or
    None: a store that is not a folder on this machine. No pathlib on the way."""
    if hasattr(store, "local_path"):
        return store.local_path
    root = getattr(store, "local_root", None)
    return None if root is None else os.fspath(root)


def _read_small_blob(source: GitSource, desired: dict[str, SourceFile], path: str) -> bytes:
    return source.read_blob(desired[path].blob_id)


def verify_contents(
    store: WorkspaceStore, paths: list[str], desired: Mapping[str, SourceFile]
) -> dict[str, Content]:
    """Hash the files whose stamps no longer prove their content; in parallel where
    the store is remote (one download per file on Azure Files). Where chmod does not
    stick (``trust_mode`` False: an SMB mount) the mode read back is not compared."""
    if store.max_concurrency <= 1 or len(paths) < 8:
        found = {p: store.hash_file(p) for p in paths}
    else:
        from concurrent.futures import ThreadPoolExecutor  # deferred: a no-op sync needs none

        with ThreadPoolExecutor(store.max_concurrency, thread_name_prefix="gitops-sync-hash") as p:
            found = dict(zip(paths, p.map(store.hash_file, paths), strict=True))
    if not getattr(store, "trust_mode", True):
        for path, seen in found.items():
            seen.mode = desired[path].mode
    return found


def compute_plan(
    source: GitSource, commit: str, store: WorkspaceStore
) -> tuple[Plan, dict[str, SourceFile], Manifest, FunctionReport]:
    """Phases 1 and 2: list both sides and compare. Changes nothing."""
    finish_tree = source.start_list_tree(commit)  # git reads the tree while we walk
    manifest = loads(store.read_meta(MANIFEST))
    listing = store.list()
    records, bad_names = finish_tree()
    ignore_rec = next(
        (r for r in records if r.path == SYNCIGNORE and r.mode in (MODE_FILE, MODE_EXEC)), None
    )
    ignore_text = (
        source.read_blob(ignore_rec.blob_id).decode("utf-8", "replace") if ignore_rec else None
    )
    desired, skipped = select_desired(records, SyncIgnore(ignore_text), store.name_problem)
    skipped.extend(Skipped(p, why) for p, why in bad_names)
    skipped.sort(key=lambda s: s.path)

    renames: list[tuple[str, str]] = []
    recorded = manifest.files
    if store.case_insensitive:
        check_case_conflicts(desired)
        renames, moved = plan_case_renames(desired, listing)
        listing, recorded = apply_renames(listing, manifest.files, moved)

    verified = verify_contents(store, paths_to_verify(desired, listing, recorded), desired)
    plan = plan_sync(desired, listing, recorded, verified, skipped)
    plan.renames = renames

    from .core.functions import detect_function_changes, find_function_tomls

    tomls = {p: _read_small_blob(source, desired, p) for p in find_function_tomls(desired)}
    functions = detect_function_changes(desired, tomls, manifest.functions)
    return plan, desired, manifest, functions


def sync_workspace(
    source: GitSource,
    ref: str,
    store: WorkspaceStore,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    commit: str | None = None,
    scan: WorktreeScan | None = None,
) -> SyncResult:
    """Make ``store`` hold exactly the synced files of REF's tree (SCAN: see ``sync_index``)."""
    from . import sync_index  # imports this module

    started = time.monotonic()
    commit = commit or source.resolve(ref)
    if not dry_run:
        store.check_writable()
    fast = sync_index.sync_with_index(
        source, commit, ref, store, dry_run=dry_run, progress=progress, scan=scan
    )
    if fast is not None:
        fast.duration_s = time.monotonic() - started
        return fast
    plan, desired, manifest, functions = compute_plan(source, commit, store)
    result = SyncResult(commit, plan, functions, dry_run, previous_commit=manifest.commit)
    if not dry_run:
        result.bytes_written = _apply(source, store, plan, progress)
        _record(store, plan, desired, manifest, functions, commit, ref)
        sync_index.rebuild_index(source, store, desired)
    result.duration_s = time.monotonic() - started
    return result


def _apply(source: GitSource, store: WorkspaceStore, plan: Plan, progress: Progress | None) -> int:
    """Phase 3, the only code that changes the workspace. Returns bytes written."""
    store.clean_temporaries()
    for old, new in plan.renames:
        store.rename(old, new)
    for path in plan.blocking_files:
        store.delete_file(path)
    for path in plan.blocking_dirs:
        store.delete_dir(path)

    writes = plan.writes
    if progress:
        progress.start(len(writes), plan.bytes_to_write)
    stamps = _write_all(source, store, writes, progress)
    for f in plan.chmod:
        stamps[f.path] = store.set_mode(f.path, f.mode)
    for path in plan.delete:
        store.delete_file(path)
    for path in plan.delete_dirs:
        store.delete_dir(path)
    if progress:
        progress.finish()
    plan.unchanged_stamps.update(stamps)
    return plan.bytes_to_write


def _write_all(
    source: GitSource, store: WorkspaceStore, writes: list[SourceFile], progress: Progress | None
) -> dict[str, str]:
    stamps: dict[str, str] = {}
    if not writes:
        return stamps
    by_blob = iter(writes)
    with source.blobs(f.blob_id for f in writes) as blobs:
        # a few local writes are quicker in turn than through a thread pool
        few_local = len(writes) < 8 and local_path(store) is not None
        if store.max_concurrency <= 1 or few_local:
            for (_oid, size, chunks), f in zip(blobs, by_blob, strict=True):
                f.size = size  # known here where the listing gave none (``sync_index``)
                stamps[f.path] = store.write_file(f.path, f.mode, chunks)
                if progress:
                    progress.advance(1, size)
            return stamps
        _write_parallel(store, zip(blobs, by_blob, strict=True), stamps, progress)
    return stamps


def _write_parallel(
    store: WorkspaceStore,
    items: Iterator[tuple[tuple[str, int, Iterator[bytes]], SourceFile]],
    stamps: dict[str, str],
    progress: Progress | None,
) -> None:
    """Blobs are read in order from one git process; small ones are written by a pool."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    limit = store.max_concurrency
    pending: dict[Future[str], SourceFile] = {}

    def settle(done: set[Future[str]]) -> None:
        for fut in done:
            f = pending.pop(fut)
            stamps[f.path] = fut.result()
            if progress:
                progress.advance(1, f.size)

    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="gitops-sync-write") as pool:
        for (_oid, size, chunks), f in items:
            f.size = size
            if size > INLINE_LIMIT:
                stamps[f.path] = store.write_file(f.path, f.mode, chunks)
                if progress:
                    progress.advance(1, size)
                continue
            data = b"".join(chunks)
            while len(pending) >= 2 * limit:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                settle(done)
            pending[pool.submit(store.write_file, f.path, f.mode, (data,))] = f
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            settle(done)


def _record(
    store: WorkspaceStore,
    plan: Plan,
    desired: dict[str, SourceFile],
    previous: Manifest,
    functions: FunctionReport,
    commit: str,
    ref: str,
) -> None:
    stamps = plan.unchanged_stamps
    rows = ((p, f.blob_id, f.size, f.mode, stamps.get(p, "")) for p, f in desired.items())
    store.write_meta(MANIFEST, dumps_rows(next_header(previous, functions, commit, ref), rows))


def next_header(previous: Manifest, functions: FunctionReport, commit: str, ref: str) -> Manifest:
    """The new manifest's header: an invalid function keeps its last good version."""
    recorded_functions = functions.recorded()
    invalid_dirs = {i["path"].rsplit("/", 1)[0] for i in functions.invalid}
    for name, rec in previous.functions.items():
        if rec.directory in invalid_dirs and name not in recorded_functions:
            recorded_functions[name] = rec  # keeps its last good version
    return Manifest(
        commit=commit,
        ref=ref,
        synced_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        functions=recorded_functions,
    )
