"""Git processes started before the sync's modules load, and taken over when asked for.

A sync's own start-up (the interpreter, then ``pathlib``, ``subprocess`` and the
rest) takes longer than the first questions it asks git, and the longest of them,
``git diff-files`` (one ``lstat`` per indexed file), needs nothing the imports
bring. ``start_sync`` (called by ``cli.sync_run`` before anything heavy loads)
takes the workspace's lock and starts, with ``os.posix_spawn``, the processes the
sync is about to start anyway: ``rev-parse`` of the ref, ``diff-files``, and the
``stat`` that takes the directory stamps (``dir_stamps``: its answer names the
directories ``ls-files -o`` is to read, so that one starts when the sync asks).

Nothing here decides anything. The adapters build their command lines and
environments with the same functions (``source_env``, ``index_env``,
``rev_parse_args``), and each, where it would start a process, first asks
``adopt`` for one started with exactly that command line, environment and
directory; the directory stamps and the lock are taken over the same way (the
stamps only for the same file and index, the lock only for the same file). Anything not
taken over is ended by ``discard``. So a guess that was wrong (another mode
setting, a fallback) costs a process, never a different answer.

Only ``os``, ``stat``, ``fcntl`` and ``select`` are imported (a unit test checks).
"""

from __future__ import annotations

import os
import stat

from ..core.model import RESERVED_DIR as META_DIR
from .git_proc import Spawned

TYPE_CHECKING = False  # typing's, without loading typing (the sync's start-up); mypy reads it True

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .dir_stamps import Check, DirStamps, Seen

GIT = "git"
#: the configuration of every git run on a workspace index (``git_index``)
_INDEX_CONFIG = (
    ("core.autocrlf", "false"),
    ("core.safecrlf", "false"),
    ("core.symlinks", "true"),
    ("core.ignorecase", "false"),
    ("core.precomposeunicode", "false"),
    ("core.quotepath", "false"),
    ("core.preloadindex", "true"),
    ("core.untrackedcache", "false"),
    ("core.splitindex", "false"),
    ("core.fsmonitor", "false"),
    ("core.filemode", None),  # "true" where modes are trusted (chmod sticks), else "false"
    ("index.version", "4"),
    ("gc.auto", "0"),
)
DIFF_FILES = ("diff-files", "--raw", "-z", "--abbrev=40")


def source_env(token: str | None) -> dict[str, str]:
    """The environment of every git run on the source repository (``GitSource``)."""
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false", LC_ALL="C")
    env.pop("GIT_DIR", None)
    if token:
        # Passed through the environment: never in argv (ps) and never on disk.
        import base64

        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.extraHeader",
            GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
        )
    return env


def rev_parse_args(path: str, ref: str) -> list[str]:
    """``GitSource.resolve`` of a local repository: its git directory and REF's commit."""
    return [GIT, "-C", path, "rev-parse", "--absolute-git-dir", "--verify", "--quiet",
            "--end-of-options", f"{ref}^{{commit}}"]  # fmt: skip


def index_env(root: str, trust_mode: bool) -> dict[str, str]:
    """The environment of every git run on ROOT's workspace index (``WorkspaceIndex``):
    the user's configuration ignored, ``.gitops-sync/`` as git directory and home."""
    meta = os.path.join(root, META_DIR)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "XDG_CONFIG")) and k != "HOME"
    }
    env.update(
        GIT_DIR=os.path.join(meta, "git"),
        GIT_WORK_TREE=root,
        GIT_INDEX_FILE=os.path.join(meta, "index"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_LITERAL_PATHSPECS="1",
        GIT_OPTIONAL_LOCKS="0",
        HOME=meta,
        LC_ALL="C",
        GIT_CONFIG_COUNT=str(len(_INDEX_CONFIG)),
    )
    for i, (key, value) in enumerate(_INDEX_CONFIG):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value or ("true" if trust_mode else "false")
    return env


def index_argv(root: str, args: Sequence[str]) -> list[str]:
    """The command line of ``git ARGS`` on ROOT's workspace index (run from ROOT)."""
    return [GIT, "-C", root, *args]


def untracked_args(dirs: Sequence[str] | None) -> tuple[str, ...]:
    """``ls-files -o`` under DIRS (None: the whole workspace), ``.gitops-sync/`` left out."""
    return ("ls-files", "-z", "-o", "--directory", f"--exclude=/{META_DIR}/",
            *(["--", *dirs] if dirs else []))  # fmt: skip


def index_checksum(index_file: str) -> str | None:
    """The index file's own trailing SHA-1: names this exact state of the index."""
    try:
        with open(index_file, "rb") as f:
            f.seek(-20, os.SEEK_END)
            return f.read(20).hex()
    except OSError:
        return None


def probe_chmod(tmp: str, fchmod: object = os.fchmod) -> bool:
    """True when a mode set on a new file in TMP reads back as set (False on an SMB mount,
    where the mode comes from the mount options); True when it cannot be tried."""
    probe = os.path.join(tmp, f"mode-{os.urandom(8).hex()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fchmod(fd, 0o644)  # type: ignore[operator]
            before = os.fstat(fd).st_mode & 0o777
            fchmod(fd, 0o755)  # type: ignore[operator]
            after = os.fstat(fd).st_mode & 0o777
        finally:
            os.close(fd)
            try:  # noqa: SIM105 (not contextlib: it is loaded only after git starts)
                os.unlink(probe)
            except FileNotFoundError:
                pass
    except OSError:
        return True
    return (before, after) == (0o644, 0o755)


# ------------------------------------------------------------------ processes
def _key(argv: Sequence[str], env: Mapping[str, str]) -> tuple[object, ...]:
    return (tuple(argv), tuple(sorted(env.items())))


_started: dict[tuple[object, ...], Spawned] = {}
#: (stamps file, index checksum) -> the stamps being taken (``DirStamps.start_check``)
_stamps: dict[tuple[str, str | None], Check] = {}
_locks: list[int] = []


def spawn(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Start ARGV now, for ``adopt`` to take over."""
    _started[_key(argv, env)] = Spawned(argv, env)


def adopt(argv: Sequence[str], env: Mapping[str, str]) -> Spawned | None:
    """The process ``spawn`` started with exactly ARGV and ENV, or None."""
    if not _started:
        return None
    return _started.pop(_key(argv, env), None)


def adopt_stamps(
    stamps_file: str, index_checksum: str | None
) -> tuple[DirStamps, list[str] | None, Seen] | None:
    """The stamps started early for this file and index (their ``DirStamps``, and
    ``Check.finish``'s answer), or None."""
    check = _stamps.pop((stamps_file, index_checksum), None) if _stamps else None
    if check is None:
        return None
    return (check.stamps, *check.finish())


def adopt_lock(fd: int) -> int | None:
    """The descriptor of the lock taken early on FD's file (the caller closes FD), or None."""
    if not _locks:
        return None
    st = os.fstat(fd)
    for held in _locks:
        other = os.fstat(held)
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            _locks.remove(held)
            return held
    return None


def discard() -> None:
    """End every process not taken over, and release a lock not taken over."""
    while _started:
        _started.popitem()[1].kill()
    while _stamps:
        _stamps.popitem()[1].kill()
    while _locks:
        os.close(_locks.pop())


# ---------------------------------------------------------------- the sync's
def as_pathlib(path: str) -> str | None:
    """PATH as ``str(pathlib.Path(path).absolute())`` gives it, for the plain cases (None
    for the others: nothing is started early for them)."""
    if not path.startswith("/"):
        path = os.path.join(os.getcwd(), path)
    parts = path.split("/")
    if path.startswith("//") or ".." in parts:
        return None
    return "/" + "/".join(p for p in parts if p and p != ".")


def _is_plain(path: str) -> bool:
    """True when ``str(pathlib.Path(path)) == path``: no empty or "." part, no trailing "/"."""
    parts = path.split("/")
    return bool(path) and "." not in parts and "" not in parts[1:] and path != "/"


def start_sync(repo: str, ref: str, workspace: str, token: str | None) -> None:
    """What ``sync_run.run`` is about to start, started now (see the module's doc): only
    for a local repository and a workspace with an index, and only once its lock is held.
    Best effort: whatever fails here, the sync starts what it needs itself."""
    try:
        _start_sync(repo, ref, workspace, token)
    except Exception:  # a guess that fails is no guess
        discard()


def path_str(path: str) -> str:
    """``str(pathlib.Path(path))``, without pathlib for the plain cases."""
    if _is_plain(path):
        return path
    from pathlib import Path

    return str(Path(path))


def _start_sync(repo: str, ref: str, workspace: str, token: str | None) -> None:
    if "://" in repo or "@" in repo or not ref or ref.startswith("-") or ".." in ref:
        return  # a URL (fetched first), or a ref ``resolve`` refuses
    if any(c.isspace() for c in ref):
        return
    root = as_pathlib(workspace)
    if root is None or root == "/":
        return
    meta = os.path.join(root, META_DIR)
    index_file = os.path.join(meta, "index")
    tmp = os.path.join(meta, "tmp")
    try:
        if not stat.S_ISREG(os.stat(index_file).st_mode) or not os.path.isdir(tmp):
            return
        fd = os.open(os.path.join(meta, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # another sync holds it: that sync's answer decides
        os.close(fd)
        return
    _locks.append(fd)
    if _is_plain(repo):  # as ``str(Path(repo))`` gives it
        spawn(rev_parse_args(repo, ref), source_env(token))
    if not probe_chmod(tmp):
        return  # no index scan is started where modes are not trusted
    env = index_env(root, True)
    spawn(index_argv(root, DIFF_FILES), env)
    from .dir_stamps import DirStamps

    checksum = index_checksum(index_file)
    stamps = DirStamps(root, meta)
    _stamps[(stamps.file, checksum)] = stamps.start_check(checksum)  # ``stat`` runs on
