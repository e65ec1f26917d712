"""The ``WorkspaceStore`` contract (``ports.py``), one suite run against every store.

Each test names the clause it checks; stores are parametrized in ``conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
from azure.storage.fileshare import ShareClient

from gitops_sync.core.model import MODE_EXEC, MODE_FILE
from gitops_sync.ports import WorkspaceStore
from tests.contract.conftest import StoreCase

BIG = (4 << 20) + 12345  # more than one 4 MiB range on Azure Files


def read_all(store: WorkspaceStore, path: str) -> bytes:
    return b"".join(store.read_chunks(path))


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def git_blob_id(data: bytes, tmp_path: Path) -> str:
    probe = tmp_path / "hash-object-input"
    probe.write_bytes(data)
    return subprocess.run(
        ["git", "hash-object", str(probe)], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.mark.parametrize(
    ("size", "piece"),
    [(0, 1), (1, 1), (70_000, 1000), (BIG, 1 << 20)],
    ids=["empty", "one-byte", "small-in-pieces", "over-one-range"],
)
def test_write_then_read_back(store: WorkspaceStore, tmp_path: Path, size: int, piece: int):
    """A written file reads back byte for byte, with its size and git blob id."""
    data = os.urandom(size)
    stamp = store.write_file("dir/file.bin", MODE_FILE, pieces(data, piece))
    assert data == read_all(store, "dir/file.bin")
    assert size == store.file_size("dir/file.bin")
    content = store.hash_file("dir/file.bin")
    assert git_blob_id(data, tmp_path) == content.blob_id
    assert MODE_FILE == content.mode
    assert stamp == store.list().files["dir/file.bin"].stamp


@pytest.mark.parametrize("mode", [MODE_FILE, MODE_EXEC], ids=["regular", "executable"])
def test_mode_is_kept_and_changed(store: WorkspaceStore, mode: int):
    """``hash_file`` reports the mode written, and ``set_mode`` changes it."""
    other = MODE_EXEC if mode == MODE_FILE else MODE_FILE
    store.write_file("run.sh", mode, [b"#!/bin/sh\n"])
    assert mode == store.hash_file("run.sh").mode
    store.set_mode("run.sh", other)
    assert other == store.hash_file("run.sh").mode
    assert b"#!/bin/sh\n" == read_all(store, "run.sh")


def test_write_creates_parents_and_list_shows_them(store: WorkspaceStore):
    """``write_file`` creates missing parents; ``list`` shows every file and directory."""
    store.write_file("a/b/c/deep.txt", MODE_FILE, [b"deep"])
    store.write_file("a/top.txt", MODE_FILE, [b"top!!"])
    store.write_file("root.txt", MODE_FILE, [b"r"])
    listing = store.list()
    assert {"a", "a/b", "a/b/c"} == listing.dirs
    assert {"a/b/c/deep.txt": 4, "a/top.txt": 5, "root.txt": 1} == {
        p: f.size for p, f in listing.files.items()
    }
    assert {"file"} == {f.kind for f in listing.files.values()}


@pytest.mark.parametrize(
    "path",
    ["with space/a b.txt", "unicodé/naïve ü.txt", "pct%20and+plus/x&y=z#h.txt", "-dash/~tilde"],
    ids=["spaces", "unicode", "url-characters", "dash-tilde"],
)
def test_odd_but_legal_names_round_trip(store: WorkspaceStore, path: str):
    """Names with spaces, non-ASCII and URL-special characters are listed and read as written."""
    store.write_file(path, MODE_FILE, [path.encode()])
    listing = store.list()
    assert [path] == list(listing.files)
    assert {path.split("/")[0]} == listing.dirs
    assert path.encode() == read_all(store, path)
    store.delete_file(path)
    assert {} == store.list().files


def test_stamp_changes_on_every_write_and_mode_change(store: WorkspaceStore):
    """A file's stamp changes when it is rewritten (even with the same bytes) or re-moded."""
    first = store.write_file("f.txt", MODE_FILE, [b"same"])
    second = store.write_file("f.txt", MODE_FILE, [b"same"])
    third = store.set_mode("f.txt", MODE_EXEC)
    assert len({first, second, third}) == 3
    assert third == store.list().files["f.txt"].stamp


def test_stamp_is_stable_without_changes(store: WorkspaceStore):
    """Listing twice without a change reports the same stamp (no false drift)."""
    stamp = store.write_file("f.txt", MODE_FILE, [b"x"])
    store.hash_file("f.txt")
    list(store.read_chunks("f.txt"))
    assert stamp == store.list().files["f.txt"].stamp == store.list().files["f.txt"].stamp


def test_listing_excludes_bookkeeping(store: WorkspaceStore):
    """``.gitops-sync/`` (manifest, temporaries) never appears in ``list``."""
    store.write_meta("manifest.json", b"{}")
    store.write_file("kept.txt", MODE_FILE, [b"k"])
    listing = store.list()
    assert ["kept.txt"] == sorted(listing.files)
    assert set() == listing.dirs


def temporaries(case: StoreCase) -> list[str]:
    """What the store holds in ``.gitops-sync/tmp/``, looked at from outside the store."""
    if case.root is not None:
        tmp = case.root / ".gitops-sync" / "tmp"
        return sorted(os.listdir(tmp)) if tmp.is_dir() else []
    if case.fake is not None:
        node = case.fake.service.lookup(case.fake.share, ".gitops-sync/tmp")
        return sorted(node.children) if node is not None else []
    return []  # a real share: only the store's own view, which hides .gitops-sync/


@pytest.mark.parametrize("first", [19, BIG], ids=["small", "over-one-range"])
def test_failed_write_keeps_the_old_file(store_case: StoreCase, first: int):
    """A write whose chunks raise midway leaves the old file whole and nothing else behind."""
    store = store_case.store
    store.check_writable()
    store.write_file("f.bin", MODE_FILE, [b"old content"])

    def broken():
        yield b"n" * first
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        store.write_file("f.bin", MODE_EXEC, broken())
    with pytest.raises(RuntimeError, match="source broke"):
        store.write_file("new/never.bin", MODE_FILE, broken())
    assert b"old content" == read_all(store, "f.bin")
    assert MODE_FILE == store.hash_file("f.bin").mode
    assert ["f.bin"] == sorted(store.list().files)
    assert [] == temporaries(store_case)


def test_concurrent_reader_never_sees_a_partial_file(store: WorkspaceStore):
    """While a file is rewritten again and again, a reader sees one whole version or another."""
    versions = [bytes([i]) * (300_000 + i * 1000) for i in range(4)]
    store.write_file("hot.bin", MODE_FILE, [versions[0]])
    stop = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(read_all(store, "hot.bin"))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(12):
            data = versions[i % len(versions)]
            store.write_file("hot.bin", MODE_FILE, pieces(data, 64_000))
    finally:
        stop.set()
        thread.join()
    assert seen, "the reader ran"
    assert set(seen) <= set(versions)


def test_delete_is_idempotent(store: WorkspaceStore):
    """``delete_file``/``delete_dir`` succeed when the path is already gone."""
    store.write_file("d/f.txt", MODE_FILE, [b"x"])
    store.delete_file("d/f.txt")
    store.delete_file("d/f.txt")
    store.delete_dir("d")
    store.delete_dir("d")
    store.delete_file("never/was.txt")
    store.delete_dir("never")
    listing = store.list()
    assert ({}, set()) == (listing.files, listing.dirs)


def test_delete_dir_keeps_a_non_empty_directory(store: WorkspaceStore):
    """``delete_dir`` removes only an empty directory; a non-empty one stays as it is."""
    store.write_file("d/f.txt", MODE_FILE, [b"x"])
    store.delete_dir("d")
    assert b"x" == read_all(store, "d/f.txt")
    assert {"d"} == store.list().dirs


def test_meta_round_trip(store: WorkspaceStore):
    """``read_meta`` is None when absent and returns what ``write_meta`` last wrote."""
    assert store.read_meta("manifest.json") is None
    store.write_meta("manifest.json", b'{"v": 1}')
    store.write_meta("manifest.json", b'{"v": 2, "longer": true}')
    assert b'{"v": 2, "longer": true}' == store.read_meta("manifest.json")


@pytest.mark.parametrize(
    ("start", "length"),
    [(0, None), (0, 10), (7, None), (7, 10), (995, 100), (1000, None), (1000, 5), (3, 0)],
    ids=["all", "head", "tail", "middle", "past-end", "at-end", "at-end-len", "zero"],
)
def test_ranged_reads(store: WorkspaceStore, start: int, length: int | None):
    """``read_chunks(path, start, length)`` returns exactly that slice, clipped at the end."""
    data = os.urandom(1000)
    store.write_file("r.bin", MODE_FILE, [data])
    end = None if length is None else start + length
    assert data[start:end] == b"".join(store.read_chunks("r.bin", start, length))


def test_ranged_read_across_ranges(store: WorkspaceStore):
    """A range spanning the 4 MiB request size of Azure Files comes back whole and in order."""
    data = os.urandom(BIG)
    store.write_file("big.bin", MODE_FILE, [data])
    start = (4 << 20) - 100
    assert data[start : start + 5000] == b"".join(store.read_chunks("big.bin", start, 5000))


def test_empty_file_reads(store: WorkspaceStore):
    """An empty file has size 0 and reads as no bytes."""
    store.write_file("empty", MODE_FILE, [])
    assert 0 == store.file_size("empty")
    assert b"" == read_all(store, "empty")


@pytest.mark.parametrize("path", ["missing.txt", "dir", "dir/missing.txt"])
def test_reads_of_missing_files_raise_file_not_found(store: WorkspaceStore, path: str):
    """``file_size``/``read_chunks`` raise FileNotFoundError for a missing file or a directory."""
    store.write_file("dir/present.txt", MODE_FILE, [b"p"])
    with pytest.raises(FileNotFoundError):
        store.file_size(path)
    with pytest.raises(FileNotFoundError):
        b"".join(store.read_chunks(path))


def test_rename_moves_a_file(store: WorkspaceStore):
    """``rename`` moves a file under a new name with its bytes and mode."""
    store.write_file("old.sh", MODE_EXEC, [b"echo\n"])
    store.rename("old.sh", "new.sh")
    assert ["new.sh"] == sorted(store.list().files)
    assert (b"echo\n", MODE_EXEC) == (read_all(store, "new.sh"), store.hash_file("new.sh").mode)


def test_case_only_rename_on_case_insensitive_store(store: WorkspaceStore):
    """On a case-insensitive store a case-only rename changes the listed spelling of both kinds."""
    if not store.case_insensitive:
        pytest.skip("case-sensitive store: a case-only rename is an ordinary rename")
    store.write_file("Docs/readme.md", MODE_FILE, [b"hello"])
    store.rename("Docs", "docs")
    store.rename("docs/readme.md", "docs/README.md")
    listing = store.list()
    assert (["docs/README.md"], {"docs"}) == (sorted(listing.files), listing.dirs)
    assert b"hello" == read_all(store, "docs/README.md")


def test_clean_temporaries_keeps_the_workspace(store: WorkspaceStore):
    """``clean_temporaries`` leaves files and the manifest alone, and writes still work after."""
    store.write_meta("manifest.json", b"m")
    store.write_file("a/f.txt", MODE_FILE, [b"f"])
    store.clean_temporaries()
    store.clean_temporaries()
    store.write_file("a/g.txt", MODE_FILE, [b"g"])
    assert ["a/f.txt", "a/g.txt"] == sorted(store.list().files)
    assert b"m" == store.read_meta("manifest.json")


def test_clean_temporaries_removes_leftovers(store_case: StoreCase):
    """Temporaries a crash left behind are removed: partial uploads and, on Azure Files
    (which renames case-only through a temporary name), a directory mid-rename."""
    store = store_case.store
    store.check_writable()
    if store_case.root is not None:
        tmp = store_case.root / ".gitops-sync" / "tmp"
        (tmp / "upload-1").write_bytes(b"partial")
        (tmp / "upload-2").write_bytes(b"partial")
        planted = ["upload-1", "upload-2"]
    elif store_case.fake is not None:
        share = ShareClient.from_connection_string(
            store_case.fake.connection_string, store_case.fake.share
        )
        share.get_directory_client(".gitops-sync/tmp/rename-1").create_directory()
        share.get_directory_client(".gitops-sync/tmp/rename-1/sub").create_directory()
        share.get_file_client(".gitops-sync/tmp/rename-1/sub/f").upload_file(b"x")
        share.get_file_client(".gitops-sync/tmp/upload-1").upload_file(b"partial")
        planted = ["rename-1", "upload-1"]
    else:
        pytest.skip("a real share is only seen through the store, which hides temporaries")
    assert planted == temporaries(store_case)
    store.clean_temporaries()
    assert [] == temporaries(store_case)


def test_listing_a_store_never_written_is_empty(store_case: StoreCase):
    """Before ``check_writable`` (a dry run on a new workspace) ``list`` is empty, not an error."""
    listing = store_case.store.list()
    assert ({}, set()) == (listing.files, listing.dirs)
    assert store_case.store.read_meta("manifest.json") is None


# ------------------------------------------------- directory store: odd entries
def test_links_and_odd_entries_are_listed_as_links(store_case: StoreCase):
    """A symlink or FIFO in a directory store is listed as kind "link" and never read through."""
    if store_case.root is None:
        pytest.skip("only a directory can hold links and FIFOs")
    store = store_case.store
    store.check_writable()
    store.write_file("target.txt", MODE_FILE, [b"secret"])
    os.symlink("target.txt", store_case.root / "link.txt")
    os.mkfifo(store_case.root / "pipe")
    listing = store.list()
    assert {"link.txt": "link", "pipe": "link", "target.txt": "file"} == {
        p: f.kind for p, f in listing.files.items()
    }
    with pytest.raises(FileNotFoundError):
        store.file_size("link.txt")
    with pytest.raises(FileNotFoundError):
        b"".join(store.read_chunks("link.txt"))


def test_a_linked_parent_directory_is_never_read_through(store_case: StoreCase, tmp_path: Path):
    """A directory replaced by a link to outside the workspace is not followed by reads."""
    if store_case.root is None:
        pytest.skip("only a directory can hold links")
    store = store_case.store
    store.check_writable()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"outside the workspace")
    os.symlink(outside, store_case.root / "docs")
    with pytest.raises(FileNotFoundError):
        store.file_size("docs/secret.txt")
    with pytest.raises(FileNotFoundError):
        b"".join(store.read_chunks("docs/secret.txt"))
