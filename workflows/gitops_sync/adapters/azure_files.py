"""Workspace store over the Azure Files REST API (``WORKSPACE_SHARE``), no mount needed.

Writes upload to ``.gitops-sync/tmp/`` and are renamed into place; a file's stamp is its
ETag (it changes on every write and metadata change), so drift is seen without downloads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.fileshare import ShareClient, ShareDirectoryClient, ShareFileClient

from ..core.blobid import BlobHasher
from ..core.errors import StorageError, UsageError, WorkspaceNotWritable
from ..core.model import MODE_EXEC, MODE_FILE, Content, Listing, ObservedFile, parent_dirs
from ..core.paths import azure_files_name_problem
from ..core.redact import redact_url
from ..ports import META_DIR

log = logging.getLogger("gitops_sync")

TMP_DIR = META_DIR + "/" + "tmp"  # a path inside the share, not the local /tmp
RANGE = 4 << 20  # Put Range takes at most 4 MiB
# Read in 4 MiB requests so a streamed download holds one range in memory, not 32 MiB.
_CLIENT_OPTIONS: dict[str, Any] = {"max_single_get_size": RANGE, "max_chunk_get_size": RANGE}
_NOT_FOUND = {"ResourceNotFound", "ParentNotFound", "ResourceTypeMismatch", "ShareNotFound"}


def _mode_meta(mode: int) -> dict[str, str]:
    # The REST API has no POSIX mode: the executable bit travels as file metadata.
    return {"mode": f"{MODE_EXEC if mode == MODE_EXEC else MODE_FILE:o}"}


def _mode_of(metadata: dict[str, str] | None) -> int:
    return MODE_EXEC if (metadata or {}).get("mode") == f"{MODE_EXEC:o}" else MODE_FILE


def _stamp(item: Any) -> str:
    # No ETag must never look like "unchanged": such a file is hashed instead.
    return str(item.etag) if item.etag else f"no-etag-{uuid.uuid4().hex}"


def _code(exc: AzureError) -> str:
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)  # the SDK gives a StorageErrorCode enum or a str
    status = getattr(exc, "status_code", None)
    return str(code or status or type(exc).__name__)


class AzureFilesStore:
    """A share (or its root) as the workspace, through ``azure-storage-file-share``."""

    max_concurrency = 8
    case_insensitive = True  # Azure Files is case-insensitive and case-preserving

    def __init__(self, account_url: str, share: str, credential: Any = None, **options: Any):
        if credential is not None and hasattr(credential, "get_token"):
            # Azure Files accepts OAuth tokens only with the "backup" request intent.
            options.setdefault("token_intent", "backup")
        options = {**_CLIENT_OPTIONS, **options}
        self._setup(ShareClient(account_url, share, credential=credential, **options))

    @classmethod
    def from_connection_string(cls, conn: str, share: str, **options: Any) -> AzureFilesStore:
        """From a storage connection string (not Azurite's: it has no File service)."""
        fields = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
        if "UseDevelopmentStorage" in fields or (
            fields.get("AccountName") == "devstoreaccount1" and "FileEndpoint" not in fields
        ):
            # Azurite does not emulate Azure Files (Azure/Azurite#113); without this
            # check the SDK would quietly aim at devstoreaccount1.file.core.windows.net.
            raise UsageError(
                "WORKSPACE_SHARE needs a real storage account: Azurite does not emulate "
                "Azure Files (use WORKSPACE_ROOT for a local workspace)"
            )
        try:
            client = ShareClient.from_connection_string(conn, share, **_CLIENT_OPTIONS, **options)
        except ValueError as exc:
            raise UsageError(f"invalid storage connection string for Azure Files ({exc})") from exc
        store = cls.__new__(cls)
        store._setup(client)
        return store

    @classmethod
    def from_account_name(
        cls, account: str, share: str, credential: Any, **options: Any
    ) -> AzureFilesStore:
        """For identity-based settings (``AzureWebJobsStorage__accountName``)."""
        return cls(f"https://{account}.file.core.windows.net", share, credential, **options)

    def _setup(self, client: ShareClient) -> None:
        self._share = client
        self._dirs: set[str] = set()  # casefolded directories known to exist
        self._dirs_lock = threading.Lock()
        self._dir_locks: dict[str, threading.Lock] = {}

    # -------------------------------------------------------------- identity
    def describe(self) -> str:
        return redact_url(self._share.url)

    def name_problem(self, path: str) -> str | None:
        return azure_files_name_problem(path)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        # A share has no lock of this machine's: the workspace's lease is the only one.
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _errors(self, action: str, path: str = "", *, reading: bool = False) -> Iterator[None]:
        """Translate SDK errors at this boundary; messages carry no URL query or key."""
        try:
            yield
        except AzureError as exc:
            # A read of a missing file, or of a directory (ResourceTypeMismatch), is "no file".
            if reading and _code(exc) in _NOT_FOUND:
                raise FileNotFoundError(path) from exc
            raise self._error(action, path, exc) from exc

    def _error(self, action: str, path: str, exc: AzureError) -> Exception:
        where = f"{self.describe()}/{path}" if path else self.describe()
        status = getattr(exc, "status_code", None)
        log.debug("Azure Files: %s %s failed: %s", action, where, _code(exc))
        if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            return WorkspaceNotWritable(f"cannot {action} {where}: access denied ({_code(exc)})")
        if _code(exc) == "ShareNotFound":
            return WorkspaceNotWritable(f"cannot {action} {where}: the share does not exist")
        if status is None:  # no answer at all: DNS, connection, timeout
            return StorageError(f"cannot {action} {where}: Azure Files unreachable ({_code(exc)})")
        # Throttling, 5xx and network failures are transient; anything else the SDK
        # did not already retry is reported the same way, with the service's code.
        return StorageError(f"cannot {action} {where}: Azure Files answered {_code(exc)}")

    def _file(self, path: str) -> ShareFileClient:
        return self._share.get_file_client(path)

    def _dir(self, path: str) -> ShareDirectoryClient:
        return self._share.get_directory_client(path)

    # ------------------------------------------------------------- writable
    def check_writable(self) -> None:
        with self._errors("create the share"), contextlib.suppress(ResourceExistsError):
            try:
                self._share.create_share()
            except HttpResponseError as exc:
                # A SAS scoped to the share may not create shares; the directories
                # below are the real test of writing.
                if exc.status_code != 403:
                    raise
        with self._errors("write to"):
            self._ensure_dirs(TMP_DIR)

    def _ensure_dirs(self, directory: str) -> None:
        for d in parent_dirs(directory + "/x"):  # the directory and every parent
            key = d.casefold()
            if key in self._dirs:
                continue
            # One creator per directory: parallel writes into a new directory would
            # otherwise each send the same Create Directory.
            with self._dirs_lock:
                lock = self._dir_locks.setdefault(key, threading.Lock())
            with lock:
                if key in self._dirs:
                    continue
                with contextlib.suppress(ResourceExistsError):
                    self._dir(d).create_directory()
                with self._dirs_lock:
                    self._dirs.add(key)

    def _forget_dirs(self, prefix: str = "") -> None:
        with self._dirs_lock:
            if not prefix:
                self._dirs.clear()
                self._dir_locks.clear()
                return
            key = prefix.casefold()
            self._dirs = {d for d in self._dirs if d != key and not d.startswith(key + "/")}

    # -------------------------------------------------------------- listing
    def _list_dir(self, path: str) -> list[tuple[str, bool, int, str]]:
        # The service's spelling of the include values (ListFilesIncludeType).
        items = self._dir(path).list_directories_and_files(include=["Timestamps", "Etag"])
        prefix = f"{path}/" if path else ""
        try:
            return [
                (prefix + i.name, bool(i.is_directory), getattr(i, "size", 0) or 0, _stamp(i))
                for i in items
            ]
        except ResourceNotFoundError:
            if not path:
                raise
            return []  # removed since its parent was listed

    def list(self) -> Listing:
        """Every file and directory, one listing call per directory (run in parallel)."""
        listing = Listing()
        with self._errors("list"), ThreadPoolExecutor(self.max_concurrency) as pool:
            try:
                root = self._list_dir("")
            except ResourceNotFoundError:  # no share yet: an empty workspace
                return listing
            pending: set[Future[list[tuple[str, bool, int, str]]]] = set()

            def take(entries: list[tuple[str, bool, int, str]]) -> None:
                for path, is_dir, size, etag in entries:
                    if path == META_DIR:
                        continue
                    if is_dir:
                        listing.dirs.add(path)
                        pending.add(pool.submit(self._list_dir, path))
                    else:
                        listing.files[path] = ObservedFile(path, size, etag)

            take(root)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    pending.discard(fut)
                    take(fut.result())
        return listing

    def hash_file(self, path: str) -> Content:
        with self._errors("read", path, reading=True):
            download = self._file(path).download_file(max_concurrency=1)
            h = BlobHasher(download.size)
            for chunk in download.chunks():
                h.update(chunk)
            return Content(h.hexdigest(), _mode_of(download.properties.metadata))

    # --------------------------------------------------------------- writes
    def _upload(self, client: ShareFileClient, mode: int, chunks: Iterable[bytes]) -> None:
        """Upload CHUNKS (of unknown total size) in ranges of at most 4 MiB."""
        meta = _mode_meta(mode)
        buf = bytearray()
        it = iter(chunks)
        for chunk in it:
            buf += chunk
            if len(buf) > RANGE:
                break
        else:  # the common case: the whole file fits one range, two requests
            client.create_file(len(buf), metadata=meta)
            if buf:
                client.upload_range(bytes(buf), 0, len(buf))
            return
        client.create_file(0, metadata=meta)
        offset, allocated = 0, 0

        def put(piece: bytes) -> None:
            nonlocal offset, allocated
            if offset + len(piece) > allocated:  # grow by doubling: few resize calls
                allocated = max(offset + len(piece), 2 * allocated)
                client.resize_file(allocated)
            client.upload_range(piece, offset, len(piece))
            offset += len(piece)

        for chunk in it:
            buf += chunk
            while len(buf) >= RANGE:
                put(bytes(buf[:RANGE]))
                del buf[:RANGE]
        while buf:
            put(bytes(buf[:RANGE]))
            del buf[:RANGE]
        if allocated != offset:
            client.resize_file(offset)

    def _rename_into_place(self, tmp: ShareFileClient, path: str) -> str:
        """Rename TMP over PATH (replacing it) and return the final ETag."""
        seen: dict[str, Any] = {}

        def keep_headers(_response: Any, _body: Any, headers: dict[str, Any]) -> None:
            seen.update(headers)

        try:
            tmp.rename_file(path, overwrite=True, cls=keep_headers)
        except ResourceNotFoundError as exc:
            if _code(exc) != "ParentNotFound":
                raise
            # A parent vanished since it was made (or cached): make it again, once.
            self._forget_dirs()
            self._ensure_dirs(path.rpartition("/")[0])
            tmp.rename_file(path, overwrite=True, cls=keep_headers)
        etag = seen.get("ETag") or seen.get("etag")
        return str(etag) if etag else str(self._file(path).get_file_properties().etag)

    def write_file(self, path: str, mode: int, chunks: Iterable[bytes]) -> str:
        tmp = self._file(f"{TMP_DIR}/{uuid.uuid4().hex}")
        with self._errors("write", path):
            self._ensure_dirs(TMP_DIR)
            parent = path.rpartition("/")[0]
            if parent:
                self._ensure_dirs(parent)
            try:
                self._upload(tmp, mode, chunks)
                return self._rename_into_place(tmp, path)
            except BaseException:
                with contextlib.suppress(AzureError):
                    tmp.delete_file()
                raise

    def set_mode(self, path: str, mode: int) -> str:
        with self._errors("set the mode of", path):
            return str(self._file(path).set_file_metadata(_mode_meta(mode))["etag"])

    def rename(self, old: str, new: str) -> None:
        with self._errors("rename", old):
            is_dir = self._is_dir(old)
            if old.casefold() == new.casefold():
                # A case-only rename through a temporary name: Azure does not document
                # renaming a name onto itself, and two renames are always well defined.
                via = f"{TMP_DIR}/rename-{uuid.uuid4().hex}"
                self._ensure_dirs(TMP_DIR)
                self._rename_one(old, via, is_dir)
                self._rename_one(via, new, is_dir)
            else:
                self._rename_one(old, new, is_dir)
            if is_dir:
                self._forget_dirs(old)

    def _is_dir(self, path: str) -> bool:
        try:
            self._dir(path).get_directory_properties()
        except (ResourceNotFoundError, ResourceExistsError):
            return False
        except HttpResponseError as exc:
            if exc.status_code == 409:  # ResourceTypeMismatch: a file
                return False
            raise
        return True

    def _rename_one(self, old: str, new: str, is_dir: bool) -> None:
        if is_dir:
            self._dir(old).rename_directory(new)
        else:
            self._file(old).rename_file(new, overwrite=True)

    def delete_file(self, path: str) -> None:
        with self._errors("delete", path), contextlib.suppress(ResourceNotFoundError):
            self._file(path).delete_file()

    def delete_dir(self, path: str) -> None:
        with self._errors("delete", path):
            try:
                self._dir(path).delete_directory()
            except ResourceNotFoundError:
                pass
            except ResourceExistsError as exc:
                # DirectoryNotEmpty: something appeared since listing; the next sync sees it.
                if _code(exc) != "DirectoryNotEmpty":
                    raise
        self._forget_dirs(path)

    def clean_temporaries(self) -> None:
        self._forget_dirs()  # a long-lived worker must not trust an old sync's view
        with self._errors("clean", TMP_DIR), contextlib.suppress(ResourceNotFoundError):
            self._remove_tree(TMP_DIR, keep_root=True)
            with self._dirs_lock:  # just listed, so it exists: no Create Directory for it
                self._dirs.update(d.casefold() for d in parent_dirs(TMP_DIR + "/x"))

    def _remove_tree(self, path: str, *, keep_root: bool = False) -> None:
        for item in self._dir(path).list_directories_and_files():
            child = f"{path}/{item.name}"
            with contextlib.suppress(ResourceNotFoundError):
                if item.is_directory:
                    self._remove_tree(child)
                else:
                    self._file(child).delete_file()
        if not keep_root:
            with contextlib.suppress(ResourceNotFoundError):
                self._dir(path).delete_directory()

    # ---------------------------------------------------------- bookkeeping
    def read_meta(self, name: str) -> bytes | None:
        try:
            with self._errors("read", f"{META_DIR}/{name}", reading=True):
                return bytes(self._file(f"{META_DIR}/{name}").download_file().readall())
        except FileNotFoundError:
            return None

    def write_meta(self, name: str, data: bytes) -> None:
        self.write_file(f"{META_DIR}/{name}", MODE_FILE, (data,))

    # ---------------------------------------------------------------- reads
    def file_size(self, path: str) -> int:
        with self._errors("read", path, reading=True):
            return int(self._file(path).get_file_properties().size)

    def read_chunks(self, path: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream a range of PATH; the first request is made before this returns."""
        if length == 0:
            return iter(())
        with self._errors("read", path, reading=True):
            try:
                # Without a range the SDK handles an empty file (Azure answers 416).
                ranged = bool(start) or length is not None
                download = self._file(path).download_file(
                    offset=start if ranged else None, length=length, max_concurrency=1
                )
            except HttpResponseError as exc:
                if exc.status_code == 416:  # a range starting at or past the end
                    return iter(())
                raise
        return self._guarded(download.chunks, path)

    def _guarded(self, chunks: Callable[[], Iterator[bytes]], path: str) -> Iterator[bytes]:
        with self._errors("read", path, reading=True):
            yield from chunks()
