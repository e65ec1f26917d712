"""The manifest the last sync left in ``.gitops-sync/``: what it wrote, and how it looked.

Read and written on every sync of trees with tens of thousands of files, so the
file list is not JSON. The file is a sequence of *records*, each one JSON header
line (commit, ref, time, functions, and ``rows``: the byte length of its rows),
then its rows, then a trailer ``\n`` + 16 hexadecimal digits (the record's own
offset in the file) + ``\n``. Rows are NUL-separated fields, five per file
(path, blob id, size, mode in octal, stamp); git paths cannot contain NUL.

A whole write is one record. A sync that changed a few files *appends* a record
(``append_record``): its rows replace earlier ones for their paths (a row with an
empty blob id removes its path) and its header becomes the manifest's. Appending
writes only the change, in place, under the workspace's lock; a reader without
the lock (the archive server) may see an append under way, but a record counts
only once its trailer (naming its own offset) is there, so a reader sees the
state after the last complete record: a state some sync left whole. A torn last
record (a crash mid-append) is ignored the same way, and the next sync rewrites
the file whole. Its last header is found from the end (``last_header``), without
reading the rows. Formats 2 and 3 (one header line, then rows; format 3 with
rows appended and the header line rewritten) are still read. An unreadable
manifest is treated as absent: every file is then verified by hash, which is
slower but never wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .function_report import RecordedFunction
from .model import RecordedFile
from .value import Value

MANIFEST_PATH = ".gitops-sync/manifest.json"
FORMAT = 4
#: format 2 is format 3 without appended rows; format 4 is records (module doc)
_READABLE = (2, 3, 4)
#: a record's trailer: ``\n`` + its offset in 16 hexadecimal digits + ``\n``
TRAILER = 18


class Manifest(Value):
    __slots__ = (
        "appended", "commit", "files", "functions", "index", "records", "ref", "synced_at",
    )  # fmt: skip

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
        #: records appended since then (format 4)
        self.records = 0


def _head(header: Manifest) -> dict[str, object]:
    head: dict[str, object] = {
        "format": FORMAT,
        "commit": header.commit,
        "ref": header.ref,
        "synced_at": header.synced_at,
        "functions": {n: [f.hash, f.directory] for n, f in sorted(header.functions.items())},
    }
    if header.index:
        head["index"] = header.index
        if header.appended:
            head.update(appended=header.appended, records=header.records)
    return head


def _framed(header: Manifest, rows: Iterable[tuple[str, str, int, int, str]], at: int) -> bytes:
    """One record (module doc) that starts at offset AT of the file."""
    body = "\0".join(f"{p}\0{b}\0{s}\0{m:o}\0{st}" for p, b, s, m, st in rows).encode()
    head = _head(header)
    head["rows"] = len(body)
    line = json.dumps(head, separators=(",", ":")).encode()
    return b"%s\n%s\n%016x\n" % (line, body, at)


def dumps_rows(header: Manifest, rows: Iterable[tuple[str, str, int, int, str]]) -> bytes:
    """Serialise ``header`` (its ``files`` ignored) and rows (path, blob, size, mode, stamp):
    a whole manifest, one record."""
    return _framed(header, rows, 0)


def append_record(
    header: Manifest, rows: Iterable[tuple[str, str, int, int, str]], size: int
) -> bytes:
    """The record to append to a format-4 manifest of SIZE bytes: ROWS (each replacing, or
    with an empty blob id removing, its path) under ``header``."""
    return _framed(header, rows, size)


def append_rows(
    previous: bytes, header: Manifest, rows: list[tuple[str, str, int, int, str]]
) -> bytes:
    """``previous`` with ROWS appended under ``header`` (``append_record``, in memory)."""
    return previous + append_record(header, rows, len(previous))


def _parse_head(raw: bytes) -> tuple[Manifest, int | None] | None:
    """A header line: the manifest it describes, and its rows' length (format 4; else None)."""
    try:
        head = json.loads(raw)
        if not isinstance(head, dict) or head.get("format") not in _READABLE:
            return None
        functions = {
            str(k): RecordedFunction(str(v[0]), str(v[1]))
            for k, v in head.get("functions", {}).items()
        }
        manifest = Manifest(
            head.get("commit"),
            head.get("ref"),
            head.get("synced_at"),
            {},
            functions,
            head.get("index"),
            int(head.get("appended", 0)),
        )
        manifest.records = int(head.get("records", 0))
        rows = head.get("rows") if head.get("format") == FORMAT else None
        if rows is not None and (not isinstance(rows, int) or rows < 0):
            return None
        return manifest, rows
    except (ValueError, TypeError, IndexError, AttributeError):
        return None


def _records(data: bytes) -> Iterable[tuple[Manifest, int, int]]:
    """Each complete format-4 record of DATA: (header, rows start, rows end); stops at the
    first record that is not whole (a torn append, or anything else)."""
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return
        parsed = _parse_head(data[pos:nl])
        if parsed is None:
            return
        header, length = parsed
        if length is None:
            return
        end = nl + 1 + length
        if data[end : end + TRAILER] != b"\n%016x\n" % pos:
            return
        yield header, nl + 1, end
        pos = end + TRAILER


def loads_header(data: bytes | None) -> Manifest:
    """The header alone (commit, ref, functions, index): the rows are not parsed."""
    if not data:
        return Manifest()
    first = _parse_head(data.partition(b"\n")[0])
    if first is None:
        return Manifest()
    if first[1] is None:  # formats 2 and 3: the first line is the header
        return first[0]
    last = Manifest()
    for header, _start, _end in _records(data):
        last = header
    return last


def trailer_offset(tail: bytes) -> int | None:
    """The offset the last record's trailer names, from the file's last bytes (None when
    they do not end with a trailer: a torn append, or formats 2 and 3)."""
    if len(tail) < TRAILER or tail[-TRAILER] != 0x0A or tail[-1] != 0x0A:
        return None
    digits = tail[-TRAILER + 1 : -1]
    if not digits.isalnum():
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


def record_header(buf: bytes, at: int, size: int) -> Manifest | None:
    """The header of the record at offset AT, from BUF (the file's bytes from AT on, at
    least its header line), when that record ends exactly at SIZE; else None."""
    nl = buf.find(b"\n")
    parsed = _parse_head(buf[:nl]) if nl >= 0 else None
    if parsed is None or parsed[1] is None or at + nl + 1 + parsed[1] + TRAILER != size:
        return None
    return parsed[0]


def _rows(body: bytes, files: dict[str, RecordedFile]) -> bool:
    """Apply BODY's rows to FILES (later rows win; an empty blob id removes); False when
    BODY is not rows (FILES is then unchanged)."""
    if not body:
        return True
    f = body.decode("utf-8").split("\0")
    if len(f) % 5:
        return False
    it = iter(f)
    parsed = [
        (path, RecordedFile(blob, int(size), int(mode, 8), stamp) if blob else None)
        for path, blob, size, mode, stamp in zip(it, it, it, it, it, strict=True)
    ]
    for path, rec in parsed:
        if rec is not None:
            files[path] = rec
        else:
            files.pop(path, None)
    return True


def dumps(manifest: Manifest) -> bytes:
    rows = ((p, r.blob_id, r.size, r.mode, r.stamp) for p, r in sorted(manifest.files.items()))
    return dumps_rows(manifest, rows)


def loads(data: bytes | None) -> Manifest:
    """Parse a manifest; anything unreadable gives an empty one (see module doc)."""
    if not data:
        return Manifest()
    head_raw, _, body = data.partition(b"\n")
    first = _parse_head(head_raw)
    if first is None:
        return Manifest()
    files: dict[str, RecordedFile] = {}
    try:
        if first[1] is None:  # formats 2 and 3
            manifest = first[0]
            if not _rows(body, files):
                return Manifest()
        else:
            manifest = Manifest()
            for header, start, end in _records(data):
                if not _rows(data[start:end], files):
                    break
                manifest = header
            if manifest.commit is None and not files:
                return manifest
    except (ValueError, TypeError, UnicodeDecodeError):
        return Manifest()
    manifest.files = files
    return manifest
