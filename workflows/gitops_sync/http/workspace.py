"""Workspace routes: the streamed ZIP download, the file listing, and one file's bytes.

Everything served is what the last sync's manifest lists, read through
``gitops_sync.archive`` (links never followed, bytes checked against blob ids).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import mimetypes
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..archive import (
    WorkspaceChanged,
    WorkspaceNotSynced,
    check_blob,
    load_manifest,
    open_file,
    stream_archive,
)
from ..connections import DEFAULT_ID
from ..core.archive import (
    ArchiveEntry,
    archive_entries,
    archive_filename,
    content_disposition,
    etag_for,
    etag_matches,
    parse_range,
)
from ..core.errors import GitopsSyncError
from ..core.manifest import Manifest
from ..core.model import MODE_EXEC
from ..core.paths import safe_client_path
from .errors import error_response
from .routing import ApiRoute

if TYPE_CHECKING:
    from ..context import AppContext
    from ..ports import WorkspaceStore

log = logging.getLogger("gitops_sync")
_SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


#: pieces a producer thread may run ahead of the network (x ~256 KiB: bounded memory)
AHEAD = 16
_END = object()


async def produce_ahead(pieces: Iterator[bytes], depth: int = AHEAD) -> AsyncIterator[bytes]:
    """Run a blocking iterator in its own thread, at most ``depth`` pieces ahead of the reader.

    Starlette would pull a sync iterator one piece at a time in its thread pool,
    so reading/compressing and sending would take turns. Here they overlap (two
    cores), and the bounded queue keeps memory flat. An exception of the iterator
    is raised here; when the reader stops early the producer stops too.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=depth)
    stopped = threading.Event()

    def put(item: object) -> bool:
        fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stopped.is_set():
            try:
                fut.result(timeout=0.5)
                return True
            except concurrent.futures.TimeoutError:
                continue
            except (concurrent.futures.CancelledError, RuntimeError):
                return False  # the loop is gone
        fut.cancel()
        return False

    def produce() -> None:
        try:
            for piece in pieces:
                if not put(piece):
                    return
            put(_END)
        except BaseException as exc:  # handed to the reader, which raises it
            put(exc)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()  # releases open files when the reader left early

    thread = threading.Thread(target=produce, name="gitops-sync-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stopped.set()


class AbortableStreamingResponse(StreamingResponse):
    """A ``StreamingResponse`` that ends a stream broken by one of our errors unfinished.

    Without the final chunk (or short of Content-Length) the client sees a failed
    transfer, never a complete body; the server logs one line, no traceback.
    (``WorkspaceChanged`` is logged where it is raised.)
    """

    async def stream_response(self, send: Any) -> None:
        try:
            await super().stream_response(send)
        except WorkspaceChanged:
            return
        except GitopsSyncError as exc:  # e.g. Azure Files unreachable midway
            log.warning("workspace download aborted: %s", exc)
            return
        finally:
            # A client that hangs up cancels this task while it may be in ``send``,
            # with the body iterator suspended at a ``yield``: close it now (its
            # producer thread stops and closes its files) rather than whenever the
            # garbage collector gets to it. Shielded: the scope is being cancelled.
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await aclose()


#: types Python's table lacks before 3.13 (or a machine's mime.types gets wrong)
_TYPES = {".yaml": "application/yaml", ".yml": "application/yaml", ".toml": "application/toml"}


def content_type(path: str) -> str:
    """The MIME type a file is served with (``application/octet-stream`` when unknown)."""
    suffix = path[path.rfind(".") :].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def _not_found() -> JSONResponse:
    # The same answer for "no such file", "outside the workspace" and "reserved".
    return error_response(404, "no such file in the workspace")


def _open_workspace(connection: str | None, ctx: AppContext) -> tuple[WorkspaceStore, str | None]:
    """The workspace of ``?connection=ID`` (default: the single-repository settings)."""
    if not connection or connection == DEFAULT_ID:
        return ctx.workspace_store(), getattr(ctx.settings, "repository", None)
    conn = ctx.connections.get(connection)
    if conn is None:
        raise _NoSuchConnection(connection)
    return ctx.workspace_store(connection), conn.repository


class _NoSuchConnection(LookupError):
    pass


Workspace = tuple["WorkspaceStore", Manifest, "str | None"]


async def _manifest(request: Request, ctx: AppContext) -> Workspace | JSONResponse:
    """The workspace's store, its manifest and repository name, or the error answer."""
    connection = request.query_params.get("connection")
    try:
        store, repository = await run_in_threadpool(_open_workspace, connection, ctx)
        manifest = await run_in_threadpool(load_manifest, store)
    except _NoSuchConnection:
        return error_response(404, "no such connection")
    except WorkspaceNotSynced as exc:
        return error_response(404, str(exc))
    except GitopsSyncError as exc:
        log.warning("workspace unavailable: %s", exc)
        return error_response(503, "the workspace cannot be read right now")
    return store, manifest, repository


# ------------------------------------------------------------------------ archive
async def get_archive(request: Request, ctx: AppContext) -> Response:
    """The whole workspace as a ZIP, streamed as it is produced; ETag = the synced commit."""
    got = await _manifest(request, ctx)
    if isinstance(got, Response):
        return got
    store, manifest, repository = got
    commit = manifest.commit or ""
    etag = etag_for(commit)
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag, **_SAFE_HEADERS})
    name = archive_filename(repository, commit)
    headers = {
        "ETag": etag,
        "Content-Disposition": content_disposition(name),
        "X-Gitops-Sync-Commit": commit,
        **_SAFE_HEADERS,
    }
    # Produced in a thread (never blocking the event loop), a bounded few pieces
    # ahead. A WorkspaceChanged raised midway breaks the connection (no final
    # chunk): the client sees a failed transfer.
    return AbortableStreamingResponse(
        produce_ahead(stream_archive(store, manifest)),
        media_type="application/zip",
        headers=headers,
    )


# -------------------------------------------------------------------------- files
async def list_files(request: Request, ctx: AppContext) -> Response:
    """The synced files under ``prefix`` (a plain string prefix), with sizes and blob ids."""
    raw = request.query_params.get("prefix", "")
    prefix = safe_client_path(raw)
    if prefix is None:
        return error_response(400, "prefix is not a workspace path")
    if prefix and raw.endswith("/"):
        prefix += "/"  # "src/" must not match "src2/"
    got = await _manifest(request, ctx)
    if isinstance(got, Response):
        return got
    _store, manifest, _repository = got
    files: list[dict[str, Any]] = [
        {"path": e.path, "size": e.size, "blob_id": e.blob_id, "executable": e.executable}
        for e in archive_entries(manifest.files)
        if e.path.startswith(prefix)
    ]
    return JSONResponse({"commit": manifest.commit, "prefix": prefix, "files": files})


async def get_file(request: Request, ctx: AppContext) -> Response:
    """One synced file's bytes, with ``Range`` (206/416) and ``ETag`` = its blob id."""
    path = safe_client_path(request.path_params.get("path", ""))
    if not path:
        return _not_found()
    got = await _manifest(request, ctx)
    if isinstance(got, Response):
        return got
    store, manifest, _repository = got
    rec = manifest.files.get(path)
    if rec is None:
        return _not_found()
    entry = ArchiveEntry(path, rec.size, rec.blob_id, rec.mode == MODE_EXEC)
    etag = etag_for(entry.blob_id)
    ctype = content_type(path)
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        # Served bytes are data, never a page of this origin's.
        "Content-Security-Policy": "sandbox",
        **_SAFE_HEADERS,
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)

    wanted = parse_range(request.headers.get("range"), entry.size)
    if wanted == "unsatisfiable":
        return Response(
            status_code=416, headers={**headers, "Content-Range": f"bytes */{entry.size}"}
        )
    try:
        if await run_in_threadpool(store.file_size, path) != entry.size:
            return error_response(409, "the workspace is being synced; retry")
        if wanted is None:
            chunks = await run_in_threadpool(open_file, store, path)
            body: Iterator[bytes] = check_blob(chunks, entry)
            status, length = 200, entry.size
        else:
            start, end = wanted
            length = end - start + 1
            body = await run_in_threadpool(open_file, store, path, start, length)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
    except FileNotFoundError:
        return _not_found()
    except (GitopsSyncError, OSError) as exc:
        log.warning("workspace file %s unreadable: %s", path, exc)
        return error_response(503, "the workspace cannot be read right now")
    headers["Content-Length"] = str(length)
    return AbortableStreamingResponse(
        produce_ahead(_logged(body, path)), status_code=status, media_type=ctype, headers=headers
    )


def _logged(body: Iterator[bytes], path: str) -> Iterator[bytes]:
    try:
        yield from body
    except WorkspaceChanged:
        log.warning("download of %s aborted: it changed while being read", path)
        raise


ROUTES = [
    ApiRoute("workspace_archive", "/api/workspace/archive", ("GET",), get_archive, "key"),
    ApiRoute("workspace_files", "/api/workspace/files", ("GET",), list_files, "key"),
    ApiRoute("workspace_file", "/api/workspace/files/{path:path}", ("GET",), get_file, "key"),
]
