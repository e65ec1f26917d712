"""The directory stamps' comparison (``core.stamp_lines``): which stamps moved, found
from two answers of ``stat`` compared block by block, then as sets. Fuzzed against the
plain answer (the lines side by side), with small blocks so that many are compared."""

from __future__ import annotations

import random

import pytest

from gitops_sync.core import stamp_lines
from gitops_sync.core.stamp_lines import moved_as_sets as _moved_as_sets
from gitops_sync.core.stamp_lines import moved_in_place as _moved_in_place

NAMES = [b".", b"d0", b"a b", b"-x", b"deep/er", b"\xff\xfe", b"n\nl", b"z z z"]


def stamp(rng: random.Random, name: bytes, ctime: int | None = None) -> bytes:
    c = ctime if ctime is not None else rng.randrange(10**18, 2 * 10**18)
    m = rng.randrange(10**18, 2 * 10**18)
    ino = rng.randrange(1, 10 ** rng.randrange(1, 9))
    return b"41ed %d.%09d %d.%09d %d %s" % (*divmod(m, 10**9), *divmod(c, 10**9), ino, name)


def blob(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\0" for line in lines)


def truth(new: list[bytes], old: list[bytes]) -> dict[bytes, int]:
    out = {}
    for a, b in zip(new, old, strict=True):
        if a != b:
            fields = a.split(b" ", 4)
            sec, _, ns = fields[2].partition(b".")
            out[fields[4]] = int(sec) * 10**9 + int(ns)
    return out


@pytest.mark.parametrize("seed", range(300))
def test_moved_stamps_are_exactly_the_lines_that_differ(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(stamp_lines, "BLOCK", rng.choice([8, 64, 256, 1 << 14]))
    names = [b"%s/%d" % (rng.choice(NAMES), i) for i in range(rng.randrange(1, 120))]
    old = [stamp(rng, n) for n in names]
    new = list(old)
    for i in rng.sample(range(len(new)), rng.randrange(0, min(6, len(new)) + 1)):
        if rng.random() < 0.5:  # the same length: only digits move
            new[i] = new[i][:5] + bytes(rng.choice(b"123456789") for _ in range(10)) + new[i][15:]
        else:
            new[i] = stamp(rng, names[i])
    expected = truth(new, old)
    in_place = _moved_in_place(blob(new), blob(old))
    assert in_place is None or in_place == expected
    if len(blob(new)) == len(blob(old)) and all(
        len(a) == len(b) for a, b in zip(new, old, strict=True)
    ):
        assert in_place == expected  # lined up: always answered in place
    assert expected == _moved_as_sets(blob(new), blob(old), len(names))


@pytest.mark.parametrize("block", [8, 64, 1 << 14])
def test_lines_that_do_not_line_up_are_compared_as_sets(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One stamp a digit longer and one far after it a digit shorter: the same length in
    all, but not side by side in between; a line short or not a stamp: not believed; a
    placeholder ("- name") recorded for a directory not stamped yet."""
    monkeypatch.setattr(stamp_lines, "BLOCK", block)
    rng = random.Random(7)
    old = [stamp(rng, b"d%d" % i) for i in range(50)]
    grown, shrunk = old[5].split(b" "), old[45].split(b" ")
    grown[3], shrunk[3] = b"1" + grown[3], shrunk[3][1:]
    new = list(old)
    new[5], new[45] = b" ".join(grown), b" ".join(shrunk)
    assert len(blob(new)) == len(blob(old))
    moved = _moved_in_place(blob(new), blob(old))
    assert moved is None or moved == truth(new, old)
    assert truth(new, old) == _moved_as_sets(blob(new), blob(old), 50)
    assert _moved_as_sets(blob(new[:-1]), blob(old), 50) is None  # a line short
    assert _moved_as_sets(blob([*new[:-1], b"garbage"]), blob(old), 50) is None
    placeholder = blob([*old[:-1], b"- d49"])
    assert _moved_in_place(blob(old), placeholder) is None
    assert {b"d49"} == set(_moved_as_sets(blob(old), placeholder, 50) or {})
