"""Function packages in Blob Storage, by content: ``<name>/<sha256>.zip``, ``apps/<key>.zip``.

A name is its content, so an upload of a name that exists sends no bytes, and
a reader checks the bytes' sha256 (kept in the blob's metadata and in the
version row) before it trusts them. SDK errors become ``StorageError`` here.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from ..core.errors import StorageError
from ..core.redact import redact


class PackageMissing(StorageError):
    """The package blob is not there (pruned, or never uploaded)."""

    permanent = True


class PackageCorrupt(StorageError):
    """The blob's bytes do not have the sha256 they were stored under."""

    permanent = True


def _fail(exc: AzureError, what: str) -> StorageError:
    message = getattr(exc, "message", None) or str(exc)
    first = redact(str(message)).splitlines()[0] if message else type(exc).__name__
    return StorageError(f"blob storage: {what} failed: {first}")


def package_blob_name(function: str, sha256: str) -> str:
    return f"{function}/{sha256}.zip"


def app_blob_name(key: str) -> str:
    return f"apps/{key}.zip"


class PackageBlobs:
    """The package container; created on first use."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container
        self._created = False

    @classmethod
    def from_connection_string(cls, conn: str, container: str) -> PackageBlobs:
        service = BlobServiceClient.from_connection_string(conn)
        return cls(service.get_container_client(container))

    @classmethod
    def from_account(cls, account: str, credential: Any, container: str) -> PackageBlobs:
        service = BlobServiceClient(f"https://{account}.blob.core.windows.net", credential)
        return cls(service.get_container_client(container))

    def _ensure_container(self) -> None:
        if self._created:
            return
        try:
            with contextlib.suppress(ResourceExistsError):
                self.container.create_container()
        except AzureError as exc:
            raise _fail(exc, "creating the package container") from exc
        self._created = True

    def url(self, name: str) -> str:
        """The blob's URL, never with a SAS (run-from-package reads it with an identity)."""
        return self.container.get_blob_client(name).url.split("?", 1)[0]

    def exists(self, name: str) -> bool:
        self._ensure_container()
        try:
            return bool(self.container.get_blob_client(name).exists())
        except AzureError as exc:
            raise _fail(exc, f"checking {name}") from exc

    def stored_sha256(self, name: str) -> str | None:
        """The sha256 of the bytes stored under ``name``, or None when there is no such blob."""
        self._ensure_container()
        try:
            props = self.container.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _fail(exc, f"reading {name}") from exc
        return (props.metadata or {}).get("sha256")

    def upload(self, name: str, data: bytes, *, known_absent: bool = False) -> bool:
        """Store ``data`` under ``name`` unless it is already there; True if bytes were sent.

        ``known_absent``: the caller has just looked, so skip asking again (the upload
        itself still refuses to overwrite).
        """
        if not known_absent and self.exists(name):
            return False
        digest = hashlib.sha256(data).hexdigest()
        try:
            self.container.get_blob_client(name).upload_blob(
                data,
                overwrite=False,
                metadata={"sha256": digest},
                content_settings=ContentSettings(content_type="application/zip"),
            )
        except ResourceExistsError:
            return False  # a concurrent writer stored the same content first
        except AzureError as exc:
            raise _fail(exc, f"uploading {name}") from exc
        return True

    def download(self, name: str, sha256: str | None = None) -> bytes:
        """The blob's bytes, checked against ``sha256`` (or the digest stored with it)."""
        self._ensure_container()
        try:
            downloader = self.container.get_blob_client(name).download_blob()
            data = downloader.readall()
            stored = (downloader.properties.metadata or {}).get("sha256")
        except ResourceNotFoundError as exc:
            raise PackageMissing(f"package {name} is not in the package container") from exc
        except AzureError as exc:
            raise _fail(exc, f"downloading {name}") from exc
        expected = sha256 or stored
        actual = hashlib.sha256(data).hexdigest()
        if expected is None or actual != expected:
            raise PackageCorrupt(
                f"package {name} does not match its sha256 (expected {expected}, got {actual})"
            )
        return data

    def delete(self, name: str) -> None:
        """Delete; succeeds when already gone."""
        self._ensure_container()
        try:
            with contextlib.suppress(ResourceNotFoundError):
                self.container.get_blob_client(name).delete_blob()
        except AzureError as exc:
            raise _fail(exc, f"deleting {name}") from exc

    def names(self, prefix: str = "") -> list[str]:
        self._ensure_container()
        try:
            return sorted(b.name for b in self.container.list_blobs(name_starts_with=prefix))
        except AzureError as exc:
            raise _fail(exc, "listing packages") from exc
