"""Directory stamps: ``git ls-files -o`` only under the directories that changed.

Untracked files are found by reading every directory of the workspace (``git
ls-files -o``), which costs as much as ``git status``'s own look. But a name can
only appear in (or vanish from) a directory by changing that directory: its
mtime and its ctime move. The mtime can be set back by hand (``touch -d``); the
ctime cannot, since setting the mtime moves it. So after a sync the stamp
(mtime, ctime, inode) of every directory is kept in ``.gitops-sync/dirs``, and
the next sync lists untracked files only under the directories whose stamp
moved (all of them when the top one did, or when there are many). This is the
rule git's untracked cache relies on, with the ctime added.

Two details keep it exact:

- A stamp is taken *before* git reads the directory, so a change while or after
  git reads it moves the stamp away from the one recorded: the next sync looks
  again. A directory the sync itself writes into is therefore looked at again
  by the next sync (under that directory only).
- Timestamps are coarse (a clock tick): a change within the tick in which a
  stamp was taken could leave it as it was. A directory whose ctime is not
  older than a file created just before the stamps are taken (the file
  system's own "now") is recorded as unknown, and looked at again next time.

The file names the index (its checksum) it was recorded against: another index
(a rebuild, a fallback, a crash between the index update and this file) makes
it void, and every directory is read. Only where stamps can be trusted: the
caller does not use it where chmod does not stick (an SMB mount, whose times
and inode numbers the SMB client may cache or make up).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

#: the stamps' file under ``.gitops-sync/``
STAMPS = "dirs"
#: more changed directories than this: one ``ls-files -o`` of everything is simpler
MAX_PATHSPECS = 64


def _stamp(st: os.stat_result) -> str:
    # hexadecimal: a fifth of the cost of decimal for 19-digit numbers (one per directory)
    return "%x.%x.%x" % (st.st_mtime_ns, st.st_ctime_ns, st.st_ino)  # noqa: UP031


class DirStamps:
    """The stamps of one workspace's directories (``root``; bookkeeping under ``meta``)."""

    def __init__(self, root: str, meta: str) -> None:
        self.root = root
        self.file = os.path.join(meta, STAMPS)
        self._tmp = os.path.join(meta, "tmp")
        self._recorded: bytes | None = None  # the file as read
        self._checksum: str | None = None  # and what it says, when valid
        self._stamps: dict[str, str] = {}

    def _read(self, index_checksum: str | None) -> dict[str, str] | None:
        try:
            with open(self.file, "rb") as f:
                data = f.read()
        except OSError:
            return None
        self._recorded = data
        head, _, body = data.partition(b"\n")
        if not index_checksum or head.decode("ascii", "replace") != index_checksum:
            return None
        self._checksum = index_checksum
        try:
            fields = body.decode("utf-8", "surrogateescape").split("\0")
        except UnicodeDecodeError:  # pragma: no cover (surrogateescape decodes anything)
            return None
        if len(fields) % 2 != 1 or fields[-1]:  # pairs, each field NUL-terminated
            return None
        self._stamps = dict(zip(fields[0:-1:2], fields[1:-1:2], strict=True))
        return self._stamps

    def _now(self) -> int | None:
        """The file system's current time (a new file's ctime), or None."""
        probe = os.path.join(self._tmp, f"now-{os.urandom(8).hex()}")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            return os.fstat(fd).st_ctime_ns
        finally:
            os.close(fd)
            os.unlink(probe)

    def check(self, index_checksum: str | None) -> tuple[list[str] | None, dict[str, str]]:
        """Which directories to list untracked files under (None: all, the whole workspace;
        "" in the list is never returned), and the stamps seen now (unknown ones as "";
        directories gone are left out), to ``record`` after the sync."""
        recorded = self._read(index_checksum)
        now = self._now() if recorded is not None else None
        if recorded is None or now is None:
            return None, {}
        seen: dict[str, str] = {}
        changed: list[str] = []
        root = self.root
        prefix = root.rstrip("/") + "/"
        lstat = os.lstat
        for path, old in recorded.items():
            try:
                st = lstat(prefix + path if path else root)
            except OSError:
                changed.append(path)
                continue
            if not stat.S_ISDIR(st.st_mode):
                changed.append(path)
                continue
            new = _stamp(st) if st.st_ctime_ns < now else ""
            seen[path] = new
            if not new or new != old:
                changed.append(path)
        if "" in changed or "" not in recorded or len(changed) > MAX_PATHSPECS:
            return None, seen
        changed.sort()
        outer: list[str] = []
        for path in changed:  # a directory's pathspec covers every one beneath it
            if not outer or not path.startswith(outer[-1] + "/"):
                outer.append(path)
        return outer, seen

    def record(
        self,
        seen: dict[str, str],
        new_dirs: Iterable[str],
        unknown: Iterable[str],
        index_checksum: str | None,
    ) -> None:
        """Keep SEEN (``check``'s), NEW_DIRS where SEEN has no stamp, and UNKNOWN (all to be
        read again next time) for INDEX_CHECKSUM's index. Nothing is written when the
        file already says exactly that."""
        if not index_checksum:
            self.remove()
            return
        stamps = dict(seen)
        for d in new_dirs:
            stamps.setdefault(d, "")
        stamps.update(dict.fromkeys(unknown, ""))
        if index_checksum == self._checksum and stamps == self._stamps:
            return  # what the file says already (a no-op): not even formatted
        body = "".join(f"{p}\0{s}\0" for p, s in sorted(stamps.items()))
        data = f"{index_checksum}\n{body}".encode("utf-8", "surrogateescape")
        if data == self._recorded:
            return
        os.makedirs(self._tmp, exist_ok=True)
        tmp = os.path.join(self._tmp, f"dirs-{os.urandom(8).hex()}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.file)
        self._recorded, self._checksum, self._stamps = data, index_checksum, stamps

    def remove(self) -> None:
        try:  # noqa: SIM105 (not contextlib: it is loaded only after git starts)
            os.unlink(self.file)
        except FileNotFoundError:
            pass
        self._recorded, self._checksum, self._stamps = None, None, {}
