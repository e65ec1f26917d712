"""Directory stamps as ``stat`` prints them, compared (pure; ``adapters.dir_stamps``).

A stamp is one line, ``<mode hex> <mtime> <ctime> <inode> <name>`` (times as
``seconds.nanoseconds``), and an answer is a run of NUL-terminated lines, one per
directory, in the order the directories were given. Two answers for the same
directories are compared block by block (``moved_in_place``): only a block that
differs is split into lines, so finding the few stamps that moved among thousands
costs a comparison of bytes, not a Python object per directory. Where the lines do
not line up (a stamp of another length), they are compared as sets (``moved_as_sets``).
"""

from __future__ import annotations

#: the bytes compared at a time by ``moved_in_place`` (only the blocks that differ are split)
BLOCK = 1 << 14


def parse(line: bytes) -> tuple[bytes, int] | None:
    """A stamp's (directory, ctime in ns), or None when LINE is not one."""
    fields = line.split(b" ", 4)
    if len(fields) != 5:
        return None
    sec, _, ns = fields[2].partition(b".")
    try:
        return fields[4], int(sec) * 10**9 + int(ns)
    except ValueError:
        return None


def moved_in_place(new: bytes, old: bytes) -> dict[bytes, int] | None:
    """The stamps of NEW that differ from OLD's line in the same place ({directory:
    ctime}), found by comparing blocks of bytes and splitting only the blocks that
    differ; None when the lines do not line up (a stamp of another length: the caller
    compares them as sets). OLD is one line per path (checked when it was taken); where
    NEW lines up with it, so is NEW."""
    if len(new) != len(old):
        return None
    moved: dict[bytes, int] = {}
    i, size = 0, len(new)
    while i < size:
        j = min(i + BLOCK, size)
        if new[i:j] == old[i:j]:
            i = j
            continue
        start = new.rfind(b"\0", 0, i) + 1  # the lines the block touches, whole
        end = new.find(b"\0", j - 1) + 1 or size
        if (start and old[start - 1] != 0) or old[end - 1] != 0:
            return None
        ours, theirs = new[start:end].split(b"\0"), old[start:end].split(b"\0")
        if len(ours) != len(theirs):
            return None
        for a, b in zip(ours, theirs, strict=True):
            if a != b:
                stamp, was = parse(a), parse(b)
                if stamp is None or was is None or stamp[0] != was[0]:
                    return None  # not the same directory's line: they do not line up
                moved[stamp[0]] = stamp[1]
        i = end
    return moved


def moved_as_sets(new: bytes, old: bytes, count: int | None) -> dict[bytes, int] | None:
    """The stamps of NEW found nowhere in OLD ({directory: ctime}); None when NEW is not
    COUNT well-formed lines (None: not counted)."""
    lines = new.split(b"\0")
    if count is not None and len(lines) != count + 1:
        return None
    moved: dict[bytes, int] = {}
    for line in set(lines).difference(old.split(b"\0")):
        stamp = parse(line) if line else (b"", 0)
        if stamp is None:
            return None
        if line:
            moved[stamp[0]] = stamp[1]
    return moved


def stamps_of(lines: bytes, names: set[bytes]) -> dict[bytes, int]:
    """The ctimes LINES gives NAMES (few: each line found by its name's ending)."""
    found: dict[bytes, int] = {}
    for name in names:
        at = lines.find(b" %s\0" % name)
        while at >= 0:
            start = lines.rfind(b"\0", 0, at) + 1
            stamp = parse(lines[start : at + len(name) + 1])
            if stamp is not None and stamp[0] == name:
                found[name] = stamp[1]
                break
            at = lines.find(b" %s\0" % name, at + 1)
    return found
