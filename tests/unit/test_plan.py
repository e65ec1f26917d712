"""The compare phase: (desired, recorded, observed) -> plan, without touching anything."""

from __future__ import annotations

import pytest

from gitops_sync.core.errors import CaseConflict
from gitops_sync.core.model import (
    MODE_EXEC,
    MODE_FILE,
    Content,
    Listing,
    ObservedFile,
    RecordedFile,
    SourceFile,
)
from gitops_sync.core.plan import (
    apply_renames,
    check_case_conflicts,
    paths_to_verify,
    plan_case_renames,
    plan_sync,
)


def src(path: str, blob: str = "b1", size: int = 3, mode: int = MODE_FILE) -> SourceFile:
    return SourceFile(path, mode, blob, size)


def listing(*files: tuple[str, int, str], dirs: tuple[str, ...] = (), links: tuple[str, ...] = ()):
    out = Listing()
    for path, size, stamp in files:
        out.files[path] = ObservedFile(path, size, stamp)
    for path in links:
        out.files[path] = ObservedFile(path, 0, "", "link")
    out.dirs.update(dirs)
    return out


def test_empty_workspace_adds_everything():
    """Every desired file is an add when the workspace is empty."""
    desired = {"a.txt": src("a.txt"), "d/b.txt": src("d/b.txt")}
    plan = plan_sync(desired, Listing(), {}, {})
    assert [f.path for f in plan.add] == ["a.txt", "d/b.txt"]
    assert plan.bytes_to_write == 6
    assert not plan.update and not plan.delete


def test_matching_stamp_trusts_the_manifest():
    """A file whose size and stamp match the manifest is unchanged without hashing."""
    desired = {"a.txt": src("a.txt", "b1")}
    obs = listing(("a.txt", 3, "s1"))
    rec = {"a.txt": RecordedFile("b1", 3, MODE_FILE, "s1")}
    assert paths_to_verify(desired, obs, rec) == []
    plan = plan_sync(desired, obs, rec, {})
    assert [f.path for f in plan.unchanged] == ["a.txt"]
    assert [] == plan.writes + plan.chmod


def test_new_blob_with_matching_stamp_is_an_update():
    """A new commit's blob differs from the recorded one: update without hashing."""
    desired = {"a.txt": src("a.txt", "b2")}
    obs = listing(("a.txt", 3, "s1"))
    rec = {"a.txt": RecordedFile("b1", 3, MODE_FILE, "s1")}
    plan = plan_sync(desired, obs, rec, {})
    assert [f.path for f in plan.update] == ["a.txt"]


def test_changed_stamp_same_size_must_be_verified():
    """Drift with an unchanged size is found by hashing only that file."""
    desired = {"a.txt": src("a.txt", "b1"), "b.txt": src("b.txt", "b9")}
    obs = listing(("a.txt", 3, "s-new"), ("b.txt", 3, "s2"))
    rec = {
        "a.txt": RecordedFile("b1", 3, MODE_FILE, "s1"),
        "b.txt": RecordedFile("b9", 3, MODE_FILE, "s2"),
    }
    assert paths_to_verify(desired, obs, rec) == ["a.txt"]
    with pytest.raises(ValueError, match="needs verifying"):
        plan_sync(desired, obs, rec, {})
    drifted = plan_sync(desired, obs, rec, {"a.txt": Content("bX", MODE_FILE)})
    assert [f.path for f in drifted.update] == ["a.txt"]
    same = plan_sync(desired, obs, rec, {"a.txt": Content("b1", MODE_FILE)})
    assert sorted(f.path for f in same.unchanged) == ["a.txt", "b.txt"]
    assert same.unchanged_stamps["a.txt"] == "s-new"


def test_size_difference_needs_no_hash():
    """A file whose size differs from the desired size is rewritten without reading it."""
    desired = {"a.txt": src("a.txt", "b1", size=3)}
    obs = listing(("a.txt", 10, "s9"))
    assert paths_to_verify(desired, obs, {}) == []
    assert [f.path for f in plan_sync(desired, obs, {}, {}).update] == ["a.txt"]


def test_mode_only_change_is_a_chmod():
    """Same content with another executable bit becomes a chmod, not a write."""
    desired = {"run.sh": src("run.sh", "b1", mode=MODE_EXEC)}
    obs = listing(("run.sh", 3, "s1"))
    rec = {"run.sh": RecordedFile("b1", 3, MODE_FILE, "s1")}
    plan = plan_sync(desired, obs, rec, {})
    assert [f.path for f in plan.chmod] == ["run.sh"]
    assert plan.bytes_to_write == 0


def test_extra_files_and_empty_dirs_are_deleted_deepest_first():
    """Files not desired are deleted, then directories no desired file needs."""
    desired = {"keep/a.txt": src("keep/a.txt")}
    obs = listing(
        ("keep/a.txt", 3, "s"),
        ("old/x/y.txt", 1, "s"),
        ("stray.txt", 1, "s"),
        dirs=("keep", "old", "old/x", "empty"),
    )
    rec = {"keep/a.txt": RecordedFile("b1", 3, MODE_FILE, "s")}
    plan = plan_sync(desired, obs, rec, {})
    assert plan.delete == ["old/x/y.txt", "stray.txt"]
    assert plan.delete_dirs == ["old/x", "empty", "old"]


def test_file_replaced_by_directory_is_removed_first():
    """A file standing where a directory must go is a blocking delete."""
    desired = {"a/b.txt": src("a/b.txt")}
    obs = listing(("a", 3, "s"))
    plan = plan_sync(desired, obs, {}, {})
    assert plan.blocking_files == ["a"]
    assert [f.path for f in plan.add] == ["a/b.txt"]
    assert plan.delete == []


def test_directory_replaced_by_file_is_removed_first():
    """A directory tree standing where a file must go is removed before the write."""
    desired = {"a": src("a")}
    obs = listing(("a/x.txt", 1, "s"), ("a/sub/y.txt", 1, "s"), dirs=("a", "a/sub"))
    plan = plan_sync(desired, obs, {}, {})
    assert plan.blocking_files == ["a/sub/y.txt", "a/x.txt"]
    assert plan.blocking_dirs == ["a/sub", "a"]
    assert [f.path for f in plan.add] == ["a"]
    assert plan.delete_dirs == []


def test_symlink_in_workspace_is_replaced_or_removed():
    """Links are never trusted: replaced where a file is desired, deleted elsewhere."""
    desired = {"a.txt": src("a.txt"), "d/f.txt": src("d/f.txt")}
    obs = listing(links=("a.txt", "d", "evil"))
    plan = plan_sync(desired, obs, {}, {})
    assert [f.path for f in plan.update] == ["a.txt"]
    assert plan.blocking_files == ["d"]  # a link where a directory must be: never written through
    assert plan.delete == ["evil"]


@pytest.mark.parametrize(
    ("paths", "conflict"),
    [
        (["README.md", "readme.md"], True),
        (["Docs/a.txt", "docs/b.txt"], True),
        (["docs/a.txt", "docs/b.txt"], False),
        (["a", "b/a"], False),
    ],
    ids=["files", "directories", "no-conflict", "same-name-other-dir"],
)
def test_case_conflicts(paths, conflict):
    """Two paths (or directories) differing only in case are refused."""
    if conflict:
        with pytest.raises(CaseConflict, match="differ only in case"):
            check_case_conflicts(paths)
    else:
        check_case_conflicts(paths)


def test_case_only_rename_moves_instead_of_deleting():
    """readme.md -> README.md on a case-insensitive store is one rename, then no delete."""
    desired = {"README.md": src("README.md"), "Docs/a.txt": src("Docs/a.txt")}
    obs = listing(("readme.md", 3, "s1"), ("docs/a.txt", 3, "s2"), dirs=("docs",))
    rec = {
        "readme.md": RecordedFile("b1", 3, MODE_FILE, "s1"),
        "docs/a.txt": RecordedFile("b1", 3, MODE_FILE, "s2"),
    }
    renames, moved = plan_case_renames(desired, obs)
    assert renames == [("docs", "Docs"), ("readme.md", "README.md")]
    obs2, rec2 = apply_renames(obs, rec, moved)
    plan = plan_sync(desired, obs2, rec2, {})
    assert plan.delete == []
    assert sorted(f.path for f in plan.unchanged) == ["Docs/a.txt", "README.md"]
