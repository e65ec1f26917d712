"""The git side: resolve a ref, list a commit's tree, stream blob contents.

A local path (bare or not) is read in place: nothing is copied. Any URL
(``https://``, ``ssh://``, ``file://``, ``user@host:path``) is fetched into a
persistent bare cache per repository, shallow, so the next sync fetches only new
objects. Blob contents come from one long-lived ``git cat-file --batch`` whose
requests are written ahead by a feeder thread (no round trip per file). Git's
failures are translated into ``core.errors`` here, with URLs and tokens redacted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress

from ..core.errors import NotARepository, RepositoryUnreachable, UnknownRef, UsageError
from ..core.redact import redact
from . import git_early
from .git_early import path_str, rev_parse_args, source_env
from .git_proc import Spawned

TYPE_CHECKING = False  # typing's, without loading typing (the sync's start-up); mypy reads it True

if TYPE_CHECKING:
    import subprocess
    from typing import IO

    from ..core.model import TreeRecord

_HEX = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_UNKNOWN_REF = (
    "couldn't find remote ref",
    "not our ref",
    "no such remote ref",
    "unknown revision",
    "invalid refspec",
    "remote did not send all necessary objects",
)
_NOT_A_REPO = (
    "does not appear to be a git repository",
    "not a git repository",
    "repository not found",
)
CHUNK = 1 << 20


def _parse_ls_tree(out: bytes) -> tuple[list[TreeRecord], list[tuple[str, str]]]:
    """Parse ``git ls-tree -r -z --long``: ``mode type oid size\tpath`` NUL-terminated.

    Not ``--format``: git C-quotes ``%(path)`` inside a custom format even with -z.
    """
    from ..core.model import TreeRecord  # deferred: the model loads after git has started

    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError:
        return _parse_ls_tree_slow(out)
    records: list[TreeRecord] = []
    append = records.append
    for item in text.split("\0"):
        if item:
            meta, _, path = item.partition("\t")
            mode, _type, oid, size = meta.split()
            append(TreeRecord(path, int(mode, 8), oid, int(size) if size != "-" else -1))
    return records, []


def _parse_ls_tree_slow(out: bytes) -> tuple[list[TreeRecord], list[tuple[str, str]]]:
    """Entry by entry, for the rare tree with a name that is not UTF-8."""
    from ..core.model import TreeRecord

    records: list[TreeRecord] = []
    bad: list[tuple[str, str]] = []
    for item in out.split(b"\0"):
        if not item:
            continue
        meta, _, raw = item.partition(b"\t")
        mode, _type, oid, size = meta.split()
        try:
            path = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append((raw.decode("utf-8", "backslashreplace"), "name is not valid UTF-8"))
            continue
        records.append(
            TreeRecord(path, int(mode, 8), oid.decode(), int(size) if size != b"-" else -1)
        )
    return records, bad


def is_url(location: str) -> bool:
    """True for anything git must fetch; False for a path on this machine."""
    if "://" in location:
        return True
    # scp-like user@host:path (but not C:\ drive letters or plain paths with ':')
    return bool(re.match(r"^[\w.-]+@[\w.-]+:", location))


class GitSource:
    """One repository, opened for reading (and fetching, for a URL)."""

    def __init__(
        self,
        location: str,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | None = None,
    ):
        if not location:
            raise UsageError("--repo is empty")
        self.location = location
        self.remote = is_url(location)
        self._token = token
        self._env = self._git_env(token)
        # strings, not pathlib: this loads on every sync's start-up
        self._objects_dir: str | None = None
        self._git_dir: str | None = None
        self._prefetched: dict[
            tuple[str, tuple[str, ...]],
            Callable[[], tuple[list[TreeRecord], list[tuple[str, str]]]],
        ] = {}
        self._path = path_str(location)  # as ``str(pathlib.Path(location))``
        if self.remote:
            if cache_dir is None:
                raise UsageError("a cache directory is needed to fetch a URL")
            root = os.fspath(cache_dir)
            import hashlib

            key = hashlib.sha256(redact(location).encode()).hexdigest()[:24]
            self._git_dir = os.path.join(root, f"{key}.git")
            self._init_cache(root)
        elif not os.path.exists(self._path):
            raise NotARepository(f"{self._path}: no such file or directory")
        # A local repository's git directory is asked of git on first use: ``resolve``
        # asks for it and for the commit in one process.

    @property
    def git_dir(self) -> str:
        """The repository's git directory (a local one's is found on first use)."""
        if self._git_dir is None:
            self._git_dir = self._local_git_dir(self._path)
        return self._git_dir

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _git_env(token: str | None) -> dict[str, str]:
        return source_env(token)

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        import subprocess  # deferred: the sync's common path starts git with ``git_proc``

        proc = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args],
            capture_output=True,
            env=self._env,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RepositoryUnreachable(self._describe_failure(proc.stderr))
        return proc

    def _describe_failure(self, stderr: bytes) -> str:
        text = stderr.decode("utf-8", "replace").strip()
        lines = [
            ln for ln in text.splitlines() if ln.startswith(("fatal:", "error:"))
        ] or text.splitlines()
        first = lines[0] if lines else "git failed"
        first = first.removeprefix("fatal: ").removeprefix("error: ")
        return redact(f"{redact(self.location)}: {first}", [self._token])

    def _local_git_dir(self, path: str) -> str:
        import subprocess

        proc = subprocess.run(
            ["git", "-C", path, "rev-parse", "--absolute-git-dir"],
            capture_output=True,
            env=self._env,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise NotARepository(f"{path}: not a git repository")
        return proc.stdout.decode().strip()

    def _init_cache(self, root: str) -> None:
        if os.path.exists(os.path.join(self.git_dir, "HEAD")):
            return
        os.makedirs(root, exist_ok=True)
        tmp = self.git_dir + f".init-{os.getpid()}"
        import subprocess

        subprocess.run(["git", "init", "-q", "--bare", tmp], check=True, env=self._env)
        try:
            os.rename(tmp, self.git_dir)
        except OSError:  # another process created it first
            subprocess.run(["rm", "-rf", tmp], check=False)

    # ------------------------------------------------------------------ public
    def resolve(self, ref: str) -> str:
        """The commit id REF names, fetching it first for a URL."""
        if not ref or ref.startswith("-") or any(c.isspace() for c in ref) or ".." in ref:
            raise UsageError(f"invalid ref {ref!r}")
        if self.remote:
            return self._fetch(ref)
        if self._git_dir is None:  # both answers from one git process
            argv = rev_parse_args(self._path, ref)
            # started before the imports (``git_early``), or now
            started = git_early.adopt(argv, self._env) or Spawned(argv, self._env)
            out, _err, code = started.communicate()
            answer = out.decode().split("\n")
            if code == 0 and len(answer) == 3:
                self._git_dir = answer[0]
                return answer[1]
        proc = self._git(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False
        )
        if proc.returncode != 0:
            raise UnknownRef(f"unknown ref '{ref}' in {redact(self.location)}")
        return proc.stdout.decode().strip()

    def _fetch(self, ref: str) -> str:
        have = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if _HEX.match(ref) and have.returncode == 0:
            return have.stdout.decode().strip()  # a commit id is immutable: no fetch needed
        import hashlib

        target = f"refs/gitops-sync/{hashlib.sha1(ref.encode()).hexdigest()}"  # noqa: S324 (a name)
        proc = self._git(
            "fetch", "--quiet", "--no-tags", "--depth=1", "--no-write-fetch-head",
            "--", self.location, f"+{ref}:{target}",
            check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            low = proc.stderr.decode("utf-8", "replace").lower()
            if any(s in low for s in _UNKNOWN_REF):
                raise UnknownRef(f"unknown ref '{ref}' in {redact(self.location)}")
            if any(s in low for s in _NOT_A_REPO):
                raise NotARepository(self._describe_failure(proc.stderr))
            raise RepositoryUnreachable(self._describe_failure(proc.stderr))
        out = self._git("rev-parse", "--verify", f"{target}^{{commit}}", check=False)
        if out.returncode != 0:
            raise UnknownRef(f"'{ref}' in {redact(self.location)} does not name a commit")
        return out.stdout.decode().strip()

    def prefetch_list_tree(self, commit: str, *paths: str) -> None:
        """Start ``start_list_tree(commit, *paths)`` now (a small listing: PATHS are a
        few names); the next such call takes it over."""
        self._prefetched[(commit, paths)] = self._start_list_tree(commit, *paths, threaded=False)

    def start_list_tree(
        self, commit: str, *paths: str
    ) -> Callable[[], tuple[list[TreeRecord], list[tuple[str, str]]]]:
        """Start ``git ls-tree`` now (of PATHS only, if given); the callable waits and parses.

        Lets the caller walk the workspace while git reads the tree (two cores).
        """
        started = self._prefetched.pop((commit, paths), None)
        return started or self._start_list_tree(commit, *paths)

    def _start_list_tree(
        self, commit: str, *paths: str, threaded: bool = True
    ) -> Callable[[], tuple[list[TreeRecord], list[tuple[str, str]]]]:
        """THREADED: a thread reads git's answer as it comes (a whole tree's is megabytes);
        else the callable reads it (a small listing, started while Python imports: a
        thread would only take the interpreter's lock from the importer)."""
        only = ["--", *paths] if paths else []
        proc = Spawned(
            ["git", "--literal-pathspecs", f"--git-dir={self.git_dir}", "ls-tree", "-r", "-z",
             "--long", "--full-tree", commit, *only],
            self._env,
        )  # fmt: skip
        reader = None
        if threaded:
            import threading

            reader = threading.Thread(target=proc.communicate, daemon=True)
            reader.start()

        def finish() -> tuple[list[TreeRecord], list[tuple[str, str]]]:
            if reader is not None:
                reader.join()
            out, err, code = proc.communicate()
            if code != 0:
                raise RepositoryUnreachable(self._describe_failure(err))
            return _parse_ls_tree(out)

        return finish

    @property
    def objects_dir(self) -> str:
        """Where this repository's objects are (a linked worktree shares its main one's)."""
        if self._objects_dir is None:
            common = self.git_dir
            with suppress(OSError), open(os.path.join(common, "commondir")) as f:
                common = os.path.join(common, f.read().strip())  # a linked worktree's main
            self._objects_dir = os.path.normpath(os.path.join(common, "objects"))
        return self._objects_dir

    def blob_sizes(self, oids: Iterable[str]) -> dict[str, int]:
        """Sizes of these blobs, from one ``git cat-file --batch-check``."""
        wanted = list(dict.fromkeys(oids))
        if not wanted:
            return {}
        import subprocess

        proc = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", "cat-file", "--batch-check"],
            input=("\n".join(wanted) + "\n").encode(),
            capture_output=True,
            env=self._env,
        )
        sizes: dict[str, int] = {}
        for line in proc.stdout.decode().splitlines():
            oid, _, rest = line.partition(" ")
            kind, _, size = rest.partition(" ")
            if kind == "blob":
                sizes[oid] = int(size)
        missing = [o for o in wanted if o not in sizes]
        if proc.returncode != 0 or missing:
            raise RepositoryUnreachable(
                f"{redact(self.location)}: object {missing[0] if missing else '?'} is missing"
            )
        return sizes

    def read_blob(self, oid: str) -> bytes:
        out, err, code = Spawned(
            ["git", f"--git-dir={self.git_dir}", "cat-file", "blob", oid], self._env
        ).communicate()
        if code != 0:
            raise RepositoryUnreachable(self._describe_failure(err))
        return out

    @contextmanager
    def blobs(self, oids: Iterable[str]) -> Iterator[BlobReader]:
        """Stream many blobs through one ``git cat-file --batch``, in order."""
        reader = BlobReader(self, list(oids))
        try:
            yield reader
        finally:
            reader.close()


class BlobReader:
    """Iterate ``(oid, size, chunks)``; each ``chunks`` must be consumed in turn."""

    #: requests up to this size are written whole before the answers are read (git
    #: takes them into the pipe's buffer); more are written by a feeder thread
    _WRITTEN_AHEAD = 1 << 15

    def __init__(self, source: GitSource, oids: list[str]) -> None:
        self._oids = oids
        self._proc = Spawned(
            ["git", f"--git-dir={source.git_dir}", "cat-file", "--batch"], source._env, streams=True
        )
        stdin_fd, stdout_fd = self._proc.stdin_fd, self._proc.stdout_fd
        self._proc.stdin_fd = self._proc.stdout_fd = -1  # closed through the files below
        self._stdin = open(stdin_fd, "wb", buffering=0)  # noqa: SIM115 (closed by close())
        self._stdout = open(stdout_fd, "rb", buffering=CHUNK)  # noqa: SIM115
        self._feeder = None
        if len(oids) * 41 <= self._WRITTEN_AHEAD:
            self._feed()
        else:
            import threading

            self._feeder = threading.Thread(target=self._feed, daemon=True)
            self._feeder.start()

    def _feed(self) -> None:
        stdin = self._stdin
        try:
            for i in range(0, len(self._oids), 512):
                stdin.write(("\n".join(self._oids[i : i + 512]) + "\n").encode())
            stdin.close()
        except (BrokenPipeError, ValueError):
            pass  # the reader stopped early

    def __iter__(self) -> Iterator[tuple[str, int, Iterator[bytes]]]:
        out = self._stdout
        for _ in self._oids:
            header = out.readline().split()
            if len(header) != 3:
                raise RepositoryUnreachable(f"git cat-file: unexpected answer {header!r}")
            size = int(header[2])
            yield header[0].decode(), size, self._chunks(out, size)
            # the consumer must have drained the chunks; read the trailing newline
            out.read(1)

    @staticmethod
    def _chunks(out: IO[bytes], size: int) -> Iterator[bytes]:
        left = size
        while left:
            data = out.read(min(left, CHUNK))
            if not data:
                raise RepositoryUnreachable("git cat-file ended early")
            left -= len(data)
            yield data

    def close(self) -> None:
        self._proc.kill()  # ends it if it still runs (a reader that stopped early), reaps it
        for f in (self._stdout, self._stdin):
            with suppress(BrokenPipeError, OSError, ValueError):
                f.close()
