"""Azure Files at the SDK boundary: what goes over the wire, errors, credentials.

Runs on the in-process fake (``tests/fakes/azure_files.py``) with the real SDK client.
"""

from __future__ import annotations

import socket

import pytest

from gitops_sync.adapters.azure_files import AzureFilesStore
from gitops_sync.core.errors import StorageError, UsageError, WorkspaceNotWritable
from gitops_sync.core.model import MODE_FILE
from tests.contract.conftest import fast_retry
from tests.fakes.azure_files import FakeShare


def read_all(store: AzureFilesStore, path: str) -> bytes:
    return b"".join(store.read_chunks(path))


def fake_store(fake: FakeShare, **options) -> AzureFilesStore:
    options.setdefault("retry_policy", fast_retry())
    return AzureFilesStore.from_connection_string(fake.connection_string, fake.share, **options)


def test_azure_listing_downloads_nothing(azure_files_share: FakeShare):
    """``list`` sees sizes and stamps from directory listings alone, without reading a file."""
    store = fake_store(azure_files_share)
    store.check_writable()
    for i in range(5):
        store.write_file(f"d{i}/f.txt", MODE_FILE, [b"x" * i])
    azure_files_share.service.requests.clear()
    listing = store.list()
    assert 5 == len(listing.files)
    ops = {(method, op) for method, op, _path in azure_files_share.service.requests}
    assert {("GET", "list")} == ops


def test_azure_listing_follows_pages(azure_files_share: FakeShare):
    """A directory listed over several pages is seen whole."""
    store = fake_store(azure_files_share)
    store.check_writable()
    for i in range(7):
        store.write_file(f"many/f{i}.txt", MODE_FILE, [b"x"])
    azure_files_share.service.page_size = 2
    assert {f"many/f{i}.txt" for i in range(7)} == set(store.list().files)


def test_azure_case_insensitive_and_case_preserving(azure_files_share: FakeShare):
    """The store reports case-insensitivity and the Azure Files name rules."""
    store = fake_store(azure_files_share)
    assert store.case_insensitive is True
    assert store.name_problem("ok/name.txt") is None
    assert store.name_problem("bad:name") is not None


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (403, "AuthorizationPermissionMismatch", WorkspaceNotWritable),
        (503, "ServerBusy", StorageError),
        (500, "InternalError", StorageError),
    ],
    ids=["forbidden", "throttled", "server-error"],
)
def test_azure_errors_are_translated(azure_files_share: FakeShare, status, code, error):
    """SDK errors surface as the project's errors, after the SDK's own retries."""
    store = fake_store(azure_files_share)
    store.check_writable()
    azure_files_share.service.fail(status, code, times=10, method="PUT")
    with pytest.raises(error) as info:
        store.write_file("f.txt", MODE_FILE, [b"x"])
    assert code in str(info.value)
    assert isinstance(info.value.__cause__, Exception)


def test_azure_transient_errors_are_retried_by_the_sdk(azure_files_share: FakeShare):
    """A 503 or two is absorbed by the SDK's retry policy and the write succeeds."""
    store = fake_store(azure_files_share)
    store.check_writable()
    azure_files_share.service.fail(503, "ServerBusy", times=2, method="PUT")
    store.write_file("f.txt", MODE_FILE, [b"x"])
    assert b"x" == read_all(store, "f.txt")


def test_azure_network_failure_is_transient(azure_files_share: FakeShare):
    """A service nobody answers on is a StorageError that names no secret."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = azure_files_share.connection_string.replace(
        f":{azure_files_share.service.port}/", f":{port}/"
    )
    store = AzureFilesStore.from_connection_string(
        conn, "ws", retry_policy=fast_retry(total=0), connection_timeout=2
    )
    with pytest.raises(StorageError) as info:
        store.check_writable()
    assert azure_files_share.service.key not in str(info.value)


def test_azure_errors_never_show_a_sas_token(azure_files_share: FakeShare):
    """With a SAS in the URL, the error message carries the path but not the signature."""
    sas = "sv=2024-11-04&sig=TOPSECRETSIGNATURE"
    store = AzureFilesStore(
        f"{azure_files_share.service.endpoint}?{sas}",
        azure_files_share.share,
        retry_policy=fast_retry(total=0),
    )
    azure_files_share.service.fail(403, "AuthenticationFailed", times=5)
    with pytest.raises(WorkspaceNotWritable) as info:
        store.check_writable()
    assert "TOPSECRETSIGNATURE" not in str(info.value)
    assert azure_files_share.share in str(info.value)


@pytest.mark.parametrize(
    "conn",
    [
        "UseDevelopmentStorage=true",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        "AccountName=;nonsense",
    ],
    ids=["development-shortcut", "azurite-without-files", "malformed"],
)
def test_azure_refuses_connections_without_a_file_service(conn: str):
    """A connection string with no Azure Files behind it is a UsageError, not a stray request."""
    with pytest.raises(UsageError):
        AzureFilesStore.from_connection_string(conn, "ws")


def test_azure_identity_uses_the_backup_intent():
    """With a token credential (managed identity) requests carry the intent Azure Files needs."""

    class TokenCredential:  # the shape azure-identity's credentials have
        def get_token(self, *scopes, **kwargs):
            raise AssertionError("no request is made by building a store")

    store = AzureFilesStore.from_account_name("acct", "ws", TokenCredential())
    assert "https://acct.file.core.windows.net/ws" == store.describe()
    assert "backup" == store._share.file_request_intent
