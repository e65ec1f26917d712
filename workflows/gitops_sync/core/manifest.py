"""The manifest the last sync left in ``.gitops-sync/``: what it wrote, and how it looked.

Read and written on every sync of trees with tens of thousands of files, so the
file list is not JSON: one JSON header line (commit, ref, time, functions), then
NUL-separated fields, five per file (path, blob id, size, mode in octal, stamp);
git paths cannot contain NUL. A later row for a path replaces an earlier one,
and a row with an empty blob id removes the path: a sync that changed a few
files appends their rows to the previous body (``append_rows``) instead of
rewriting every row (on a local folder the kept body is copied by the kernel,
never read: ``appended_pieces``). An unreadable manifest is treated as absent: every file is
then verified by hash, which is slower but never wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .function_report import RecordedFunction
from .model import RecordedFile
from .value import Value

MANIFEST_PATH = ".gitops-sync/manifest.json"
FORMAT = 3
_READABLE = (2, 3)  # format 2 is format 3 without appended rows


class Manifest(Value):
    __slots__ = ("appended", "commit", "files", "functions", "index", "ref", "synced_at")

    def __init__(
        self,
        commit: str | None = None,
        ref: str | None = None,
        synced_at: str | None = None,
        files: dict[str, RecordedFile] | None = None,
        functions: dict[str, RecordedFunction] | None = None,
        index: str | None = None,
        appended: int = 0,
    ) -> None:
        self.commit = commit
        self.ref = ref
        self.synced_at = synced_at
        self.files: dict[str, RecordedFile] = {} if files is None else files
        self.functions: dict[str, RecordedFunction] = {} if functions is None else functions
        #: the git index (its checksum) these rows describe, on a local folder
        self.index = index
        #: rows appended since the body was last written whole
        self.appended = appended


def dumps_rows(header: Manifest, rows: Iterable[tuple[str, str, int, int, str]]) -> bytes:
    """Serialise ``header`` (its ``files`` ignored) and rows (path, blob, size, mode, stamp)."""
    head = {
        "format": FORMAT,
        "commit": header.commit,
        "ref": header.ref,
        "synced_at": header.synced_at,
        "functions": {n: [f.hash, f.directory] for n, f in sorted(header.functions.items())},
    }
    if header.index:
        head.update(index=header.index, appended=header.appended)
    body = "\0".join(f"{p}\0{b}\0{s}\0{m:o}\0{st}" for p, b, s, m, st in rows)
    return (json.dumps(head, separators=(",", ":")) + "\n" + body).encode()


def append_rows(
    previous: bytes, header: Manifest, rows: list[tuple[str, str, int, int, str]]
) -> bytes:
    """``previous``'s rows, then ROWS (each replacing, or with an empty blob id
    removing, its path), under ``header``: no row of the previous body is parsed."""
    _, _, body = previous.partition(b"\n")
    head, tail = appended_pieces(header, rows, len(body))
    return head + body + tail


def appended_pieces(
    header: Manifest, rows: list[tuple[str, str, int, int, str]], body_size: int
) -> tuple[bytes, bytes]:
    """``append_rows`` in two pieces, for a previous body of BODY_SIZE bytes that the
    caller keeps where it is: the new first line (with its newline), and what follows
    the previous body."""
    head, _, new = dumps_rows(header, rows).partition(b"\n")
    return head + b"\n", (b"\0" + new if body_size and new else new)


def loads_header(data: bytes | None) -> Manifest:
    """The header alone (commit, ref, functions, index): the rows are not parsed."""
    if not data:
        return Manifest()
    return _header(data.partition(b"\n")[0]) or Manifest()


def _header(raw: bytes) -> Manifest | None:
    try:
        head = json.loads(raw)
        if not isinstance(head, dict) or head.get("format") not in _READABLE:
            return None
        functions = {
            str(k): RecordedFunction(str(v[0]), str(v[1]))
            for k, v in head.get("functions", {}).items()
        }
        return Manifest(
            head.get("commit"),
            head.get("ref"),
            head.get("synced_at"),
            {},
            functions,
            head.get("index"),
            int(head.get("appended", 0)),
        )
    except (ValueError, TypeError, IndexError, AttributeError):
        return None


def dumps(manifest: Manifest) -> bytes:
    rows = ((p, r.blob_id, r.size, r.mode, r.stamp) for p, r in sorted(manifest.files.items()))
    return dumps_rows(manifest, rows)


def loads(data: bytes | None) -> Manifest:
    """Parse a manifest; anything unreadable gives an empty one (see module doc)."""
    if not data:
        return Manifest()
    head_raw, _, body = data.partition(b"\n")
    manifest = _header(head_raw)
    if manifest is None:
        return Manifest()
    try:
        files = manifest.files
        if body:
            f = body.decode("utf-8").split("\0")
            if len(f) % 5:
                return Manifest()
            it = iter(f)
            for path, blob, size, mode, stamp in zip(it, it, it, it, it, strict=True):
                if blob:
                    files[path] = RecordedFile(blob, int(size), int(mode, 8), stamp)
                else:
                    files.pop(path, None)
    except (ValueError, TypeError):
        return Manifest()
    return manifest
