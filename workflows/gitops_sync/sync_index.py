"""The sync on a local directory: a git index finds the change, Python handles only it.

Used for a case-sensitive ``DirectoryStore`` (``local_root``); every other store,
and any index git cannot use, takes the manifest path of ``sync.py``. Same
phases and apply order; what differs is how the two sides are listed:

- into an empty folder, ``git checkout-index`` writes every file (no reader can
  see a partial file that never existed before), in batches, the lease checked
  between them;
- otherwise ``git diff-index -R`` (index -> new tree), ``git diff-files``
  (drift: stat data, racy-git aware) and ``git ls-files -o`` (untracked) name
  the touched paths; only those are observed, hashed where their stat data
  changed, and written as on the manifest path (temporary name, rename). The
  index is updated for exactly those paths after the apply, the manifest
  (header only: commit, ref, functions) last. A crash before that leaves stat
  data that no longer matches, which the next sync sees as drift and repairs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .adapters.git_index import (
    CHECKOUT_BATCH,
    IndexChange,
    IndexUnusable,
    WorkspaceIndex,
    WorktreeScan,
)
from .core.function_report import FUNCTIONS_DIR, FunctionReport, find_function_tomls
from .core.manifest import (
    Manifest,
    append_record,
    dumps_rows,
    loads_header,
    record_header,
    trailer_offset,
)
from .core.model import MODE_EXEC, MODE_FILE, Content, Skipped, SourceFile, TreeRecord
from .core.plan import Plan, directories_of, plan_sync
from .core.select import SYNCIGNORE, SyncIgnore, select_desired
from .sync import MANIFEST, SyncResult, _apply, local_path, next_header, verify_contents

TYPE_CHECKING = False  # typing's, without loading typing (the sync's start-up); mypy reads it True

if TYPE_CHECKING:
    from .adapters.git_source import GitSource
    from .core.function_report import RecordedFunction
    from .ports import LocalDirectory, WorkspaceStore
    from .sync import Progress


def _note(message: str, *args: object) -> None:
    import logging  # deferred: only the fallbacks log

    logging.getLogger("gitops_sync").info(message, *args)


def local_directory(store: WorkspaceStore) -> LocalDirectory | None:
    """The store as a case-sensitive local folder, or None (the manifest path is used)."""
    if local_path(store) is None or store.case_insensitive:
        return None
    return store  # type: ignore[return-value]  # a LocalDirectory (its local_root says so)


def workspace_index(source: GitSource, store: LocalDirectory) -> WorkspaceIndex:
    return WorkspaceIndex(store.local_path, source.objects_dir, trust_mode=store.trust_mode)


def sync_with_index(
    source: GitSource,
    commit: str,
    ref: str,
    store: WorkspaceStore,
    *,
    dry_run: bool,
    progress: Progress | None,
    scan: WorktreeScan | None = None,
) -> SyncResult | None:
    """The sync through the index; None when the manifest path must do it. SCAN is
    ``start_scan``'s, when the caller started it early (``scan_early``)."""
    local = local_directory(store)
    if local is None:
        return None
    idx = workspace_index(source, local)
    empty = local.is_empty()
    if not empty and (not idx.exists or not (idx.ready() or not dry_run)):
        return None
    try:
        if empty:
            return _full_sync(source, commit, ref, local, idx, dry_run=dry_run, progress=progress)
        if not dry_run:
            idx.prepare()
        return _incremental(
            source, commit, ref, local, idx, dry_run=dry_run, progress=progress, scan=scan
        )
    except IndexUnusable as exc:  # e.g. a name git refuses to check out (``.GIT/x``)
        _note("git index of %s unusable (%s): comparing by manifest", store.describe(), exc)
        if not dry_run:
            idx.remove()
        return None


def rebuild_index(source: GitSource, store: WorkspaceStore, desired: dict[str, SourceFile]) -> None:
    """After a manifest-path sync: index what it left (git hashes every file once)."""
    local = local_directory(store)
    if local is None:
        return
    idx = workspace_index(source, local)
    store.check_writable()
    try:
        idx.prepare()
        idx.reset((p, f.mode, f.blob_id) for p, f in desired.items())
        idx.refresh_all()
        idx.cache_trees()
        idx.record_dir_stamps(None, {"", *directories_of(desired)})  # all unknown yet
    except IndexUnusable as exc:
        _note("no git index for %s (%s)", store.describe(), exc)
        idx.remove()


# ---------------------------------------------------------------------- phases
def _selection(source: GitSource, records: list[TreeRecord]) -> SyncIgnore:
    """The ``.syncignore`` among RECORDS (the root's), as a matcher."""
    rec = next((r for r in records if r.path == SYNCIGNORE), None)
    if rec is None or rec.mode not in (MODE_FILE, MODE_EXEC):
        return SyncIgnore(None)
    return SyncIgnore(source.read_blob(rec.blob_id).decode("utf-8", "replace"))


def _functions(
    source: GitSource,
    commit: str,
    store: WorkspaceStore,
    recorded: Mapping[str, RecordedFunction],
    ignore: SyncIgnore,
    desired: dict[str, SourceFile],
) -> FunctionReport:
    """The function report from ``functions/`` and the directories tomls ``include``.

    DESIRED holds at least every synced file under ``functions/``.
    """
    tomls = {p: source.read_blob(desired[p].blob_id) for p in find_function_tomls(desired)}
    if not tomls and not recorded:
        return FunctionReport()  # no function, now or before: nothing to parse or load
    include: set[str] = set()
    if tomls:
        import tomllib
    for data in tomls.values():
        try:
            dirs = tomllib.loads(data.decode("utf-8")).get("include", [])
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        if isinstance(dirs, list):
            include.update(d.strip("/") for d in dirs if isinstance(d, str) and d.strip("/"))
    include = {d for d in include if not d.startswith(FUNCTIONS_DIR + "/")}
    if include:
        records, _ = source.start_list_tree(commit, *sorted(include))()
        extra, _ = select_desired(records, ignore, store.name_problem)
        desired = {**desired, **extra}
    from .core.functions import detect_function_changes  # deferred: tomllib, the rules

    return detect_function_changes(desired, tomls, recorded)


def _full_sync(
    source: GitSource,
    commit: str,
    ref: str,
    store: LocalDirectory,
    idx: WorkspaceIndex,
    *,
    dry_run: bool,
    progress: Progress | None,
) -> SyncResult:
    """Into an empty folder: git writes every file, the index records its stat data."""
    manifest = loads_header(store.read_meta(MANIFEST))
    records, bad_names = source.start_list_tree(commit)()
    ignore = _selection(source, records)
    desired, skipped = select_desired(records, ignore, store.name_problem)
    skipped.extend(Skipped(p, why) for p, why in bad_names)
    skipped.sort(key=lambda s: s.path)
    functions = _functions(source, commit, store, manifest.functions, ignore, desired)
    plan = Plan(add=sorted(desired.values(), key=lambda f: f.path), skipped=skipped)
    result = SyncResult(commit, plan, functions, dry_run, previous_commit=manifest.commit)
    if dry_run:
        return result
    store.check_writable()
    idx.prepare()
    idx.reset((f.path, f.mode, f.blob_id) for f in plan.add)
    if progress:
        progress.start(len(plan.add), plan.bytes_to_write)
    for i in range(0, len(plan.add), CHECKOUT_BATCH):
        batch = plan.add[i : i + CHECKOUT_BATCH]
        store.check_writable()  # a lapsed lease stops the sync between batches
        idx.checkout([f.path for f in batch])
        if progress:
            progress.advance(len(batch), sum(f.size for f in batch))
    if progress:
        progress.finish()
    result.bytes_written = plan.bytes_to_write
    _write_manifest(store, idx, next_header(manifest, functions, commit, ref), desired)
    idx.record_dir_stamps(None, {"", *directories_of(desired)})  # all unknown yet
    return result


def _incremental(
    source: GitSource,
    commit: str,
    ref: str,
    store: LocalDirectory,
    idx: WorkspaceIndex,
    *,
    dry_run: bool,
    progress: Progress | None,
    scan: WorktreeScan | None = None,
) -> SyncResult:
    # the last header alone: the rows stay on disk (appended to, never read here)
    manifest, size = _last_manifest(store)
    indexed_before = idx.entry_count()
    rows_match_index = manifest.index is not None and manifest.index == idx.checksum()
    # the selection and functions/ are listed while git compares (another core)
    finish_few = source.start_list_tree(commit, SYNCIGNORE, FUNCTIONS_DIR)
    if scan is None or (scan.index_file, scan.commit) != (idx.index_file, commit):
        scan = idx.start_scan(commit, stamps=not dry_run)
    changes, drift, untracked, bad_names = idx.observe(commit, scan)
    few, _ = finish_few()
    if os.path.lexists(os.path.join(store.local_path, ".git")):
        untracked.append(".git")  # git never lists its own name; the sync removes it
    records: list[TreeRecord] | None = None
    if any(c.path == SYNCIGNORE for c in changes):
        # The selection itself changed: compare the whole tree with the whole index.
        records, tree_bad = source.start_list_tree(commit)()
        bad_names = [p for p, _ in tree_bad]
        changes = _whole_tree_changes(records, idx.entries())
        ignore = _selection(source, records)
        fn_files, _ = select_desired(records, ignore, store.name_problem)
    else:  # only .syncignore and functions/ are listed
        ignore = _selection(source, few)
        fn_files, _ = select_desired(few, ignore, store.name_problem)

    want, skipped = select_desired(
        (TreeRecord(c.path, c.new_mode, c.new_oid, -1) for c in changes if c.new_mode),
        ignore,
        store.name_problem,
    )
    if records is not None:
        sizes_known = {r.path: r.size for r in records}
        for f in want.values():
            f.size = sizes_known[f.path]
    skipped.extend(Skipped(p, "name is not valid UTF-8") for p in bad_names)
    skipped.sort(key=lambda s: s.path)

    changed = {c.path: c for c in changes}
    dirty = {d.path: d for d in drift}
    for path, d in dirty.items():
        if path not in changed:  # unchanged in the tree, so still wanted as indexed
            want[path] = SourceFile(path, d.old_mode, d.old_oid, -1)
    # A size git did not give is learnt as the blob is written (``sync._write_all``), or
    # from the file when it already holds the blob; asked of git only to be shown first.
    missing = [f.blob_id for f in want.values() if f.size < 0]
    if missing and (dry_run or progress is not None):
        sizes = source.blob_sizes(missing)
        for f in want.values():
            if f.size < 0:
                f.size = sizes[f.blob_id]

    indexed = {p for p, c in changed.items() if c.old_mode} | dirty.keys()
    listing = store.observe([*want, *indexed, *untracked])
    # what a clean indexed file holds is what the index says: no need to read it
    verified = {
        p: Content(c.old_oid, c.old_mode)
        for p, c in changed.items()
        if c.old_mode and p not in dirty and p in listing.files
    }
    files = listing.files
    to_hash = [
        p
        for p, f in want.items()
        if p not in verified
        and (o := files.get(p)) is not None
        and o.kind == "file"
        and (o.size == f.size or f.size < 0)
    ]
    verified.update(verify_contents(store, to_hash, want))
    plan = plan_sync(want, listing, {}, verified, skipped)
    for f in (*plan.unchanged, *plan.chmod):  # the file holds the blob: its size is the blob's
        if f.size < 0:
            f.size = files[f.path].size
    _add_emptied_dirs(plan, want)
    removed = sorted(indexed - want.keys())
    plan.untouched = indexed_before - len(removed) + len(want.keys() - indexed) - len(want)

    functions = _functions(source, commit, store, manifest.functions, ignore, fn_files)
    result = SyncResult(commit, plan, functions, dry_run, previous_commit=manifest.commit)
    if dry_run:
        return result
    result.bytes_written = _apply(source, store, plan, progress)
    store.check_writable()
    if want or removed:
        if idx.trust_mode:  # what was just written is what is wanted, mode included
            idx.record_paths(sorted([*want, *removed]))
        else:
            idx.set_entries(((p, f.mode, f.blob_id) for p, f in want.items()), removed)
            idx.refresh_paths(sorted(want))
    header = next_header(manifest, functions, commit, ref)
    rows = [(p, f.blob_id, f.size, f.mode, "") for p, f in sorted(want.items())]
    rows.extend((p, "", 0, 0, "") for p in removed)
    appended = manifest.appended + len(rows)
    same = (header.commit, header.ref, header.functions) == (
        manifest.commit, manifest.ref, manifest.functions,
    )  # fmt: skip
    if size is not None and rows_match_index and not rows and same:
        pass  # nothing changed, not even the bookkeeping: nothing is written
    elif (
        size is not None
        and rows_match_index
        and appended <= max(1000, indexed_before // 4)
        and manifest.records < max(MIN_RECORDS, indexed_before // 64)
    ):  # a record appended in place: only the change is written (``core.manifest``)
        header.index, header.appended = idx.checksum(), appended
        header.records = manifest.records + 1
        store.append_meta(MANIFEST, append_record(header, rows, size), size)
    else:  # the rows do not describe this index (a crash, a fallback), or too many appended
        if records is None:
            records, _ = source.start_list_tree(commit)()
        desired, _ = select_desired(records, ignore, store.name_problem)
        _write_manifest(store, idx, header, desired)
    _record_dir_stamps(commit, idx, scan, want, untracked, bad_names)
    return result


#: a manifest gets at least this many appended records before it is rewritten whole
MIN_RECORDS = 256
#: the manifest's last bytes read to find its last header (a record's header is short)
TAIL = 1 << 16


def _last_manifest(store: LocalDirectory) -> tuple[Manifest, int | None]:
    """The manifest's last header, read from its end, and its size when a record can be
    appended to it; (the header, None) when not (a torn last record, an older format: the
    header is then found by reading the whole file, and the next write is whole)."""
    got = store.read_meta_range(MANIFEST, -TAIL, TAIL)
    if got is None:
        return Manifest(), None
    tail, size = got
    at = trailer_offset(tail)
    if at is not None and 0 <= at < size:
        skip = size - len(tail)
        buf = tail[at - skip :] if at >= skip else b""
        length = TAIL
        while b"\n" not in buf and at + len(buf) < size:  # a long record, or header line
            more = store.read_meta_range(MANIFEST, at, length)
            buf, length = (more[0] if more is not None else tail[-1:]), length * 4
        header = record_header(buf, at, size)
        if header is not None:
            return header, size
    return loads_header(store.read_meta(MANIFEST)), None


def _record_dir_stamps(
    commit: str,
    idx: WorkspaceIndex,
    scan: WorktreeScan,
    want: dict[str, SourceFile],
    untracked: list[str],
    bad_names: list[str],
) -> None:
    """The directory stamps for the next sync; last, after the index's last change."""
    if idx.dir_stamps is None:
        return
    if bad_names:  # a name that is not UTF-8 is only reported again by a whole look
        idx.dir_stamps.remove()
        return
    new_dirs = directories_of(want)
    if not scan.dir_stamps:  # none yet: every directory
        new_dirs.update(idx.tree_dirs(commit), [""])
    idx.record_dir_stamps(scan, new_dirs, untracked)


def _write_manifest(
    store: WorkspaceStore, idx: WorkspaceIndex, header: Manifest, desired: dict[str, SourceFile]
) -> None:
    """Every row, whole (stamps are the index's business here: none recorded). Rare (a
    full sync, a rebuild, a compaction), so the index's tree ids are refreshed first."""
    idx.cache_trees()
    header.index, header.appended = idx.checksum(), 0
    rows = ((p, f.blob_id, f.size, f.mode, "") for p, f in desired.items())
    store.write_meta(MANIFEST, dumps_rows(header, rows))


def _whole_tree_changes(
    records: list[TreeRecord], entries: dict[str, tuple[int, str]]
) -> list[IndexChange]:
    tree = {r.path: r for r in records}
    out = []
    for path in tree.keys() | entries.keys():
        t, e = tree.get(path), entries.get(path)
        out.append(
            IndexChange(
                path,
                e[0] if e else 0,
                e[1] if e else "0" * 40,
                t.mode if t else 0,
                t.blob_id if t else "0" * 40,
                "M" if t and e else ("A" if t else "D"),
            )
        )
    return out


def _add_emptied_dirs(plan: Plan, want: dict[str, SourceFile]) -> None:
    """Directories that deleting files may empty: tried deepest first (a directory
    still holding a file stays; ``delete_dir`` removes only empty ones)."""
    keep = directories_of(want) | want.keys() | set(plan.blocking_dirs)
    gone = directories_of([*plan.delete, *plan.blocking_files]) - keep
    if gone - set(plan.delete_dirs):
        dirs = set(plan.delete_dirs) | gone
        plan.delete_dirs = sorted(dirs, key=lambda d: (-d.count("/"), d))
