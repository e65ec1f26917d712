"""The workspace download on every store: a directory and Azure Files (the in-process fake)."""

from __future__ import annotations

import io
import logging
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gitops_sync.adapters.azure_files import AzureFilesStore
from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.adapters.git_source import GitSource
from gitops_sync.core.model import MODE_FILE
from gitops_sync.ports import WorkspaceStore
from gitops_sync.sync import sync_workspace
from tests.archive_support import Ctx, auth, live_server
from tests.fakes.azure_files import (  # noqa: F401  (fixtures)
    FakeShare,
    azure_files_share,
    fake_file_service_session,
)
from tests.gitrepo import Repo, expected_files


@pytest.fixture(params=["directory", "azure-files-fake"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkspaceStore]:
    if request.param == "directory":
        yield DirectoryStore(tmp_path / "ws")
    else:
        fake: FakeShare = request.getfixturevalue("azure_files_share")
        yield AzureFilesStore.from_connection_string(fake.connection_string, fake.share)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Repo, str]:
    rng = random.Random(9)
    repo = Repo(tmp_path / "repo")
    repo.write("README.md", "# demo\n")
    repo.write("bin/tool", "#!/bin/sh\nexit 0\n", executable=True)
    repo.write("big/text.log", "".join(f"{i} lorem ipsum dolor\n" for i in range(200_000)))
    repo.write("big/noise.bin", rng.randbytes(3 << 20))
    repo.write("empty", b"")
    return repo, repo.commit("first")


def test_archive_is_the_synced_tree_on_every_store(
    store: WorkspaceStore, repo: tuple[Repo, str], tmp_path: Path
) -> None:
    """The archive served from either store extracts to exactly the synced files."""
    r, commit = repo
    sync_workspace(GitSource(str(r.path), cache_dir=tmp_path / "cache"), commit, store)
    with live_server(Ctx(store)) as base:
        resp = httpx.get(f"{base}/api/workspace/archive", headers=auth(), timeout=60)
    assert resp.status_code == 200
    assert resp.headers["etag"] == f'"{commit}"'
    zf = zipfile.ZipFile(io.BytesIO(resp.content))
    assert zf.testzip() is None
    got = {i.filename: (zf.read(i), bool((i.external_attr >> 16) & 0o100)) for i in zf.infolist()}
    assert got == expected_files(r.path, commit)


def test_ranged_file_reads_on_every_store(
    store: WorkspaceStore, repo: tuple[Repo, str], tmp_path: Path
) -> None:
    """A Range request is served by a ranged read of the store, whole files by a full read."""
    r, commit = repo
    sync_workspace(GitSource(str(r.path), cache_dir=tmp_path / "cache"), commit, store)
    data = expected_files(r.path, commit)["big/noise.bin"][0]
    with live_server(Ctx(store)) as base:
        url = f"{base}/api/workspace/files/big/noise.bin"
        whole = httpx.get(url, headers=auth(), timeout=60)
        part = httpx.get(url, headers={**auth(), "Range": "bytes=1000-1999999"}, timeout=60)
        empty = httpx.get(f"{base}/api/workspace/files/empty", headers=auth())
    assert whole.content == data
    assert (part.status_code, part.content) == (206, data[1000:2_000_000])
    assert (empty.status_code, empty.content) == (200, b"")


def test_a_file_rewritten_behind_the_manifest_fails_the_download(
    store: WorkspaceStore, repo: tuple[Repo, str], tmp_path: Path
) -> None:
    """On either store, bytes that are not the manifest's blob end the transfer unfinished."""
    r, commit = repo
    sync_workspace(GitSource(str(r.path), cache_dir=tmp_path / "cache"), commit, store)
    store.write_file("big/text.log", MODE_FILE, [b"rewritten by hand\n"])
    with live_server(Ctx(store)) as base, httpx.Client(timeout=60) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"{base}/api/workspace/archive", headers=auth())
        changed = client.get(f"{base}/api/workspace/files/big/text.log", headers=auth())
    assert changed.status_code == 409


def test_azure_files_failing_midway_breaks_the_transfer(
    request: pytest.FixtureRequest,
    repo: tuple[Repo, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A share that refuses a read midway ends the download unfinished, logged in one line."""
    r, commit = repo
    share: FakeShare = request.getfixturevalue("azure_files_share")
    store = AzureFilesStore.from_connection_string(share.connection_string, share.share)
    sync_workspace(GitSource(str(r.path), cache_dir=tmp_path / "cache"), commit, store)
    share.service.fail(
        403, "AuthorizationFailure", times=50, method="GET", path_contains="noise.bin"
    )
    caplog.set_level(logging.WARNING, logger="gitops_sync")
    with (
        live_server(Ctx(store)) as base,
        httpx.Client(timeout=60) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.get(f"{base}/api/workspace/archive", headers=auth())
    aborted = [rec for rec in caplog.records if "aborted" in rec.getMessage()]
    assert len(aborted) == 1
    assert aborted[0].exc_info is None
    assert "noise.bin" in aborted[0].getMessage()
