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
    data = dumps_rows(Manifest(commit="c1", ref="main", index="ab" * 20), [("a", "b", 1, 0, "")])
    broken = data.replace(b"a\0b\x001\x000\0", b"a\0b\x00x\x000\0")
    head = loads_header(broken)
    assert ("c1", "main", "ab" * 20, {}) == (head.commit, head.ref, head.index, head.files)
    assert None is loads(broken).commit  # the full read refuses the broken body


def test_a_torn_or_foreign_tail_is_ignored() -> None:
    """A record counts once its trailer is there: any prefix of an appended record (a
    reader racing the append, or a crash mid-append) reads as the state before it, and so
    do bytes that are no record at all."""
    first = dumps_rows(Manifest(commit="c1", ref="main"), [("a.txt", "b1", 1, MODE_FILE, "")])
    whole = append_rows(first, Manifest(commit="c2", ref="main"), [("a.txt", "", 0, 0, "")])
    assert ("c2", {}) == (loads(whole).commit, loads(whole).files)
    for cut in range(len(first), len(whole)):
        torn = loads(whole[:cut])
        assert ("c1", ["a.txt"]) == (torn.commit, list(torn.files)), cut
        assert "c1" == loads_header(whole[:cut]).commit
    assert "c1" == loads(first + b"broken\0rows").commit
    for cut in range(len(first)):  # a torn first record: nothing is readable
        assert (None, {}) == (loads(first[:cut]).commit, loads(first[:cut]).files)


def test_the_last_header_is_found_from_the_end() -> None:
    """``trailer_offset`` names the last record; ``record_header`` reads it only when that
    record ends exactly where the file does (not a torn one, not an earlier one)."""
    from gitops_sync.core.manifest import record_header, trailer_offset

    first = dumps_rows(Manifest(commit="c1", ref="main"), [("a.txt", "b1", 1, MODE_FILE, "")])
    assert 0 == trailer_offset(first)
    assert "c1" == record_header(first, 0, len(first)).commit  # type: ignore[union-attr]
    whole = append_rows(first, Manifest(commit="c2", ref="main"), [("b.txt", "b2", 2, 0, "")])
    at = trailer_offset(whole)
    assert len(first) == at
    assert "c2" == record_header(whole[at:], at, len(whole)).commit  # type: ignore[union-attr, index]
    assert None is record_header(whole[at:], at, len(whole) + 1)
    assert None is trailer_offset(whole[:-1])
    assert None is trailer_offset(b'{"format":3}\nrows')


def test_format_3_manifests_with_appended_rows_are_still_read() -> None:
    """Format 3 (the header line rewritten, rows appended after a NUL) reads as before."""
    data = b'{"format":3,"commit":"c3","ref":"main","synced_at":null,"functions":{}}\n' + (
        b"a.txt\0b1\x001\x00100644\0s1\0a.txt\0\x000\x000\0\0c.txt\0b2\x002\x00100644\0"
    )
    parsed = loads(data)
    assert ("c3", {"c.txt": RecordedFile("b2", 2, MODE_FILE, "")}) == (parsed.commit, parsed.files)
    assert "c3" == loads_header(data).commit


def test_format_2_manifests_are_still_read() -> None:
    """A manifest written before appended rows existed (format 2) keeps its rows."""
    data = b'{"format":2,"commit":"c0","ref":"main","synced_at":null,"functions":{}}\n' + (
        b"a.txt\0b1\x001\x00100644\0s1"
    )
    assert {"a.txt": RecordedFile("b1", 1, MODE_FILE, "s1")} == loads(data).files


def test_records_appended_on_disk_read_back_as_appended(tmp_path) -> None:
    """A folder's manifest gets a record appended in place (``append_meta``): the same
    bytes as ``append_rows``; an append onto a file of another size writes nothing."""
    import pytest

    from gitops_sync.adapters.dir_store import DirectoryStore
    from gitops_sync.core.manifest import append_record

    store = DirectoryStore(tmp_path / "ws")
    new_header = Manifest(commit="c2", ref="main", index="ff" * 20, appended=1)
    rows = [("b.txt", "b2", 2, MODE_EXEC, "")]
    for previous_rows in ([], [("a.txt", "b1", 1, MODE_FILE, "s1")]):
        previous = dumps_rows(Manifest(commit="c1", ref="main"), previous_rows)
        store.write_meta("manifest.json", previous)
        assert (previous[-40:], len(previous)) == store.read_meta_range("manifest.json", -40, 40)
        assert (previous[3:8], len(previous)) == store.read_meta_range("manifest.json", 3, 5)
        with pytest.raises(OSError):
            store.append_meta("manifest.json", b"x", len(previous) + 1)
        store.append_meta("manifest.json", append_record(new_header, rows, len(previous)),
                          len(previous))  # fmt: skip
        assert append_rows(previous, new_header, rows) == store.read_meta("manifest.json")
    assert None is store.read_meta_range("absent.json", 0, 10)
