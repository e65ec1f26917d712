"""The workspace routes over real HTTP (uvicorn, 127.0.0.1): archive, listing, files, keys, race."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import socket
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from gitops_sync.adapters.dir_store import DirectoryStore
from tests.archive_support import API_KEY, Ctx, auth, live_server, sync
from tests.gitrepo import Repo, expected_files

ROUTES = ["/api/workspace/archive", "/api/workspace/files", "/api/workspace/files/README.md"]


@pytest.fixture
def synced(tmp_path: Path) -> tuple[Repo, str, Path]:
    repo = Repo(tmp_path / "repo")
    repo.write("README.md", "# demo\n" * 40)
    repo.write("src/a.py", "".join(f"x = {i}\n" for i in range(2000)))
    repo.write("src2/b.py", "y = 1\n")
    repo.write("tool.sh", "#!/bin/sh\n", executable=True)
    repo.write("img/pic.png", b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(5000))
    commit = repo.commit("first")
    ws = tmp_path / "ws"
    sync(repo.path, commit, ws, tmp_path / "cache")
    return repo, commit, ws


def test_archive_download_is_the_workspace_with_etag_and_name(synced) -> None:  # type: ignore[no-untyped-def]
    """GET archive streams a ZIP of exactly the synced files, named after repo and commit."""
    repo, commit, ws = synced
    with live_server(Ctx(DirectoryStore(ws))) as base:
        r = httpx.get(f"{base}/api/workspace/archive", headers=auth())
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["etag"] == f'"{commit}"'
    assert r.headers["content-disposition"] == (
        f'attachment; filename="demo-repo-{commit[:12]}.zip"'
    )
    assert r.headers.get("transfer-encoding") == "chunked"  # streamed, not buffered
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    got = {i.filename: (zf.read(i), bool((i.external_attr >> 16) & 0o100)) for i in zf.infolist()}
    assert got == expected_files(repo.path, commit)


def test_archive_if_none_match_gives_304(synced) -> None:  # type: ignore[no-untyped-def]
    """A client holding the current commit's ETag gets 304 and no body; an old one gets 200."""
    _repo, commit, ws = synced
    with live_server(Ctx(DirectoryStore(ws))) as base:
        same = httpx.get(
            f"{base}/api/workspace/archive", headers={**auth(), "If-None-Match": f'"{commit}"'}
        )
        other = httpx.get(
            f"{base}/api/workspace/archive", headers={**auth(), "If-None-Match": '"0000"'}
        )
    assert (same.status_code, same.content, same.headers["etag"]) == (304, b"", f'"{commit}"')
    assert other.status_code == 200


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, {"x-functions-key": "wrong"}, {"x-functions-key": ""}, {"x-functions-key": API_KEY + "x"}],
    ids=["missing", "wrong", "empty", "longer"],
)
def test_missing_or_wrong_key_gives_a_bare_401(synced, route: str, headers: dict) -> None:  # type: ignore[no-untyped-def]
    """Without the right key every workspace route answers 401 with an empty body."""
    _repo, _commit, ws = synced
    with live_server(Ctx(DirectoryStore(ws))) as base:
        r = httpx.get(base + route, headers=headers)
    assert (r.status_code, r.content) == (401, b"")


def test_key_in_code_query_parameter_is_accepted(synced) -> None:  # type: ignore[no-untyped-def]
    """The key may come as ``?code=``, as with Azure Functions."""
    _repo, _commit, ws = synced
    with live_server(Ctx(DirectoryStore(ws))) as base:
        r = httpx.get(f"{base}/api/workspace/files/README.md", params={"code": API_KEY})
    assert r.status_code == 200


@pytest.mark.parametrize("route", ROUTES)
def test_never_synced_workspace_answers_json_404(tmp_path: Path, route: str) -> None:
    """Before the first sync every workspace route says so in JSON, never a 500."""
    with live_server(Ctx(DirectoryStore(tmp_path / "empty"))) as base:
        r = httpx.get(base + route, headers=auth())
    assert r.status_code == 404
    assert "not been synced" in r.json()["error"]


def test_listing_by_prefix_gives_sizes_and_blob_ids(synced) -> None:  # type: ignore[no-untyped-def]
    """The listing filters by string prefix; a trailing slash keeps "src/" from matching src2."""
    repo, commit, ws = synced
    blob = repo.git("rev-parse", f"{commit}:src/a.py")
    with live_server(Ctx(DirectoryStore(ws))) as base:
        dir_only = httpx.get(
            f"{base}/api/workspace/files", params={"prefix": "src/"}, headers=auth()
        )
        loose = httpx.get(f"{base}/api/workspace/files", params={"prefix": "src"}, headers=auth())
        everything = httpx.get(f"{base}/api/workspace/files", headers=auth())
        bad = httpx.get(f"{base}/api/workspace/files", params={"prefix": "../"}, headers=auth())
    size = (ws / "src/a.py").stat().st_size
    assert dir_only.json() == {
        "commit": commit,
        "prefix": "src/",
        "files": [{"path": "src/a.py", "size": size, "blob_id": blob, "executable": False}],
    }
    assert [f["path"] for f in loose.json()["files"]] == ["src/a.py", "src2/b.py"]
    assert [f["path"] for f in everything.json()["files"]] == sorted(
        expected_files(repo.path, commit)
    )
    assert bad.status_code == 400


def test_file_bytes_with_content_type_etag_and_304(synced) -> None:  # type: ignore[no-untyped-def]
    """One file comes whole with its MIME type and blob-id ETag; that ETag then gives 304."""
    repo, commit, ws = synced
    with live_server(Ctx(DirectoryStore(ws))) as base:
        r = httpx.get(f"{base}/api/workspace/files/img/pic.png", headers=auth())
        again = httpx.get(
            f"{base}/api/workspace/files/img/pic.png",
            headers={**auth(), "If-None-Match": r.headers["etag"]},
        )
    assert r.status_code == 200
    assert r.content == (ws / "img/pic.png").read_bytes()
    assert r.headers["content-type"] == "image/png"
    assert r.headers["etag"] == f'"{repo.git("rev-parse", f"{commit}:img/pic.png")}"'
    assert r.headers["content-length"] == str(len(r.content))
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("range_header", "status", "start", "end"),
    [("bytes=0-9", 206, 0, 10), ("bytes=100-", 206, 100, None), ("bytes=-5", 206, -5, None),
     ("bytes=0-0,5-6", 200, 0, None), ("bytes=99999999-", 416, 0, 0)],
    ids=["head", "tail-from", "suffix", "multi-ignored", "unsatisfiable"],
)  # fmt: skip
def test_file_ranges(synced, range_header: str, status: int, start: int, end: int | None) -> None:  # type: ignore[no-untyped-def]
    """Single ranges give 206 with Content-Range; several give the whole file; past the end 416."""
    _repo, _commit, ws = synced
    data = (ws / "src/a.py").read_bytes()
    with live_server(Ctx(DirectoryStore(ws))) as base:
        r = httpx.get(
            f"{base}/api/workspace/files/src/a.py", headers={**auth(), "Range": range_header}
        )
    assert r.status_code == status
    if status == 416:
        assert r.headers["content-range"] == f"bytes */{len(data)}"
        return
    assert r.content == data[start:end]
    if status == 206:
        first = start % len(data)
        assert (
            r.headers["content-range"] == f"bytes {first}-{first + len(r.content) - 1}/{len(data)}"
        )


def test_reserved_and_unknown_files_are_404(synced) -> None:  # type: ignore[no-untyped-def]
    """The manifest, other bookkeeping and files the sync did not write are all 404."""
    _repo, _commit, ws = synced
    (ws / "stray.txt").write_text("not synced")
    with live_server(Ctx(DirectoryStore(ws))) as base:
        answers = [
            httpx.get(f"{base}/api/workspace/files/{p}", headers=auth()).status_code
            for p in (".gitops-sync/manifest.json", ".GITOPS-SYNC/manifest.json", "stray.txt",
                      "nope", "src")
        ]  # fmt: skip
    assert answers == [404] * 5


@pytest.mark.slow
def test_a_sync_landing_mid_download_breaks_the_transfer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sync of another commit during a slow download fails it; it never yields a valid ZIP."""
    rng = random.Random(5)
    repo = Repo(tmp_path / "repo")
    repo.git("config", "core.compression", "0")  # random bytes: deflating them is wasted time
    for i in range(60):
        repo.write(f"blobs/{i:02d}.bin", rng.randbytes(1 << 20))
    first = repo.commit("first")
    for i in range(60):
        repo.write(f"blobs/{i:02d}.bin", rng.randbytes(1 << 20))
    second = repo.commit("second")
    ws = tmp_path / "ws"
    sync(repo.path, first, ws, tmp_path / "cache")

    received = bytearray()
    caplog.set_level(logging.WARNING, logger="gitops_sync")
    with (
        live_server(Ctx(DirectoryStore(ws))) as base,
        httpx.Client(timeout=30) as client,
        client.stream("GET", f"{base}/api/workspace/archive", headers=auth()) as r,
    ):
        assert r.headers["etag"] == f'"{first}"'
        chunks = r.iter_raw()
        received += next(chunks)  # the server is now ahead by at most the socket buffers
        synced_done = threading.Event()
        # The real engine, in another thread, while the download is paused.
        t = threading.Thread(
            target=lambda: (sync(repo.path, second, ws, tmp_path / "cache"), synced_done.set())
        )
        t.start()
        t.join()
        assert synced_done.is_set()
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in chunks:
                received += chunk
        after = client.get(f"{base}/api/workspace/archive", headers=auth())

    assert len(received) < 60 << 20
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(received)))
    assert "aborted" in caplog.text
    assert after.headers["etag"] == f'"{second}"'
    zf = zipfile.ZipFile(io.BytesIO(after.content))
    assert zf.read("blobs/59.bin") == (ws / "blobs/59.bin").read_bytes()


def _stream_threads() -> set[int | None]:
    return {t.ident for t in threading.enumerate() if t.name == "gitops-sync-stream"}


def _open_in(root: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(root)):
                found.append(target)
    return found


def test_a_client_that_hangs_up_stops_the_producer(tmp_path: Path) -> None:
    """When the client goes away mid-archive, the producer thread ends and closes its files."""
    rng = random.Random(8)
    repo = Repo(tmp_path / "repo")
    repo.git("config", "core.compression", "0")
    for i in range(40):
        repo.write(f"b/{i:02d}.bin", rng.randbytes(1 << 20))
    commit = repo.commit("first")
    ws = tmp_path / "ws"
    sync(repo.path, commit, ws, tmp_path / "cache")
    before = _stream_threads()  # another test's, if any, are not this one's concern
    with live_server(Ctx(DirectoryStore(ws))) as base:
        host, port = base.removeprefix("http://").split(":")
        # A raw socket with a small receive window: with the default (autotuned up
        # to tens of MB here) the kernel's buffers could take the whole 40 MB
        # archive and the producer would be done before the client hangs up.
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            sock.settimeout(30)
            sock.connect((host, int(port)))
            headers = "".join(f"{k}: {v}\r\n" for k, v in auth().items())
            sock.sendall(
                f"GET /api/workspace/archive HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode()
            )
            got = sock.recv(4096)
            assert got.startswith(b"HTTP/1.1 200")
            # Headers go out before the body is produced: read until the producer
            # has sent some of the body, so it is known to be running.
            while len(got) < 1 << 20:
                got += sock.recv(1 << 16)
            ours = _stream_threads() - before
            assert len(ours) == 1
        # The connection is closed; the server notices on its next write.
        deadline = time.monotonic() + 30
        while (ours & _stream_threads() or _open_in(ws)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (ours & _stream_threads(), _open_in(ws)) == (set(), [])


def test_connection_parameter_selects_another_workspace(synced, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``?connection=ID`` serves that connection's workspace, named after its repository."""
    _repo, commit, ws = synced
    other = Repo(tmp_path / "other-repo")
    other.write("only-here.txt", "other\n")
    other_commit = other.commit("other")
    other_ws = tmp_path / "other-ws"
    sync(other.path, other_commit, other_ws, tmp_path / "cache")
    ctx = Ctx(DirectoryStore(ws))
    ctx.connections.extra["second"] = ("octo/second", DirectoryStore(other_ws))
    with live_server(ctx) as base:
        second = httpx.get(
            f"{base}/api/workspace/archive", params={"connection": "second"}, headers=auth()
        )
        default = httpx.get(
            f"{base}/api/workspace/archive", params={"connection": "default"}, headers=auth()
        )
        unknown = httpx.get(
            f"{base}/api/workspace/files", params={"connection": "nope"}, headers=auth()
        )
        file_ = httpx.get(
            f"{base}/api/workspace/files/only-here.txt",
            params={"connection": "second"},
            headers=auth(),
        )
    assert second.headers["etag"] == f'"{other_commit}"'
    assert f'filename="second-{other_commit[:12]}.zip"' in second.headers["content-disposition"]
    assert zipfile.ZipFile(io.BytesIO(second.content)).namelist() == ["only-here.txt"]
    assert default.headers["etag"] == f'"{commit}"'
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no such connection"})
    assert (file_.status_code, file_.content) == (200, b"other\n")


def test_a_same_size_edit_never_arrives_as_a_complete_file(synced) -> None:  # type: ignore[no-untyped-def]
    """A file edited behind the manifest (same size) fails its transfer instead of completing."""
    _repo, _commit, ws = synced
    target = ws / "src/a.py"
    data = target.read_bytes()
    target.write_bytes(data[:-2] + b"#\n")
    assert len(target.read_bytes()) == len(data)
    with (
        live_server(Ctx(DirectoryStore(ws))) as base,
        httpx.Client(timeout=30) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.get(f"{base}/api/workspace/files/src/a.py", headers=auth())
