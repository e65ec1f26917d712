"""A git index of a directory workspace, so that git's C code finds what changed.

``.gitops-sync/git`` is a private git directory: its objects are the source
repository's (an alternate), its ``info/attributes`` turns every conversion off
(eol, filters, ident: bytes are written and hashed as they are) and its config
ignores the user's. ``.gitops-sync/index`` lists what the workspace held after
the last sync, with the stat data git trusts (racy-git aware). Python then sees
only the paths ``git diff-files``, ``git ls-files -o`` and ``git diff-index``
name. Git's failures here are ``IndexUnusable``: the caller falls back to the
manifest path, which needs no index.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Iterable

from ..core.model import RESERVED_DIR as META_DIR
from . import git_early
from .dir_stamps import DirStamps, Seen
from .git_early import DIFF_FILES, index_argv, index_checksum, index_env, untracked_args
from .git_proc import Spawned

ZERO_OID = "0" * 40
_ATTRIBUTES = b"* -text -filter -ident -working-tree-encoding -eol\n"
#: entries checked out per ``git checkout-index`` run; the lease is checked in between
CHECKOUT_BATCH = 4096


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class IndexUnusable(Exception):
    """The index (or git) cannot be used for this sync; the manifest path can."""


class IndexChange:
    """One line of ``git diff-*`` raw output: from ``old`` (the index) to ``new``.

    A plain slotted class, not a dataclass: this module loads before git starts, and
    ``dataclasses`` is the dearest import of a sync's start-up."""

    __slots__ = ("new_mode", "new_oid", "old_mode", "old_oid", "path", "status")

    def __init__(
        self, path: str, old_mode: int, old_oid: str, new_mode: int, new_oid: str, status: str
    ) -> None:
        self.path, self.old_mode, self.old_oid = path, old_mode, old_oid
        self.new_mode, self.new_oid, self.status = new_mode, new_oid, status

    def _fields(self) -> tuple[str, int, str, int, str, str]:
        return (self.path, self.old_mode, self.old_oid, self.new_mode, self.new_oid, self.status)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IndexChange) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass is

    def __repr__(self) -> str:
        return f"IndexChange{self._fields()!r}"


def _parse_raw(out: bytes) -> tuple[list[IndexChange], list[str]]:
    """Parse ``--raw -z`` output; also returns names that are not UTF-8."""
    changes: list[IndexChange] = []
    bad: list[str] = []
    fields = out.split(b"\0")
    for i in range(0, len(fields) - 1, 2):
        meta, raw = fields[i], fields[i + 1]
        old_mode, new_mode, old_oid, new_oid, status = meta[1:].decode().split(" ")
        try:
            path = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(raw.decode("utf-8", "backslashreplace"))
            continue
        changes.append(
            IndexChange(path, int(old_mode, 8), old_oid, int(new_mode, 8), new_oid, status[0])
        )
    return changes, bad


class WorktreeScan:
    """``diff-index``, ``diff-files`` and ``ls-files -o`` under way (``start_scan``).

    ``dir_stamps``: the directory stamps taken before ``ls-files -o`` started
    (``adapters.dir_stamps``), None where they are not used; ``stamper``: the
    ``DirStamps`` that took them (it knows what its file says, so that a sync that
    changes nothing does not rewrite it), whichever ``WorkspaceIndex`` records them."""

    __slots__ = ("commit", "dir_stamps", "finishers", "index_file", "stamper")

    def __init__(
        self,
        index_file: str,
        commit: str,
        *finishers: Callable[[], bytes],
        dir_stamps: Seen | None = None,
        stamper: DirStamps | None = None,
    ) -> None:
        self.index_file = index_file
        self.commit = commit
        self.finishers = finishers
        self.dir_stamps = dir_stamps
        self.stamper = stamper

    def close(self) -> None:
        """Wait for the processes (their answers may be unused: a fallback, an error)."""
        for finish in self.finishers:
            with contextlib.suppress(IndexUnusable):
                finish()


class WorkspaceIndex:
    """The git index of one workspace directory; reads need no writes."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        objects_dir: str | os.PathLike[str],
        *,
        trust_mode: bool = True,
    ) -> None:
        # strings, not pathlib: this loads on every sync's start-up
        self.root = os.fspath(root)
        self.meta = os.path.join(self.root, META_DIR)
        self.git_dir = os.path.join(self.meta, "git")
        self.index_file = os.path.join(self.meta, "index")
        self._objects = os.fspath(objects_dir)
        self.trust_mode = trust_mode
        self._env = index_env(str(root), trust_mode)
        # where stamps cannot be trusted (an SMB mount), every directory is read every time
        self.dir_stamps = DirStamps(self.root, self.meta) if trust_mode else None

    # ------------------------------------------------------------------ setup
    def _files(self) -> dict[str, bytes]:
        git = self.git_dir
        return {
            os.path.join(git, "HEAD"): b"ref: refs/heads/main\n",
            os.path.join(git, "config"): b"[core]\n\trepositoryformatversion = 0\n\tbare = false\n",
            os.path.join(git, "objects", "info", "alternates"): f"{self._objects}\n".encode(),
            os.path.join(git, "info", "attributes"): _ATTRIBUTES,
        }

    def ready(self) -> bool:
        """True when the git directory exists as ``prepare`` leaves it (read-only check)."""
        try:
            return all(_read(p) == data for p, data in self._files().items())
        except OSError:
            return False

    def prepare(self) -> None:
        """Create or repair the private git directory; drop a lock a killed git left."""
        for path, data in self._files().items():
            try:
                if _read(path) == data:
                    continue
            except OSError:
                pass
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        os.makedirs(os.path.join(self.git_dir, "refs"), exist_ok=True)
        # The caller holds the workspace (lease + lock): a lock file now is a dead git's.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.meta, "index.lock"))

    @property
    def exists(self) -> bool:
        return os.path.isfile(self.index_file)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.index_file)
        if self.dir_stamps is not None:
            self.dir_stamps.remove()

    def checksum(self) -> str | None:
        """The index file's own trailing SHA-1: names this exact state of the index."""
        return index_checksum(self.index_file)

    def entry_count(self) -> int:
        """How many files the index lists (its header says so)."""
        try:
            with open(self.index_file, "rb") as f:
                head = f.read(12)
        except OSError as exc:
            raise IndexUnusable(f"cannot read the index: {exc}") from exc
        if len(head) != 12 or head[:4] != b"DIRC":
            raise IndexUnusable("the index is damaged")
        return int(struct.unpack(">I", head[8:12])[0])

    # ------------------------------------------------------------------ reads
    def _run(self, *args: str, stdin: bytes | None = None) -> bytes:
        if args[0] == "checkout-index":  # writes the workspace's files: git's umask is set
            import subprocess

            proc = subprocess.run(
                index_argv(self.root, args),
                input=stdin,
                capture_output=True,
                env=self._env,
                umask=0o022,
                stdin=None if stdin is not None else subprocess.DEVNULL,
            )
            return self._answer(args, proc.stdout, proc.stderr, proc.returncode)
        return self._answer(
            args, *Spawned(index_argv(self.root, args), self._env, stdin).communicate()
        )

    @staticmethod
    def _answer(args: tuple[str, ...], out: bytes, err: bytes, code: int) -> bytes:
        if code != 0:
            msg = err.decode("utf-8", "replace").strip().splitlines()
            raise IndexUnusable(f"git {args[0]}: {msg[0] if msg else code}")
        return out

    def _start(self, *args: str) -> Callable[[], bytes]:
        """Start ``git ARGS`` now; the callable waits for its output (IndexUnusable on failure).

        No reader thread: a thread started now would take the interpreter's lock from
        the caller while it starts the next process or imports. Git runs meanwhile; an
        answer larger than a pipe's buffer waits in git until the callable reads it.
        A process ``git_early`` started for this very command is taken over.
        """
        argv = index_argv(self.root, args)
        proc = git_early.adopt(argv, self._env) or Spawned(argv, self._env)
        return lambda: self._answer(args, *proc.communicate())

    def start_scan(self, commit: str, *, stamps: bool = True) -> WorktreeScan:
        """Start git's three questions at once (they run on the two cores while the
        caller does something else, e.g. load the sync's modules):

        - what the commit's tree changes against the index (``diff-index -R``),
        - which indexed files the workspace no longer holds as indexed (``diff-files``),
        - what the workspace holds that the index does not (``ls-files -o``; a
          directory holding nothing indexed is one entry ending in ``/``), only under
          the directories whose stamps moved since the last sync (``dir_stamps``).

        ``observe`` reads the answers (in turn: each git runs on while another is read).
        Start it only while holding the workspace (its lock). STAMPS False (a dry run):
        the directory stamps are not consulted (they need a file written to read the
        file system's clock), so every directory is read.
        """
        diff_index = self._start("diff-index", "--cached", "-R", "--raw", "-z", "--no-renames",
                                 "--abbrev=40", commit)  # fmt: skip
        diff_files = self._start(*DIFF_FILES)
        dirs: list[str] | None = None
        seen: Seen | None = None
        if stamps and self.dir_stamps is not None:  # taken before ls-files reads a directory
            checksum = self.checksum()
            early = git_early.adopt_stamps(self.dir_stamps.file, checksum)
            if early is not None:  # taken (and ls-files started) before the imports
                self.dir_stamps, dirs, seen = early
            else:
                dirs, seen = self.dir_stamps.check(checksum)
        stamper = self.dir_stamps if seen is not None else None
        if dirs == []:
            return WorktreeScan(self.index_file, commit, diff_index, diff_files, lambda: b"",
                                dir_stamps=seen, stamper=stamper)  # fmt: skip
        untracked = self._start(*untracked_args(dirs))
        return WorktreeScan(self.index_file, commit, diff_index, diff_files, untracked,
                            dir_stamps=seen, stamper=stamper)  # fmt: skip

    def record_dir_stamps(
        self, scan: WorktreeScan | None, new_dirs: Iterable[str], untracked: Iterable[str] = ()
    ) -> None:
        """After a sync, for this index as it is now (call it after the sync's last change
        to the index): the stamps SCAN took; NEW_DIRS (directories the sync may have made,
        or that have no stamp yet) as unknown; and as unknown too every directory that
        held an UNTRACKED entry, whatever became of it (a removal that failed is found
        again by the next sync's look)."""
        if self.dir_stamps is not None:
            seen = scan.dir_stamps if scan is not None and scan.dir_stamps is not None else Seen()
            stamps = self.dir_stamps
            if scan is not None and scan.stamper is not None and scan.stamper.file == stamps.file:
                stamps = scan.stamper  # the scan's (another index object may have started it)
            parents = (u.rstrip("/").rpartition("/")[0] for u in untracked)
            stamps.record(seen, new_dirs, parents, self.checksum())

    def observe(
        self, commit: str, scan: WorktreeScan | None = None
    ) -> tuple[list[IndexChange], list[IndexChange], list[str], list[str]]:
        """The answers of ``start_scan`` (SCAN, if it was started earlier for this index
        and commit; else started now).

        Returns (changes, drift, untracked, names that are not UTF-8).
        """
        if scan is None or (scan.index_file, scan.commit) != (self.index_file, commit):
            scan = self.start_scan(commit)
        outs: list[bytes] = []
        errors: list[IndexUnusable] = []
        for finish in scan.finishers:
            try:
                outs.append(finish())
            except IndexUnusable as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        changes, bad = _parse_raw(outs[0])
        drift, bad_drift = _parse_raw(outs[1])
        untracked: list[str] = []
        for raw in outs[2].split(b"\0"):
            if raw:
                try:
                    untracked.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    bad.append(raw.decode("utf-8", "backslashreplace"))
        return changes, drift, untracked, bad + bad_drift

    def entries(self) -> dict[str, tuple[int, str]]:
        """Every indexed path: (mode, blob id)."""
        out: dict[str, tuple[int, str]] = {}
        for item in self._run("ls-files", "-s", "-z").split(b"\0"):
            if item:
                meta, _, raw = item.partition(b"\t")
                mode, oid, _stage = meta.decode().split(" ")
                out[raw.decode("utf-8", "surrogateescape")] = (int(mode, 8), oid)
        return out

    def tree_dirs(self, commit: str) -> list[str]:
        """Every directory of COMMIT's tree that the workspace holds as a directory."""
        out = self._run("ls-tree", "-r", "-d", "-z", "--name-only", "--full-tree", commit)
        names = [raw.decode("utf-8", "surrogateescape") for raw in out.split(b"\0") if raw]
        return [n for n in names if n != META_DIR and os.path.isdir(os.path.join(self.root, n))]

    # ----------------------------------------------------------------- writes
    def reset(self, entries: Iterable[tuple[str, int, str]]) -> None:
        """A fresh index listing (path, mode, blob id) with no stat data yet."""
        self.remove()
        self.set_entries(entries, ())

    def set_entries(self, entries: Iterable[tuple[str, int, str]], removed: Iterable[str]) -> None:
        """Record entries (no stat data: ``refresh_paths`` or ``checkout`` adds it); drop others."""
        lines = [f"0 {ZERO_OID}\t{p}\0" for p in removed]
        lines.extend(f"{m:o} {oid}\t{p}\0" for p, m, oid in entries)
        if lines:
            self._run("update-index", "-z", "--index-info", stdin="".join(lines).encode())

    def record_paths(self, paths: list[str]) -> None:
        """One git process: each path as the workspace holds it now (hashed, with its stat
        data and its mode), or dropped where nothing is there any more (a file that became
        a directory included). Only where modes are trusted: elsewhere a new entry would
        take git's default mode, so ``set_entries`` then ``refresh_paths`` are used."""
        if paths:
            data = "".join(p + "\0" for p in paths).encode()
            self._run("update-index", "-z", "--add", "--remove", "--replace", "--info-only",
                      "--stdin", stdin=data)  # fmt: skip

    def refresh_paths(self, paths: list[str]) -> None:
        """Hash these files as they are now and record their stat data (no objects written)."""
        if paths:
            data = "".join(p + "\0" for p in paths).encode()
            self._run("update-index", "-z", "--add", "--info-only", "--stdin", stdin=data)

    def cache_trees(self) -> None:
        """Record each directory's tree id in the index (its cache-tree, ``git write-tree``),
        so that ``diff-index`` against a commit skips every directory whose tree is the
        commit's. Updates invalidate only the directories they touch. Best effort: a
        failure costs speed only, so it is ignored (trees the commit lacks, e.g. where
        ``.github/`` is left out, go to the private git directory's own objects)."""
        with contextlib.suppress(IndexUnusable):
            self._run("write-tree")

    def refresh_all(self) -> None:
        """Stat every entry; hash those whose stat data is missing or stale."""
        self._run("update-index", "-q", "--refresh", "--ignore-missing")

    def checkout(self, paths: list[str]) -> None:
        """Write these indexed files into the workspace (only onto paths nothing holds)."""
        data = "".join(p + "\0" for p in paths).encode()
        self._run("checkout-index", "-u", "-z", "--stdin", stdin=data)
