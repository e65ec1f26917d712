"""The archive use case on a real synced workspace: exact contents, consistency, link safety."""

from __future__ import annotations

import gzip
import io
import os
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from zipstream import ZIP_DEFLATED, ZIP_STORED

from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.archive import (
    WorkspaceChanged,
    WorkspaceNotSynced,
    load_manifest,
    stream_archive,
)
from gitops_sync.core.archive import BlobHasher
from gitops_sync.core.manifest import Manifest, dumps
from gitops_sync.core.model import MODE_FILE, RecordedFile
from tests.archive_support import sync
from tests.gitrepo import Repo, expected_files


def _repo(tmp_path: Path) -> tuple[Repo, str]:
    rng = random.Random(11)
    repo = Repo(tmp_path / "repo")
    repo.write("README.md", "# demo\n" * 50)
    repo.write("bin/run.sh", "#!/bin/sh\necho hi\n", executable=True)
    repo.write("src/app/main.py", "".join(f"print({i})\n" for i in range(5000)))
    repo.write("assets/logo.png", b"\x89PNG\r\n\x1a\n" + rng.randbytes(40_000))
    repo.write("data/log.gz", gzip.compress(b"event\n" * 20_000))
    repo.write("data/noise", rng.randbytes(300_000))
    repo.write("empty.txt", b"")
    repo.write("unicodé/naïve.txt", "ünïcode\n")
    repo.write(".github/workflows/ci.yml", "on: push\n")
    return repo, repo.commit("first")


def _zip(store: DirectoryStore) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(stream_archive(store, load_manifest(store)))))


def test_archive_extracts_to_exactly_the_synced_files(tmp_path: Path) -> None:
    """Every synced file is in the archive byte for byte, with its exec bit; nothing else is."""
    repo, commit = _repo(tmp_path)
    ws = tmp_path / "ws"
    sync(repo.path, commit, ws, tmp_path / "cache")
    zf = _zip(DirectoryStore(ws))
    assert zf.testzip() is None
    got = {i.filename: (zf.read(i), bool((i.external_attr >> 16) & 0o100)) for i in zf.infolist()}
    assert got == expected_files(repo.path, commit)
    names = [i.filename for i in zf.infolist()]
    assert names == sorted(names, key=str.encode)
    assert not any(n.startswith(".gitops-sync") for n in names)


def test_compressed_files_are_stored_and_text_deflated(tmp_path: Path) -> None:
    """PNG, gzip and random bytes are STORED; source text is DEFLATED and shrinks."""
    repo, commit = _repo(tmp_path)
    ws = tmp_path / "ws"
    sync(repo.path, commit, ws, tmp_path / "cache")
    info = {i.filename: i for i in _zip(DirectoryStore(ws)).infolist()}
    for name in ("assets/logo.png", "data/log.gz", "data/noise"):
        assert info[name].compress_type == ZIP_STORED, name
    main = info["src/app/main.py"]
    assert main.compress_type == ZIP_DEFLATED
    assert main.compress_size < main.file_size / 2


def test_two_archives_of_one_commit_have_the_same_entries(tmp_path: Path) -> None:
    """The entry order and contents do not depend on the run (stable for caches and diffs)."""
    repo, commit = _repo(tmp_path)
    ws = tmp_path / "ws"
    sync(repo.path, commit, ws, tmp_path / "cache")
    first, second = _zip(DirectoryStore(ws)), _zip(DirectoryStore(ws))
    assert [(i.filename, i.CRC, i.compress_size) for i in first.infolist()] == [
        (i.filename, i.CRC, i.compress_size) for i in second.infolist()
    ]


def test_never_synced_workspace_is_a_clear_error(tmp_path: Path) -> None:
    """Without a manifest there is nothing to archive, and the error says so."""
    with pytest.raises(WorkspaceNotSynced, match="not been synced"):
        load_manifest(DirectoryStore(tmp_path))


def _partial(store: DirectoryStore) -> tuple[bytes, BaseException | None]:
    out = bytearray()
    try:
        for piece in stream_archive(store, load_manifest(store)):
            out += piece
    except WorkspaceChanged as exc:
        return bytes(out), exc
    return bytes(out), None


def _assert_not_a_zip(data: bytes) -> None:
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(data))


@pytest.mark.parametrize("change", ["edited", "deleted", "truncated", "grown"])
def test_a_file_that_differs_from_the_manifest_aborts_the_stream(
    tmp_path: Path, change: str
) -> None:
    """A file edited, deleted, truncated or grown after the sync stops the archive unfinished."""
    repo, commit = _repo(tmp_path)
    ws = tmp_path / "ws"
    sync(repo.path, commit, ws, tmp_path / "cache")
    target = ws / "src/app/main.py"
    data = target.read_bytes()
    if change == "edited":
        target.write_bytes(data.replace(b"print(1)", b"print(7)"))
    elif change == "deleted":
        target.unlink()
    elif change == "truncated":
        target.write_bytes(data[:-1])
    else:
        target.write_bytes(data + b"x")
    out, exc = _partial(DirectoryStore(ws))
    assert isinstance(exc, WorkspaceChanged)
    assert "src/app/main.py" in str(exc)
    _assert_not_a_zip(out)


def test_a_linked_parent_directory_is_never_followed(tmp_path: Path) -> None:
    """A directory replaced by a link to outside the workspace aborts instead of reading there."""
    repo, commit = _repo(tmp_path)
    ws = tmp_path / "ws"
    sync(repo.path, commit, ws, tmp_path / "cache")
    outside = tmp_path / "outside" / "app"
    outside.mkdir(parents=True)
    (outside / "main.py").write_bytes((ws / "src/app/main.py").read_bytes())
    os.rename(ws / "src", tmp_path / "moved-src")
    os.symlink(tmp_path / "outside", ws / "src")
    out, exc = _partial(DirectoryStore(ws))
    assert isinstance(exc, WorkspaceChanged)
    _assert_not_a_zip(out)


@dataclass
class MemoryStore:
    """A read-only in-memory workspace: just what the archive reads (a plain fake)."""

    files: dict[str, bytes] = field(default_factory=dict)
    commit: str = "c0ffee"
    reads: int = 0

    def read_meta(self, name: str) -> bytes | None:
        recorded = {
            p: RecordedFile(_blob_id(d), len(d), MODE_FILE, "") for p, d in self.files.items()
        }
        return dumps(Manifest(commit=self.commit, ref="main", files=recorded))

    def file_size(self, path: str) -> int:
        return len(self.files[path])

    def read_chunks(self, path: str, start: int = 0, length: int | None = None):  # type: ignore[no-untyped-def]
        if path not in self.files:
            raise FileNotFoundError(path)
        self.reads += 1
        data = self.files[path]
        end = len(data) if length is None else start + length
        yield data[start:end]


def _blob_id(data: bytes) -> str:
    h = BlobHasher(len(data))
    h.update(data)
    return h.hexdigest()


@pytest.mark.slow
def test_more_than_65535_entries_use_zip64_end_records() -> None:
    """An archive past the classic ZIP's entry limit is still read back whole (ZIP64)."""
    count = 70_000
    store = MemoryStore({f"d{i % 97}/f{i}.txt": b"%d\n" % i for i in range(count)})
    data = b"".join(stream_archive(store, load_manifest(store)))  # type: ignore[arg-type]
    assert b"PK\x06\x06" in data[-200:]  # the ZIP64 end of central directory record
    zf = zipfile.ZipFile(io.BytesIO(data))
    infos = zf.infolist()
    assert len(infos) == count
    assert zf.read("d5/f67905.txt") == b"67905\n"


@dataclass
class ZerosStore:
    """One file of ``size`` zero bytes, served from a single reused buffer (no disk, no RAM)."""

    size: int
    name: str = "huge.gz"  # STORED: its bytes pass through unchanged

    def _chunks(self) -> Iterator[bytes]:
        block = bytes(1 << 20)
        left = self.size
        while left:
            n = min(left, len(block))
            yield block if n == len(block) else block[:n]
            left -= n

    def read_meta(self, name: str) -> bytes | None:
        h = BlobHasher(self.size)
        for chunk in self._chunks():
            h.update(chunk)
        rec = RecordedFile(h.hexdigest(), self.size, MODE_FILE, "")
        return dumps(Manifest(commit="f" * 40, ref="main", files={self.name: rec}))

    def read_chunks(self, path: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        return self._chunks()


@pytest.mark.slow
def test_a_file_past_4_gib_gets_zip64_records(tmp_path: Path) -> None:
    """A single file over 4 GiB streams with ZIP64 sizes and reads back whole (sparse sink)."""
    store = ZerosStore((4 << 30) + 12345)
    sink = tmp_path / "huge.zip"
    with open(sink, "wb") as f:
        for piece in stream_archive(store, load_manifest(store)):  # type: ignore[arg-type]
            if piece.count(0) == len(piece):
                f.seek(len(piece), os.SEEK_CUR)  # a hole: the test needs no 4 GiB of disk
            else:
                f.write(piece)
        f.truncate()
    with zipfile.ZipFile(sink) as zf:
        (info,) = zf.infolist()
        assert (info.filename, info.file_size, info.compress_size) == (
            "huge.gz",
            store.size,
            store.size,
        )
        assert zf.testzip() is None  # reads all 4 GiB back and checks the CRC
