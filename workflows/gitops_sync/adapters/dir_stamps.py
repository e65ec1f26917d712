"""Directory stamps: ``git ls-files -o`` only under the directories that changed.

Untracked files are found by reading every directory of the workspace (``git
ls-files -o``), which costs as much as ``git status``'s own look. But a name can
only appear in (or vanish from) a directory by changing that directory: its
mtime and its ctime move. The mtime can be set back by hand (``touch -d``); the
ctime cannot, since setting the mtime moves it. So after a sync the stamp
(mode, mtime, ctime, inode) of every directory is kept in ``.gitops-sync/dirs``,
and the next sync lists untracked files only under the directories whose stamp
moved (all of them when the top one did, or when there are many). This is the
rule git's untracked cache relies on, with the ctime added.

The stamps of a large tree are taken in C: GNU ``stat`` (``env -C <workspace>
xargs -0 stat --printf=... --``, the directories' names on its stdin) runs while
the sync loads its modules (a small tree's are taken by Python's ``lstat`` at
once). The answer is compared with the recorded one *as bytes*
(``core.stamp_lines``): Python looks only at the lines that differ, so a sync's
own work does not grow with the number of directories. Where that ``stat`` is
missing or fails (a directory gone, another system's ``stat``) the same lines are
made in Python, exactly as ``stat`` prints them.

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
it void, and every directory is read. It is one header line, ``dirstamps 2
<index checksum> <bytes of paths> <bytes of lines> <bytes of unknown>``, then
the three parts, each a run of NUL-terminated items: the directories (the top one
as ``.``), their stamps in the same order (``stat``'s line, or ``- <path>`` for
none yet), and the directories to read again whatever their stamp says. It is
replaced whole (a temporary file renamed) when anything in it moves; a torn or
older file is void. Only where stamps can be trusted: the caller does not use it
where chmod does not stick (an SMB mount, whose times and inode numbers the SMB
client may cache or make up).
"""

from __future__ import annotations

import os

from ..core.stamp_lines import moved_as_sets, moved_in_place, parse, stamps_of
from .git_proc import Spawned

TYPE_CHECKING = False  # typing's, without loading typing (the sync's start-up); mypy reads it True

if TYPE_CHECKING:
    from collections.abc import Iterable

#: the stamps' file under ``.gitops-sync/``
STAMPS = "dirs"
#: more changed directories than this: one ``ls-files -o`` of everything is simpler
MAX_PATHSPECS = 64
#: the file's first word and version
MAGIC = b"dirstamps 2"
#: what ``stat`` prints per directory (mode, mtime, ctime, inode, the name as given)
FORMAT = "%f %.9Y %.9Z %i %n\\0"
#: the command that takes the stamps: in the workspace (``env -C``), every directory's
#: name read from stdin by ``xargs``, which runs ``stat`` as often as its command-line
#: limit asks (128 KiB of names per run by default: once for 4,200 directories)
STAT = ("env", "-C")
XARGS = ("xargs", "-0")
#: fewer bytes of names than this (about 1,000 directories): Python's ``lstat`` takes
#: them in the sync's process (2-3 ms at most), cheaper than starting ``env``,
#: ``xargs`` and ``stat`` (about 7 ms of CPU, measured with 420 directories)
INLINE_BYTES = 16 << 10
TOP = b"."


def _line(st: os.stat_result, name: bytes) -> bytes:
    """A stamp exactly as ``stat --printf=FORMAT`` prints it (without the NUL)."""
    m, c = divmod(st.st_mtime_ns, 10**9), divmod(st.st_ctime_ns, 10**9)
    return b"%x %d.%09d %d.%09d %d %s" % (st.st_mode, *m, *c, st.st_ino, name)


def lstat_lines(root: str, paths: list[bytes]) -> tuple[bytes, list[bytes]]:
    """The stamps of PATHS (under ROOT) made in Python: (the lines, each NUL-terminated,
    of those that are there; the paths that are not)."""
    out: list[bytes] = []
    gone: list[bytes] = []
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:  # the workspace itself is gone: every directory with it
        return b"", list(paths)
    try:  # each directory looked up from the top one (not its whole path each time)
        for p in paths:
            try:
                out.append(_line(os.stat(p, dir_fd=fd, follow_symlinks=False), p) + b"\0")
            except OSError:
                gone.append(p)
    finally:
        os.close(fd)
    return b"".join(out), gone


class _Taking:
    """``stat`` running over the directories NAMES (NUL-terminated); ``lines`` waits for
    its answer."""

    def __init__(self, root: str, names: bytes) -> None:
        self.root, self.names = root, names
        self._paths: list[bytes] | None = None
        self.proc: Spawned | None = None
        self._taken: tuple[bytes, list[bytes]] | None = None
        if len(names) < INLINE_BYTES:  # a small tree: taken here and now
            self._taken = lstat_lines(root, self.paths)
            return
        env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
        argv = [*STAT, root, *XARGS, "stat", f"--printf={FORMAT}", "--"]
        try:
            self.proc = Spawned(argv, env, input=names)
        except OSError:  # no ``env``: Python takes them
            self.proc = None

    @property
    def paths(self) -> list[bytes]:
        """The names as a list (only where one is needed: a directory gone, no GNU stat)."""
        if self._paths is None:
            self._paths = self.names.split(b"\0")[:-1]
        return self._paths

    def lines(self) -> tuple[bytes, list[bytes]]:
        """(every stamp taken, NUL-terminated, in the names' order; the paths not there).
        The caller counts the lines (``Check.finish``): here only the last one is checked."""
        if self._taken is not None:
            return self._taken
        out, _err, code = self.proc.communicate() if self.proc is not None else (b"", b"", -1)
        last = self.names[self.names.rfind(b"\0", 0, len(self.names) - 1) + 1 : -1]
        if code == 0 and out.endswith(b" %s\0" % last):
            return out, []
        missing = _gone(self.paths, out) if code == 123 else None  # a stat said 1: not there
        if missing is None:  # no GNU stat (or an answer not understood): Python's lstat
            return lstat_lines(self.root, self.paths)
        return out, missing

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


def _gone(part: list[bytes], out: bytes) -> list[bytes] | None:
    """The paths of PART that ``stat``'s answer OUT has no line for (it goes on past a
    path that is not there), or None when OUT is not one line per path, in order (or
    empty: a ``stat`` that refused every path is not believed)."""
    lines = out.split(b"\0")
    if not out or lines.pop() != b"":
        return None
    gone: list[bytes] = []
    i = 0
    for p in part:
        stamp = parse(lines[i]) if i < len(lines) else None
        if stamp is not None and stamp[0] == p:
            i += 1
        else:
            gone.append(p)
    return gone if i == len(lines) else None


class Seen:
    """The stamps a check took: PATHS and LINES (NUL-terminated runs, in one order) and
    the directories whose stamp is not to be trusted yet (UNKNOWN)."""

    __slots__ = ("lines", "paths", "unknown")

    def __init__(self, paths: bytes = b"", lines: bytes = b"", unknown: set[bytes] | None = None):
        self.paths, self.lines = paths, lines
        self.unknown: set[bytes] = unknown if unknown is not None else set()

    def __bool__(self) -> bool:
        return bool(self.paths)


class Check:
    """A check under way (``DirStamps.start_check``): ``finish`` gives its answer; ``kill``
    ends it when it is not wanted."""

    def __init__(
        self, stamps: DirStamps, recorded: Seen | None, now: int | None, taking: _Taking | None
    ) -> None:
        self.stamps, self.recorded, self.now, self.taking = stamps, recorded, now, taking

    def kill(self) -> None:
        if self.taking is not None:
            self.taking.kill()

    def finish(self) -> tuple[list[str] | None, Seen]:
        """Which directories to list untracked files under (None: all, the whole workspace;
        "" in the list is never returned), and the stamps seen now, to ``record`` after
        the sync."""
        old, now, taking = self.recorded, self.now, self.taking
        if old is None or now is None or taking is None:
            return None, Seen()
        lines, gone = taking.lines()
        if lines == old.lines and not old.unknown and not gone:
            return [], Seen(old.paths, lines)  # the common no-op: one comparison of bytes
        moved = None if gone else moved_in_place(lines, old.lines)
        if moved is None:  # lines of other lengths, or fewer: compared as sets
            moved = moved_as_sets(lines, old.lines, taking.names.count(b"\0") - len(gone))
        if moved is None:  # not one well-formed line per path: Python's lstat takes them
            lines, gone = lstat_lines(taking.root, taking.paths)
            moved = moved_as_sets(lines, old.lines, None) or {}
        paths = old.paths
        if gone:  # rare: rebuilt without them (and their stamps void: they moved)
            skip = set(gone)
            paths = b"".join(p + b"\0" for p in taking.paths if p not in skip)
        again = old.unknown - moved.keys() - set(gone)  # unknown before, the same stamp now
        ctimes = {**moved, **stamps_of(lines, again)}
        unknown = {name for name, ctime in ctimes.items() if ctime >= now}  # within the tick
        unknown.update(again - ctimes.keys())  # (no line found: still unknown)
        names = {*ctimes, *again, *gone}
        seen = Seen(paths, lines, unknown)
        if TOP in names or not (paths.startswith(TOP + b"\0") or b"\0.\0" in paths):
            return None, seen
        if len(names) > MAX_PATHSPECS:
            return None, seen
        outer: list[str] = []
        for path in sorted(n.decode("utf-8", "surrogateescape") for n in names):
            if not outer or not path.startswith(outer[-1] + "/"):
                outer.append(path)  # a directory's pathspec covers every one beneath it
        return outer, seen


class DirStamps:
    """The stamps of one workspace's directories (``root``; bookkeeping under ``meta``)."""

    def __init__(self, root: str, meta: str) -> None:
        self.root = root
        self.file = os.path.join(meta, STAMPS)
        self._tmp = os.path.join(meta, "tmp")
        self._checksum: str | None = None  # what the file says, once read (valid)
        self._said: Seen | None = None

    def _read(self, index_checksum: str | None) -> Seen | None:
        try:
            with open(self.file, "rb") as f:
                data = f.read()
        except OSError:
            return None
        nl = data.find(b"\n")
        head = data[:nl].split(b" ")
        if nl < 0 or len(head) != 6 or b" ".join(head[:2]) != MAGIC:
            return None
        if not all(h.isdigit() for h in head[3:]):
            return None
        a, b, c = (int(h) for h in head[3:])
        if nl + 1 + a + b + c != len(data):
            return None  # torn
        body = memoryview(data)[nl + 1 :]
        paths, lines = bytes(body[:a]), bytes(body[a : a + b])
        unknown = set(bytes(body[a + b :]).split(b"\0")[:-1])
        self._checksum = head[2].decode("ascii", "replace")
        self._said = Seen(paths, lines, unknown)
        if not index_checksum or self._checksum != index_checksum:
            return None
        return self._said

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

    def start_check(self, index_checksum: str | None) -> Check:
        """Start taking the stamps (``stat`` runs on while the caller goes on)."""
        recorded = self._read(index_checksum)
        now = self._now() if recorded is not None else None
        if recorded is None or now is None:
            return Check(self, None, None, None)
        return Check(self, recorded, now, _Taking(self.root, recorded.paths))

    def check(self, index_checksum: str | None) -> tuple[list[str] | None, Seen]:
        """``start_check``, then its answer (``Check.finish``)."""
        return self.start_check(index_checksum).finish()

    def record(
        self,
        seen: Seen,
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
        paths, lines, unknown_now = seen.paths, seen.lines, set(seen.unknown)
        asked = [(_name(d), False) for d in new_dirs] + [(_name(d), True) for d in unknown]
        if asked:
            # a few looked up in the bytes; many (every directory of a tree) in a set
            known = set(paths.split(b"\0")) if len(asked) > 64 else None
            hay = b"\0" + paths if known is None else b""
            added: list[bytes] = []
            for name, always in asked:
                there = name in known if known is not None else b"\0%s\0" % name in hay
                if not there and name not in unknown_now:
                    added.append(name)
                    unknown_now.add(name)
                elif always:
                    unknown_now.add(name)
            if added:
                paths += b"".join(n + b"\0" for n in added)
                lines += b"".join(b"- %s\0" % n for n in added)
        said = self._said
        if (
            said is not None
            and index_checksum == self._checksum
            and (paths, lines, unknown_now) == (said.paths, said.lines, said.unknown)
        ):
            return  # what the file says already (a no-op): nothing written
        rest = b"".join(n + b"\0" for n in sorted(unknown_now))
        head = b"%s %s %d %d %d\n" % (
            MAGIC, index_checksum.encode("ascii"), len(paths), len(lines), len(rest),
        )  # fmt: skip
        os.makedirs(self._tmp, exist_ok=True)
        tmp = os.path.join(self._tmp, f"dirs-{os.urandom(8).hex()}")
        with open(tmp, "wb") as f:
            f.writelines((head, paths, lines, rest))
        os.replace(tmp, self.file)
        self._checksum, self._said = index_checksum, Seen(paths, lines, unknown_now)

    def remove(self) -> None:
        try:  # noqa: SIM105 (not contextlib: it is loaded only after git starts)
            os.unlink(self.file)
        except FileNotFoundError:
            pass
        self._checksum, self._said = None, None


def _name(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape") if path else TOP
