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
it void, and every directory is read. It is a sequence of segments, each
``<index checksum> <length>\n`` then that many bytes of NUL-terminated (path,
stamp) pairs; a later pair replaces an earlier one (the stamp ``-`` removes the
path) and the last segment's checksum is the file's. A sync that moved a few
stamps appends one segment (only the sync reads this file, under the workspace's
lock); a torn segment voids the file. It is rewritten whole when the appended
segments outgrow a quarter of it. Only where stamps can be trusted: the
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


#: a pair's stamp that removes its path (a directory gone)
GONE = "-"


def _segment(checksum: str, pairs: Iterable[tuple[str, str]]) -> bytes:
    body = "".join(f"{p}\0{s}\0" for p, s in pairs).encode("utf-8", "surrogateescape")
    return b"%s %d\n%s" % (checksum.encode("ascii"), len(body), body)


def _parse(data: bytes) -> tuple[str, dict[str, str], int] | None:
    """The file's (last checksum, stamps, bytes of its first segment); None when torn."""
    stamps: dict[str, str] = {}
    checksum, first, pos = "", 0, 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        head = data[pos:nl].split(b" ") if nl >= 0 else []
        if len(head) != 2 or not head[1].isdigit():
            return None
        end = nl + 1 + int(head[1])
        if end > len(data):
            return None
        fields = data[nl + 1 : end].decode("utf-8", "surrogateescape").split("\0")
        if len(fields) % 2 != 1 or fields[-1]:  # pairs, each field NUL-terminated
            return None
        stamps.update(zip(fields[0:-1:2], fields[1:-1:2], strict=True))
        checksum, pos = head[0].decode("ascii", "replace"), end
        first = first or end
    for path in [p for p, v in stamps.items() if v == GONE]:
        del stamps[path]
    return checksum, stamps, first


def append_at(path: str, data: bytes, at: int) -> bool:
    """Write DATA at the end of PATH if it is AT bytes long; False (nothing written) if
    not. In place: a reader may see part of DATA (the caller's format tells)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size != at:
            return False
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return True
    finally:
        os.close(fd)


class DirStamps:
    """The stamps of one workspace's directories (``root``; bookkeeping under ``meta``)."""

    def __init__(self, root: str, meta: str) -> None:
        self.root = root
        self.file = os.path.join(meta, STAMPS)
        self._tmp = os.path.join(meta, "tmp")
        self._size: int | None = None  # the file's size as read (valid), and its first
        self._first = 0  # segment's
        self._checksum: str | None = None  # and what it says, when valid
        self._stamps: dict[str, str] = {}

    def _read(self, index_checksum: str | None) -> dict[str, str] | None:
        try:
            with open(self.file, "rb") as f:
                data = f.read()
        except OSError:
            return None
        parsed = _parse(data)
        if parsed is None:
            return None
        self._size, self._first = len(data), parsed[2]
        self._checksum, self._stamps = parsed[0], parsed[1]
        if not index_checksum or parsed[0] != index_checksum:
            return None
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
        try:  # each directory looked up from the top one (not its whole path each time)
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None, {}
        lstat, isdir = os.stat, stat.S_ISDIR
        try:
            for path, old in recorded.items():
                try:
                    st = lstat(path or ".", dir_fd=fd, follow_symlinks=False)
                except OSError:
                    changed.append(path)
                    continue
                if not isdir(st.st_mode):
                    changed.append(path)
                    continue
                if st.st_ctime_ns < now:  # hexadecimal: a fifth of decimal's cost
                    new = "%x.%x.%x" % (st.st_mtime_ns, st.st_ctime_ns, st.st_ino)  # noqa: UP031
                    seen[path] = new
                    if new != old:
                        changed.append(path)
                else:
                    seen[path] = ""
                    changed.append(path)
        finally:
            os.close(fd)
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
        known = self._stamps if self._size is not None else None
        if known is not None and self._size is not None:
            moved = [(p, v) for p, v in stamps.items() if known.get(p) != v]
            moved.extend((p, GONE) for p in known.keys() - stamps.keys())
            segment = _segment(index_checksum, sorted(moved))
            if self._size - self._first + len(segment) <= max(4096, self._first // 4):
                try:  # one segment appended: only what moved is written
                    if append_at(self.file, segment, self._size):
                        self._size += len(segment)
                        self._checksum, self._stamps = index_checksum, stamps
                        return
                except OSError:
                    pass  # written whole below
        data = _segment(index_checksum, sorted(stamps.items()))
        os.makedirs(self._tmp, exist_ok=True)
        tmp = os.path.join(self._tmp, f"dirs-{os.urandom(8).hex()}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.file)
        self._size, self._first = len(data), len(data)
        self._checksum, self._stamps = index_checksum, stamps

    def remove(self) -> None:
        try:  # noqa: SIM105 (not contextlib: it is loaded only after git starts)
            os.unlink(self.file)
        except FileNotFoundError:
            pass
        self._size, self._first, self._checksum, self._stamps = None, 0, None, {}
