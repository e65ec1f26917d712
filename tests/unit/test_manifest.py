"""The manifest format: whole bodies, appended rows that replace or remove, header-only reads."""

from __future__ import annotations

from gitops_sync.core.manifest import Manifest, append_rows, dumps_rows, loads, loads_header
from gitops_sync.core.model import MODE_EXEC, MODE_FILE, RecordedFile


def test_appended_rows_replace_and_remove_earlier_ones() -> None:
    """A later row wins; a row with an empty blob id removes its path; the header is the new one."""
    first = dumps_rows(
        Manifest(commit="c1", ref="main"),
        [("a.txt", "b1", 1, MODE_FILE, "s1"), ("b.txt", "b2", 2, MODE_FILE, "s2")],
    )
    second = append_rows(
        first,
        Manifest(commit="c2", ref="main", index="ff" * 20, appended=2),
        [
            ("a.txt", "b3", 3, MODE_EXEC, ""),
            ("b.txt", "", 0, 0, ""),
            ("c.txt", "b4", 4, MODE_FILE, ""),
        ],
    )
    parsed = loads(second)
    assert {
        "a.txt": RecordedFile("b3", 3, MODE_EXEC, ""),
        "c.txt": RecordedFile("b4", 4, MODE_FILE, ""),
    } == parsed.files
    assert ("c2", "ff" * 20, 2) == (parsed.commit, parsed.index, parsed.appended)


def test_header_alone_is_read_without_the_rows() -> None:
    """loads_header returns commit, ref and index and leaves the rows unread (even broken ones)."""
    data = dumps_rows(Manifest(commit="c1", ref="main", index="ab" * 20), []) + b"broken\0rows"
    head = loads_header(data)
    assert ("c1", "main", "ab" * 20, {}) == (head.commit, head.ref, head.index, head.files)
    assert None is loads(data).commit  # the full read refuses the broken body


def test_format_2_manifests_are_still_read() -> None:
    """A manifest written before appended rows existed (format 2) keeps its rows."""
    data = b'{"format":2,"commit":"c0","ref":"main","synced_at":null,"functions":{}}\n' + (
        b"a.txt\0b1\x001\x00100644\0s1"
    )
    assert {"a.txt": RecordedFile("b1", 1, MODE_FILE, "s1")} == loads(data).files


def test_rows_spliced_on_disk_read_back_as_appended(tmp_path) -> None:
    """A folder's manifest gets rows by splicing (header line replaced, body kept on disk):
    the same bytes as ``append_rows``, for an empty and a non-empty previous body."""
    from gitops_sync.adapters.dir_store import DirectoryStore
    from gitops_sync.core.manifest import appended_pieces

    store = DirectoryStore(tmp_path / "ws")
    new_header = Manifest(commit="c2", ref="main", index="ff" * 20, appended=1)
    rows = [("b.txt", "b2", 2, MODE_EXEC, "")]
    for previous_rows in ([], [("a.txt", "b1", 1, MODE_FILE, "s1")]):
        previous = dumps_rows(Manifest(commit="c1", ref="main"), previous_rows)
        store.write_meta("manifest.json", previous)
        head = store.read_meta_head("manifest.json")
        assert head is not None
        assert previous.split(b"\n")[0] == head[0]
        first, tail = appended_pieces(new_header, rows, head[1])
        store.splice_meta("manifest.json", first, len(head[0]) + 1, tail)
        assert append_rows(previous, new_header, rows) == store.read_meta("manifest.json")
    assert None is store.read_meta_head("absent.json")
