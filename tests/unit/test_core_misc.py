"""Manifest round trip, tree selection, redaction and path rules."""

from __future__ import annotations

import pytest

from gitops_sync.core.functions import RecordedFunction
from gitops_sync.core.manifest import Manifest, dumps, loads
from gitops_sync.core.model import (
    MODE_EXEC,
    MODE_FILE,
    MODE_GITLINK,
    MODE_LINK,
    RecordedFile,
    TreeRecord,
)
from gitops_sync.core.paths import azure_files_name_problem
from gitops_sync.core.redact import redact
from gitops_sync.core.select import SyncIgnore, select_desired


def test_manifest_round_trips():
    """What dumps writes, loads reads back unchanged."""
    m = Manifest(
        "c" * 40,
        "main",
        "2026-01-01T00:00:00+00:00",
        {"a b/ü.txt": RecordedFile("b" * 40, 5, MODE_EXEC, "1.2.3")},
        {"fn-one": RecordedFunction("h" * 64, "functions/fn-one")},
    )
    assert m == loads(dumps(m))


@pytest.mark.parametrize(
    "data", [None, b"", b"{", b"[]", b'{"format": 99}', b'{"format":1,"files":{"a":[1]}}']
)
def test_unreadable_manifest_is_empty(data):
    """A missing or corrupt manifest means 'verify everything', never a crash."""
    assert Manifest() == loads(data)


def rec(path: str, mode: int = MODE_FILE) -> TreeRecord:
    return TreeRecord(path, mode, "0" * 40, 1)


def test_selection_excludes_and_skips():
    """.github/ and .syncignore matches vanish; links, submodules and reserved are reported."""
    records = [
        rec("a.txt"),
        rec(".github/workflows/ci.yml"),
        rec("build/out.bin"),
        rec("keep.log"),
        rec("x.log"),
        rec("link", MODE_LINK),
        rec("vendor/lib", MODE_GITLINK),
        rec(".gitops-sync/manifest.json"),
        rec(".syncignore"),
    ]
    ignore = SyncIgnore("# comment\nbuild/\n*.log\n!keep.log\n")
    desired, skipped = select_desired(records, ignore)
    assert sorted(desired) == [".syncignore", "a.txt", "keep.log"]
    assert {".gitops-sync/manifest.json", "link", "vendor/lib"} == {s.path for s in skipped}


def test_names_azure_files_refuses_are_skipped_when_asked():
    """A name-problem callback turns unrepresentable names into skipped entries."""
    desired, skipped = select_desired(
        [rec("a:b.txt"), rec("ok.txt")], SyncIgnore(None), azure_files_name_problem
    )
    assert list(desired) == ["ok.txt"]
    assert skipped[0].path == "a:b.txt"


@pytest.mark.parametrize(
    ("text", "secret", "leak", "expected"),
    [
        (
            "fetch https://user:tok123@github.com/o/r.git?x=1 failed",
            None,
            "tok123",
            "fetch https://github.com/o/r.git failed",
        ),
        (
            "https://github.com/o/r.git?access_token=abc123",
            None,
            "abc123",
            "https://github.com/o/r.git",
        ),
        ("token ghp_SECRETVALUE here", "ghp_SECRETVALUE", "ghp_SECRETVALUE", "token *** here"),
    ],
    ids=["userinfo", "query", "known-secret"],
)
def test_redact_removes_credentials(text, secret, leak, expected):
    """URL credentials, query strings and known secrets are cut out, and the rest of the
    text is kept as it was."""
    out = redact(text, [secret])
    assert expected == out
    assert leak not in out
