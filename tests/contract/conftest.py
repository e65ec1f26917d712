"""The workspace stores every contract test runs against, as one parametrized fixture.

``directory``: ``DirectoryStore`` on a tmp dir; ``azure-files-fake``: ``AzureFilesStore`` on
the in-process fake; ``azure-files-real``: on a real share, when
``GITOPS_SYNC_TEST_AZURE_FILES_CONNECTION_STRING`` is set (a fresh share per test, deleted after).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.fileshare import LinearRetry, ShareClient

from gitops_sync.adapters.azure_files import AzureFilesStore
from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.ports import WorkspaceStore
from tests.fakes.azure_files import (  # noqa: F401  (fixtures)
    FakeFileService,
    FakeShare,
    azure_files_share,
    fake_file_service_session,
)

REAL_ENV = "GITOPS_SYNC_TEST_AZURE_FILES_CONNECTION_STRING"
STORES = ["directory", "azure-files-fake", "azure-files-real"]


def fast_retry(total: int = 3) -> LinearRetry:
    """The SDK's own retry policy, without the waits (tests are never timed)."""
    return LinearRetry(backoff=0, random_jitter_range=0, retry_total=total)


@dataclass
class StoreCase:
    """A store under test, and what a test may need to reach behind it."""

    kind: str
    store: WorkspaceStore
    root: Path | None = None  # the directory store's folder
    fake: FakeShare | None = None  # the fake service behind an Azure Files store


@pytest.fixture(params=STORES)
def store_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreCase]:
    """Each workspace store in turn, empty and not yet checked writable."""
    kind = request.param
    if kind == "directory":
        root = tmp_path / "workspace"
        yield StoreCase(kind, DirectoryStore(root), root=root)
    elif kind == "azure-files-fake":
        fake: FakeShare = request.getfixturevalue("azure_files_share")
        store = AzureFilesStore.from_connection_string(
            fake.connection_string, fake.share, retry_policy=fast_retry()
        )
        yield StoreCase(kind, store, fake=fake)
    else:
        conn = os.environ.get(REAL_ENV)
        if not conn:
            pytest.skip(f"no real Azure Files share: set {REAL_ENV} to run against one")
        share = f"gitops-sync-test-{uuid.uuid4().hex[:12]}"
        yield StoreCase(kind, AzureFilesStore.from_connection_string(conn, share))
        with contextlib.suppress(ResourceNotFoundError):  # some tests never create it
            ShareClient.from_connection_string(conn, share).delete_share()


@pytest.fixture
def store(store_case: StoreCase) -> WorkspaceStore:
    """The store of ``store_case``, made writable."""
    store_case.store.check_writable()
    return store_case.store
