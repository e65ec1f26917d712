"""Workspace store over a directory: the mounted Azure Files share, or a local folder.

Writes go to ``.gitops-sync/tmp/`` and are renamed into place, so a reader (or a
``kill -9``) never sees a partial file under its final name. A file's stamp is
its mtime, ctime and inode: ctime cannot be set by hand, so any change to bytes
or mode changes the stamp.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator

from ..core.errors import WorkspaceNotWritable
from ..core.model import RESERVED_DIR as META_DIR
from .fs_safe import append_at, open_regular

TYPE_CHECKING = False  # typing's, without loading typing (the sync's start-up); mypy reads it True

if TYPE_CHECKING:
    from pathlib import Path

    from ..core.model import Content, Listing

# The sync's start-up opens this store before git starts and loads the model types
# (dataclasses) only afterwards: the methods that build them import them.
_EXEC = 0o100755  # core.model.MODE_EXEC (git's mode of an executable file)

CHUNK = 1 << 20


def _absolute(root: str) -> str:
    """``str(pathlib.Path(root).absolute())``, without pathlib for the plain cases."""
    from .git_early import as_pathlib

    plain = as_pathlib(root)
    if plain is None:
        from pathlib import Path

        return str(Path(root).absolute())
    return plain


def _stamp(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns}.{st.st_ctime_ns}.{st.st_ino}"


class DirectoryStore:
    max_concurrency = 4

    def __init__(self, root: str | os.PathLike[str]) -> None:
        # Strings, not pathlib (a sixth of a sync's start-up); ``root`` is the Path
        self._root = _absolute(os.fspath(root))
        self._meta = os.path.join(self._root, META_DIR)
        self._tmp = os.path.join(self._meta, "tmp")
        self._root_path: Path | None = None
        self._case_insensitive: bool | None = None
        self._trust_mode: bool | None = None
        self._made_dirs: set[str] = set()

    # -------------------------------------------------------------- identity
    @property
    def root(self) -> Path:
        """The folder, absolute (as ``pathlib.Path(root).absolute()``)."""
        if self._root_path is None:
            from pathlib import Path

            self._root_path = Path(self._root)
        return self._root_path

    def describe(self) -> str:
        return self._root

    @property
    def local_root(self) -> Path:
        """The folder itself: the sync may keep a git index of it (``adapters.git_index``)."""
        return self.root

    @property
    def local_path(self) -> str | None:
        """``local_root`` as a string (None where it is None), without loading pathlib."""
        if type(self).local_root is not DirectoryStore.local_root:  # a subclass decides
            root = self.local_root
            return None if root is None else os.fspath(root)
        return self._root

    @property
    def trust_mode(self) -> bool:
        """False where chmod does not stick (an SMB mount: the mode comes from the mount
        options); the executable bit read back then says nothing, and is not compared."""
        if self._trust_mode is None:
            if not os.path.isdir(self._tmp):
                return True  # nothing written yet (a dry run): probe on the first real sync
            self._trust_mode = self._probe_chmod()
        return self._trust_mode

    def _probe_chmod(self) -> bool:
        from .git_early import probe_chmod

        return probe_chmod(self._tmp, self._fchmod)

    def _fchmod(self, fd: int, perm: int) -> None:
        """The one place modes are set (a test layer overrides it to act as an SMB mount)."""
        os.fchmod(fd, perm)

    @property
    def case_insensitive(self) -> bool:
        if self._case_insensitive is None:
            self._case_insensitive = self._probe_case()
        return self._case_insensitive

    def _probe_case(self) -> bool:
        # Probe in the nearest existing directory without creating any (dry runs
        # change nothing): a short-lived temporary file, then look it up upper-cased.
        # The sync's own temporary folder first: a probe in the workspace's top folder
        # would move its stamp (``adapters.dir_stamps``) on every sync.
        where = self._tmp if os.path.isdir(self._tmp) else self._root
        while not os.path.isdir(where) and where != os.path.dirname(where):
            where = os.path.dirname(where)
        probe = os.path.join(where, f".gitops-sync-probe-{os.urandom(8).hex()}")
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            try:
                return os.path.exists(os.path.join(where, os.path.basename(probe).upper()))
            finally:
                os.unlink(probe)
        except OSError:
            return False

    def name_problem(self, path: str) -> str | None:
        # A case-insensitive directory here is the SMB mount of an Azure Files share.
        if not self.case_insensitive:
            return None
        from ..core.paths import azure_files_name_problem  # loads urllib.parse

        return azure_files_name_problem(path)

    def check_writable(self) -> None:
        if os.path.exists(self._root) and not os.path.isdir(self._root):
            raise WorkspaceNotWritable(f"workspace {self._root} is not a directory")
        try:
            os.makedirs(self._tmp, exist_ok=True)
            probe = os.path.join(self._tmp, f"probe-{os.urandom(16).hex()}")
            with open(probe, "wb"):
                pass
            os.unlink(probe)
        except OSError as exc:
            raise WorkspaceNotWritable(
                f"workspace {self._root} is not writable ({exc.strerror or exc})"
            ) from exc

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the workspace for one sync at a time on this machine (flock)."""
        from .flock import hold_flock

        os.makedirs(self._meta, exist_ok=True)
        lock = os.path.join(self._meta, "lock")
        with hold_flock(lock, f"another sync is running on {self._root}"):
            yield

    # ---------------------------------------------------------------- listing
    def list(self) -> Listing:
        from ..core.model import Listing

        listing = Listing()
        if os.path.isdir(self._root):
            self._walk(self._root, "", listing)
        return listing

    def is_empty(self) -> bool:
        """True when the folder holds nothing but ``.gitops-sync/`` (or does not exist)."""
        try:
            with os.scandir(self._root) as it:
                return all(e.name == META_DIR for e in it)
        except FileNotFoundError:
            return True

    def observe(self, paths: Iterable[str]) -> Listing:
        """``list()`` for these paths only (a directory brings all beneath it), never
        through a link: a path under a linked or missing parent is absent."""
        from ..core.model import Listing, ObservedFile

        listing = Listing()
        root = self._root
        real_dir: dict[str, bool] = {"": True}

        def under_real_dirs(path: str) -> bool:
            parent = path.rpartition("/")[0]
            chain = []
            while parent not in real_dir:
                chain.append(parent)
                parent = parent.rpartition("/")[0]
            ok = real_dir[parent]
            for d in reversed(chain):
                if ok:
                    try:
                        ok = stat.S_ISDIR(os.lstat(os.path.join(root, d)).st_mode)
                    except OSError:
                        ok = False
                real_dir[d] = ok
            return ok

        for raw in paths:
            path = raw.rstrip("/")
            if not path or path in listing.files or path in listing.dirs:
                continue
            if not under_real_dirs(path):
                continue
            try:
                st = os.lstat(os.path.join(root, path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISDIR(st.st_mode):
                listing.dirs.add(path)
                self._walk(os.path.join(root, path), path + "/", listing)
            elif stat.S_ISREG(st.st_mode):
                listing.files[path] = ObservedFile(path, st.st_size, _stamp(st))
            else:
                listing.files[path] = ObservedFile(path, 0, "", "link")
        return listing

    def _walk(self, top: str, prefix: str, listing: Listing) -> None:
        from ..core.model import ObservedFile

        stack: list[tuple[str, str]] = [(top, prefix)]
        while stack:
            abspath, rel = stack.pop()
            with os.scandir(abspath) as it:
                for entry in it:
                    path = f"{rel}{entry.name}"
                    if not rel and entry.name == META_DIR:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        listing.dirs.add(path)
                        stack.append((entry.path, path + "/"))
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        listing.files[path] = ObservedFile(path, st.st_size, _stamp(st))
                    else:  # symlink, fifo, socket: never followed, never kept
                        listing.files[path] = ObservedFile(path, 0, "", "link")

    def hash_file(self, path: str) -> Content:
        from ..core.blobid import BlobHasher  # deferred: hashlib loads OpenSSL; a no-op needs none
        from ..core.model import MODE_EXEC, MODE_FILE, Content

        full = os.path.join(self._root, path)

        with open(full, "rb", buffering=0) as f:
            st = os.fstat(f.fileno())
            h = BlobHasher(st.st_size)
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return Content(h.hexdigest(), MODE_EXEC if st.st_mode & stat.S_IXUSR else MODE_FILE)

    # ----------------------------------------------------------------- writes
    def _ensure_parent(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        if parent and parent not in self._made_dirs:
            os.makedirs(os.path.join(self._root, parent), exist_ok=True)
            self._made_dirs.add(parent)

    def write_file(self, path: str, mode: int, chunks: Iterable[bytes]) -> str:
        tmp = os.path.join(self._tmp, os.urandom(16).hex())
        perm = 0o755 if mode == _EXEC else 0o644
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perm)
        except FileNotFoundError:
            os.makedirs(self._tmp, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perm)
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                self._fchmod(f.fileno(), perm)  # the umask must not change the mode
                for chunk in chunks:
                    f.write(chunk)
            self._ensure_parent(path)
            final = os.path.join(self._root, path)
            try:
                os.replace(tmp, final)
            except FileNotFoundError:  # a parent vanished since it was made: make it again
                self._made_dirs.clear()
                self._ensure_parent(path)
                os.replace(tmp, final)
            return _stamp(os.stat(final, follow_symlinks=False))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def set_mode(self, path: str, mode: int) -> str:
        fd = open_regular(self._root, path)
        try:
            self._fchmod(fd, 0o755 if mode == _EXEC else 0o644)
            return _stamp(os.fstat(fd))
        finally:
            os.close(fd)

    def rename(self, old: str, new: str) -> None:
        os.rename(os.path.join(self._root, old), os.path.join(self._root, new))

    def delete_file(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._root, path))

    def delete_dir(self, path: str) -> None:
        try:
            os.rmdir(os.path.join(self._root, path))
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:  # something appeared since listing: next sync
                raise
        self._made_dirs.discard(path)

    def clean_temporaries(self) -> None:
        self._made_dirs.clear()  # a long-lived worker must not trust an old sync's view
        if os.path.isdir(self._tmp):
            for entry in os.scandir(self._tmp):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

    # ------------------------------------------------------------- bookkeeping
    def read_meta(self, name: str) -> bytes | None:
        try:
            with open(os.path.join(self._meta, name), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write_meta(self, name: str, data: bytes) -> None:
        os.makedirs(self._tmp, exist_ok=True)
        tmp = os.path.join(self._tmp, f"meta-{os.urandom(16).hex()}")
        # Not fsynced: on ext4 that would flush every file the sync just wrote. After a
        # power loss a torn manifest reads as absent, and the next sync hashes instead.
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(self._meta, name))

    def read_meta_range(self, name: str, offset: int, length: int) -> tuple[bytes, int] | None:
        """Up to LENGTH bytes of NAME from OFFSET (negative: from the end), and NAME's size;
        None when absent."""
        try:
            fd = os.open(os.path.join(self._meta, name), os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            size = os.fstat(fd).st_size
            start = max(0, size + offset) if offset < 0 else offset
            return os.pread(fd, max(0, min(length, size - start)), start), size
        finally:
            os.close(fd)

    def append_meta(self, name: str, data: bytes, at: int) -> None:
        """Write DATA at the end of NAME, which must be AT bytes long (else OSError, and
        nothing is written). In place: a reader may see part of DATA, so DATA must be
        something a reader can tell apart when partial (``core.manifest``'s records)."""
        if not append_at(os.path.join(self._meta, name), data, at):
            raise OSError(errno.ESTALE, f"{name} is not {at} bytes long")

    # ------------------------------------------------------------------ reads
    def file_size(self, path: str) -> int:
        fd = open_regular(self._root, path)
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def read_chunks(self, path: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        fd = open_regular(self._root, path)
        with os.fdopen(fd, "rb", buffering=0) as f:
            if start:
                f.seek(start)
            # Reads sized to what is left: a 1 MiB read of a 5 KiB file would allocate
            # 1 MiB and shrink it, which fragments the heap over thousands of files.
            left = max(0, os.fstat(fd).st_size - start) if length is None else length
            while left > 0:
                data = f.read(min(CHUNK, left))
                if not data:
                    return
                left -= len(data)
                yield data
