"""Compare: from (desired tree, recorded manifest, observed listing) to a plan.

The one rule for "does the workspace already hold this file?" is
``known_content``: a file whose size and stamp still match what the last sync
recorded is trusted to hold the recorded blob; anything else is hashed (only
when its size alone cannot already tell it differs). Apply order, which makes
every crash point repairable by the next sync:

    case renames -> blocking removals -> writes and chmods -> deletes -> manifest
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import CaseConflict
from .model import Content, Listing, ObservedFile, RecordedFile, Skipped, SourceFile, parent_dirs
from .value import Value


class Plan(Value):
    """Everything the apply phase will do, and what it will leave alone."""

    __slots__ = (
        "add",
        "blocking_dirs",
        "blocking_files",
        "chmod",
        "delete",
        "delete_dirs",
        "renames",
        "skipped",
        "unchanged",
        "unchanged_stamps",
        "untouched",
        "update",
    )  # fmt: skip

    def __init__(
        self,
        renames: list[tuple[str, str]] | None = None,
        blocking_files: list[str] | None = None,
        blocking_dirs: list[str] | None = None,
        add: list[SourceFile] | None = None,
        update: list[SourceFile] | None = None,
        chmod: list[SourceFile] | None = None,
        delete: list[str] | None = None,
        delete_dirs: list[str] | None = None,
        unchanged: list[SourceFile] | None = None,
        unchanged_stamps: dict[str, str] | None = None,
        skipped: list[Skipped] | None = None,
        untouched: int = 0,
    ) -> None:
        self.renames: list[tuple[str, str]] = [] if renames is None else renames
        self.blocking_files: list[str] = [] if blocking_files is None else blocking_files
        self.blocking_dirs: list[str] = [] if blocking_dirs is None else blocking_dirs
        self.add: list[SourceFile] = [] if add is None else add
        self.update: list[SourceFile] = [] if update is None else update
        self.chmod: list[SourceFile] = [] if chmod is None else chmod
        self.delete: list[str] = [] if delete is None else delete
        self.delete_dirs: list[str] = [] if delete_dirs is None else delete_dirs
        self.unchanged: list[SourceFile] = [] if unchanged is None else unchanged
        #: stamps of unchanged files as observed now (recorded into the next manifest)
        self.unchanged_stamps: dict[str, str] = {} if unchanged_stamps is None else unchanged_stamps
        self.skipped: list[Skipped] = [] if skipped is None else skipped
        #: files known unchanged without being listed (the git index path names only changes)
        self.untouched = untouched

    @property
    def writes(self) -> list[SourceFile]:
        return self.add + self.update

    @property
    def bytes_to_write(self) -> int:
        return sum(f.size for f in self.writes)


def check_case_conflicts(paths: Iterable[str]) -> None:
    """Raise CaseConflict if two paths (or their directories) differ only in case."""
    seen: dict[str, str] = {}
    for path in paths:
        for name in (*parent_dirs(path), path):
            key = name.casefold()
            other = seen.setdefault(key, name)
            if other != name:
                raise CaseConflict(
                    f"'{other}' and '{name}' differ only in case; the workspace is "
                    "case-insensitive and cannot hold both"
                )


def plan_case_renames(
    desired: Iterable[str], listing: Listing
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Case-only renames that make the observed spelling match the desired one.

    For a case-insensitive workspace: writing ``README.md`` over ``readme.md``
    would keep the old spelling, and deleting ``readme.md`` afterwards would
    delete the file just written. Renaming first avoids both. Returns the
    renames (shallowest first) and a map of every observed path to its path
    after them.
    """
    spelling: dict[str, str] = {}
    for path in desired:
        for name in (*parent_dirs(path), path):
            spelling.setdefault(name.casefold(), name)
    entries = [(p, True) for p in listing.dirs] + [(p, False) for p in listing.files]
    entries.sort(key=lambda e: (e[0].count("/"), e[0]))
    moved: dict[str, str] = {}
    renames: list[tuple[str, str]] = []
    for path, _is_dir in entries:
        parent, _, name = path.rpartition("/")
        current = f"{moved.get(parent, parent)}/{name}" if parent else name
        want = spelling.get(current.casefold())
        if want is not None and want != current:
            renames.append((current, want))
            current = want
        moved[path] = current
    return renames, moved


def apply_renames(
    listing: Listing, recorded: Mapping[str, RecordedFile], moved: Mapping[str, str]
) -> tuple[Listing, dict[str, RecordedFile]]:
    """The listing and manifest as they will look after ``plan_case_renames``."""
    if all(k == v for k, v in moved.items()):
        return listing, dict(recorded)
    files = {
        moved.get(p, p): ObservedFile(moved.get(p, p), o.size, o.stamp, o.kind)
        for p, o in listing.files.items()
    }
    dirs = {moved.get(d, d) for d in listing.dirs}
    rec = {moved.get(p, p): r for p, r in recorded.items()}
    return Listing(files, dirs), rec


def known_content(
    path: str,
    observed: ObservedFile,
    recorded: Mapping[str, RecordedFile],
    verified: Mapping[str, Content],
) -> Content | None:
    """What a regular file holds, if known without reading it; None if unknown.

    This is the compare rule (``plan_sync`` and ``paths_to_verify`` inline it for
    speed): trust the manifest when size and stamp still match, else a fresh hash.
    """
    rec = recorded.get(path)
    if rec is not None and rec.size == observed.size and rec.stamp == observed.stamp:
        return Content(rec.blob_id, rec.mode)
    return verified.get(path)


def paths_to_verify(
    desired: Mapping[str, SourceFile],
    listing: Listing,
    recorded: Mapping[str, RecordedFile],
) -> list[str]:
    """Workspace files whose content must be hashed before a plan can be made.

    Only desired paths whose observed size equals the desired size and whose
    stamp no longer matches the manifest (drift, or no manifest at all).
    """
    out = []
    files = listing.files
    for path, want in desired.items():
        obs = files.get(path)
        if obs is None or obs.kind != "file" or obs.size != want.size:
            continue
        rec = recorded.get(path)
        if rec is None or rec.size != obs.size or rec.stamp != obs.stamp:
            out.append(path)
    return out


def directories_of(paths: Iterable[str]) -> set[str]:
    """Every parent directory of every path (stops early at a known parent)."""
    dirs: set[str] = set()
    add = dirs.add
    for path in paths:
        d = path.rpartition("/")[0]
        while d and d not in dirs:
            add(d)
            d = d.rpartition("/")[0]
    return dirs


def plan_sync(
    desired: Mapping[str, SourceFile],
    listing: Listing,
    recorded: Mapping[str, RecordedFile],
    verified: Mapping[str, Content],
    skipped: Iterable[Skipped] = (),
) -> Plan:
    """Sort every path into add / update / chmod / delete / unchanged."""
    plan = Plan(skipped=list(skipped))
    desired_dirs = directories_of(desired)

    # file<->directory swaps: what stands in the way must go before the writes
    blocking_dirs = sorted((d for d in listing.dirs if d in desired), key=lambda d: -d.count("/"))
    blocked_prefixes = tuple(d + "/" for d in blocking_dirs)
    blocked_files = {p for p in listing.files if p in desired_dirs} if desired_dirs else set()
    if blocked_prefixes:
        blocked_files.update(p for p in listing.files if p.startswith(blocked_prefixes))
        blocking_dirs = sorted(
            {d for d in listing.dirs if d in desired or d.startswith(blocked_prefixes)},
            key=lambda d: (-d.count("/"), d),
        )
    plan.blocking_files = sorted(blocked_files)
    plan.blocking_dirs = blocking_dirs

    files = listing.files
    add, update, chmod, unchanged = plan.add, plan.update, plan.chmod, plan.unchanged
    stamps = plan.unchanged_stamps
    for path, want in desired.items():
        obs = files.get(path)
        if obs is None or (blocked_files and path in blocked_files):
            add.append(want)
            continue
        if obs.kind != "file":
            update.append(want)
            continue
        rec = recorded.get(path)
        if rec is not None and rec.size == obs.size and rec.stamp == obs.stamp:
            blob, mode = rec.blob_id, rec.mode
        else:
            seen = verified.get(path)
            if seen is None:
                if obs.size == want.size:
                    raise ValueError(f"plan_sync: {path} needs verifying first (paths_to_verify)")
                update.append(want)
                continue
            blob, mode = seen.blob_id, seen.mode
        if blob != want.blob_id:
            update.append(want)
        elif mode != want.mode:
            chmod.append(want)
        else:
            unchanged.append(want)
            stamps[path] = obs.stamp

    plan.delete = sorted(p for p in listing.files if p not in desired and p not in blocked_files)
    blocking_set = set(blocking_dirs)
    plan.delete_dirs = sorted(
        (d for d in listing.dirs if d not in desired_dirs and d not in blocking_set),
        key=lambda d: (-d.count("/"), d),
    )
    plan.add.sort(key=lambda f: f.path)
    plan.update.sort(key=lambda f: f.path)
    return plan
