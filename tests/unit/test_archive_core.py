"""The pure rules of the workspace archive: order, compression choice, names, ETags, ranges."""

from __future__ import annotations

import gzip
import os
import random
import subprocess

import pytest

from gitops_sync.core.archive import (
    PROBE_MIN_SIZE,
    BlobHasher,
    archive_entries,
    archive_filename,
    compression_for,
    content_disposition,
    etag_matches,
    looks_compressed,
    parse_range,
)
from gitops_sync.core.model import MODE_EXEC, MODE_FILE, RecordedFile


def _rec(size: int = 1, mode: int = MODE_FILE) -> RecordedFile:
    return RecordedFile("0" * 40, size, mode, "")


def test_entries_are_sorted_by_utf8_bytes_and_keep_the_exec_bit() -> None:
    """Entries come in byte order of their UTF-8 names, whatever order the manifest had."""
    names = ["b/z.txt", "a.txt", "B.txt", "b/a.txt", "é.txt", "a/é.txt", "z.sh"]
    files = {n: _rec(mode=MODE_EXEC if n.endswith(".sh") else MODE_FILE) for n in names}
    entries = archive_entries(dict(reversed(list(files.items()))))
    assert [e.path for e in entries] == sorted(names, key=lambda n: n.encode())
    assert [e.path for e in entries if e.executable] == ["z.sh"]


@pytest.mark.parametrize(
    "bad",
    [".gitops-sync/manifest.json", ".gitops-sync", "../escape", "/etc/passwd", "a/../../b",
     "a\\b", "nul\x00.txt", ""],
    ids=["reserved-file", "reserved-dir", "dotdot", "absolute", "inner-dotdot", "backslash",
         "nul", "empty"],
)  # fmt: skip
def test_entries_never_include_reserved_or_unsafe_names(bad: str) -> None:
    """A tampered manifest cannot put bookkeeping or an escaping name into an archive."""
    entries = archive_entries({bad: _rec(), "ok.txt": _rec()})
    assert [e.path for e in entries] == ["ok.txt"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("pics/a.JPG", "stored"), ("x.tar.gz", "stored"), ("lib.whl", "stored"),
     ("font.woff2", "stored"), ("notes.txt", "deflated"), ("Makefile", "deflated"),
     ("archive.zip", "stored"), ("data.json", "deflated")],
)  # fmt: skip
def test_compression_by_suffix(name: str, expected: str) -> None:
    """Known compressed suffixes are stored; other text is deflated."""
    assert compression_for(name, b"plain text " * 100, 1100) == expected


def test_compressed_content_is_stored_whatever_its_name() -> None:
    """Magic bytes mark gzip/PNG at any size; a big file that does not shrink is stored too."""
    text = b"".join(b"line %d of a log file\n" % i for i in range(3000))
    noise = random.Random(7).randbytes(64 << 10)
    big = PROBE_MIN_SIZE
    assert compression_for("blob", gzip.compress(text), 100) == "stored"
    assert looks_compressed(b"\x89PNG\r\n\x1a\n" + b"\0" * 10, 18)
    assert compression_for("blob", noise, big) == "stored"
    assert compression_for("blob", text, big) == "deflated"
    # Small files are not probed: deflating them is cheaper than probing.
    assert compression_for("blob", noise, big - 1) == "deflated"
    assert not looks_compressed(b"tiny", 4)


@pytest.mark.parametrize(
    ("repository", "commit", "expected"),
    [("octo/demo", "0123456789abcdef0123", "demo-0123456789ab.zip"),
     ("octo/demo.git", "abc", "demo-abc.zip"),
     (None, "abc", "workspace-abc.zip"),
     ('evil/"; filename=x.exe', "abc", "filename-x.exe-abc.zip"),
     ("o/ünïcode name", "abc", "n-code-name-abc.zip"),
     ("o/../..", "abc", "workspace-abc.zip")],
    ids=["plain", "dot-git", "none", "header-injection", "non-ascii", "dots"],
)  # fmt: skip
def test_archive_filename_is_repo_and_short_commit(
    repository: str | None, commit: str, expected: str
) -> None:
    """The download is named after the repository and short commit, with only safe characters."""
    name = archive_filename(repository, commit)
    assert name == expected
    assert content_disposition(name) == f'attachment; filename="{name}"'


@pytest.mark.parametrize(
    ("header", "matches"),
    [(None, False), ('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True),
     ('"abcd"', False), ("abc", False)],
)  # fmt: skip
def test_if_none_match(header: str | None, matches: bool) -> None:
    """If-None-Match matches the quoted ETag in a list, weakly, or as a wildcard."""
    assert etag_matches(header, '"abc"') is matches


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("bytes=0-0", (0, 0)), ("bytes=2-", (2, 9)), ("bytes=-3", (7, 9)),
     ("bytes=5-100", (5, 9)), ("bytes=10-", "unsatisfiable"), ("bytes=-0", "unsatisfiable"),
     ("bytes=0-1,3-4", None), ("items=0-1", None), ("bytes=x-1", None), ("bytes=4-2", None),
     ("bytes=-", None)],
)  # fmt: skip
def test_parse_range_of_a_ten_byte_file(header: str | None, expected: object) -> None:
    """Single byte ranges are honoured, unsatisfiable ones flagged, the rest ignored."""
    assert parse_range(header, 10) == expected


def test_blob_hasher_agrees_with_git(tmp_path: os.PathLike[str]) -> None:
    """The streamed blob id is git's own ``hash-object`` for the same bytes."""
    data = random.Random(3).randbytes(300_000)
    path = os.path.join(tmp_path, "f")
    with open(path, "wb") as f:
        f.write(data)
    want = subprocess.run(
        ["git", "hash-object", path], check=True, capture_output=True, text=True
    ).stdout.strip()
    h = BlobHasher(len(data))
    for i in range(0, len(data), 65536):
        h.update(data[i : i + 65536])
    assert h.hexdigest() == want
