"""Hostile paths never read outside the workspace: an attack table and fuzzers (pure, HTTP)."""

from __future__ import annotations

import http.client
import os
import posixpath
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.core.paths import safe_client_path
from tests.archive_support import Ctx, auth, live_server, sync
from tests.gitrepo import Repo

SECRET = b"TOPSECRET-do-not-serve"

# (request target after /api/workspace/files/, why it is hostile)
HOSTILE = [
    ("../secret.txt", "dot-dot"),
    ("src/../../secret.txt", "inner dot-dot"),
    ("..%2fsecret.txt", "encoded slash"),
    ("%2e%2e/secret.txt", "encoded dots"),
    ("%2e%2e%2fsecret.txt", "all encoded"),
    ("%252e%252e%252fsecret.txt", "double-encoded"),
    ("%25252e%25252e%25252fsecret.txt", "triple-encoded"),
    ("src/%2e%2e/%2e%2e/secret.txt", "encoded inner dot-dot"),
    ("%2fetc%2fpasswd", "encoded absolute"),
    ("/etc/passwd", "absolute"),
    ("//etc/passwd", "double slash absolute"),
    ("..%5csecret.txt", "encoded backslash"),
    ("..\\secret.txt", "backslash"),
    ("src%5c..%5c..%5csecret.txt", "windows traversal"),
    ("README.md%00.png", "NUL"),
    ("README.md%2500", "encoded NUL"),
    ("%0a../secret.txt", "control character"),
    ("%c0%ae%c0%ae/secret.txt", "overlong UTF-8 dots"),
    ("link-to-secret", "symlink to a file outside"),
    ("linked-dir/secret.txt", "symlinked directory"),
    ("src/linked", "symlink inside a synced directory"),
    (".gitops-sync/manifest.json", "reserved"),
    ("%2egitops-sync/manifest.json", "reserved, encoded"),
    (".GitOps-Sync/manifest.json", "reserved, other case"),
    ("./.gitops-sync/manifest.json", "reserved behind dot"),
    ("x" * 5000, "very long"),
    ("", "empty"),
]


def _make_workspace(tmp_path: Path) -> Path:
    repo = Repo(tmp_path / "repo")
    repo.write("README.md", "# hello\n")
    repo.write("src/a.py", "print('a')\n")
    commit = repo.commit("first")
    ws = tmp_path / "ws"
    sync(repo.path, commit, ws, tmp_path / "cache")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET)
    os.symlink(tmp_path / "secret.txt", ws / "link-to-secret")
    os.symlink(tmp_path / "outside", ws / "linked-dir")
    os.symlink(tmp_path / "secret.txt", ws / "src" / "linked")
    return ws


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return _make_workspace(tmp_path)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the whole table (read-only tests): its base URL."""
    ws = _make_workspace(tmp_path_factory.mktemp("hostile"))
    with live_server(Ctx(DirectoryStore(ws))) as base:
        yield base


def _get(base: str, target: str) -> tuple[int, bytes]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        # http.client sends the target verbatim: no client-side normalisation of "..".
        conn.request("GET", "/api/workspace/files/" + target, headers=auth())
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("target", [t for t, _ in HOSTILE], ids=[why for _, why in HOSTILE])
def test_hostile_path_is_refused_over_http(served: str, target: str) -> None:
    """Each hostile path gets 400 or 404 and never a byte from outside the workspace."""
    status, body = _get(served, target)
    assert status in (400, 404)
    assert SECRET not in body


def test_a_synced_directory_swapped_for_a_link_is_not_followed(workspace: Path) -> None:
    """A synced file whose parent directory became a link to outside is 404, never read there."""
    outside = workspace.parent / "outside"
    (outside / "a.py").write_bytes(SECRET)
    os.rename(workspace / "src", workspace.parent / "src-moved")
    os.symlink(outside, workspace / "src")
    with live_server(Ctx(DirectoryStore(workspace))) as base:
        status, body = _get(base, "src/a.py")
        ok_status, ok_body = _get(base, "README.md")
    assert (status, SECRET in body) == (404, False)
    assert (ok_status, ok_body) == (200, b"# hello\n")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a/b.txt", "a/b.txt"), ("./a//b.txt", "a/b.txt"), ("dir/", "dir"), ("", ""),
     ("a%20b.txt", "a%20b.txt"), ("100%.txt", "100%.txt"), ("..", None), ("a/..", None),
     ("%2e%2e", None), ("a%2f..%2f..", None), ("%252e%252e", None), ("/a", None),
     ("a\\b", None), ("a\x00", None), (".gitops-sync", None), (".GITOPS-SYNC/x", None),
     ("%2Egitops-sync", None), ("a%5cb", None), ("a%00", None), ("%" + "25" * 6 + "2e", None),
     ("./%2f", None), ("%2f", None)],
)  # fmt: skip
def test_safe_client_path_table(raw: str, expected: str | None) -> None:
    """Safe names are normalised; literal '%' names are kept; any decodable attack is refused."""
    assert safe_client_path(raw) == expected


PIECES = ["..", ".", "/", "a", "b.txt", "\\", "\x00", "%", "%2e", "%2E", "%2f", "%2F", "%25",
          "%5c", "%00", "2e", ".gitops-sync", ".GITOPS-SYNC", "~", ":", "é"]  # fmt: skip
hostile_text = st.lists(st.sampled_from(PIECES), max_size=10).map("".join) | st.text(max_size=40)


def _inside(path: str) -> bool:
    root = "/ws"
    full = posixpath.normpath(posixpath.join(root, path)) if path else root
    return full == root or full.startswith(root + "/")


@settings(max_examples=400, deadline=None)
@given(hostile_text)
def test_safe_client_path_fuzz(raw: str) -> None:
    """Whatever the input, an accepted path stays inside, is canonical, and survives decoding."""
    got = safe_client_path(raw)
    if got is None:
        return
    assert safe_client_path(got) == got  # canonical: accepting is idempotent
    forms = [got]
    for _ in range(4):
        forms.append(unquote(forms[-1]))
    for form in forms:
        assert _inside(form)
        assert "\\" not in form and "\x00" not in form
        assert ".." not in form.split("/")
        assert form.split("/", 1)[0].lower() != ".gitops-sync"


def test_http_fuzz_never_leaks_and_never_errors(served: str) -> None:
    """Random hostile requests answer 200 only for synced files, else 400/404, never the secret."""
    synced = {"README.md": b"# hello\n", "src/a.py": b"print('a')\n"}

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(hostile_text | st.sampled_from([t for t, _ in HOSTILE] + list(synced)))
    def check(raw: str) -> None:
        # Only what HTTP cannot carry literally is encoded; '%', '/', '.', '\' go as they are.
        target = quote(raw, safe="/%.\\~:!$&'()*+,;=@-_")
        status, body = _get(served, target)
        assert status in (200, 400, 404), (raw, status)
        assert SECRET not in body
        if status == 200:
            assert body == synced[safe_client_path(unquote(target)) or ""]

    check()
