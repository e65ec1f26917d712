"""Which paths of a commit's tree are synced, and which are skipped and why.

Everything is synced except ``.github/``, paths matched by the root
``.syncignore`` (gitignore syntax, matched by ``pathspec``), the reserved
``.gitops-sync/``, symbolic links and submodules (never followed or written),
and names the workspace cannot hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .model import (
    MODE_EXEC,
    MODE_FILE,
    MODE_GITLINK,
    MODE_LINK,
    RESERVED_DIR,
    Skipped,
    SourceFile,
    TreeRecord,
)

SYNCIGNORE = ".syncignore"
_MODE_REASONS = {
    MODE_LINK: "symbolic link: never followed or written",
    MODE_GITLINK: "submodule: never followed or written",
}
ALWAYS_EXCLUDED = (".github/",)


class SyncIgnore:
    """Gitignore-syntax matcher for ``.syncignore``; empty text matches nothing."""

    def __init__(self, text: str | None) -> None:
        lines = [ln for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("#")]
        self._spec = None
        if lines:
            import pathspec  # deferred: ~30 ms, only when a .syncignore exists

            self._spec = pathspec.GitIgnoreSpec.from_lines(lines)

    @property
    def active(self) -> bool:
        return self._spec is not None

    def matches(self, path: str) -> bool:
        return self._spec is not None and self._spec.match_file(path)


def select_desired(
    records: Iterable[TreeRecord],
    syncignore: SyncIgnore,
    name_problem: Callable[[str], str | None] | None = None,
) -> tuple[dict[str, SourceFile], list[Skipped]]:
    """Split a commit's tree into the files to sync and the entries skipped."""
    desired: dict[str, SourceFile] = {}
    skipped: list[Skipped] = []
    reserved = RESERVED_DIR + "/"
    regular = (MODE_FILE, MODE_EXEC)
    ignored = syncignore.matches if syncignore.active else None
    for rec in records:
        path = rec.path
        if path.startswith(ALWAYS_EXCLUDED) or (ignored is not None and ignored(path)):
            continue
        if path.startswith(reserved) or path == RESERVED_DIR:
            skipped.append(Skipped(path, "reserved: .gitops-sync/ belongs to the sync itself"))
        elif rec.mode not in regular:
            skipped.append(
                Skipped(path, _MODE_REASONS.get(rec.mode, f"unsupported git mode {rec.mode:o}"))
            )
        elif name_problem is not None and (problem := name_problem(path)) is not None:
            skipped.append(Skipped(path, problem))
        else:
            desired[path] = rec  # the tree entry itself: no copy
    return desired, skipped
