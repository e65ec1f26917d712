"""Activation on DEPLOY_TARGET=functionapp against the ARM fake, with the package container
in memory and in a real Azurite: settings written, triggers synced, verified, rolled back."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from gitops_sync.core.appgen import AppPackage, build_app_package
from gitops_sync.core.errors import UsageError
from gitops_sync.deploy.functionapp import (
    RUN_FROM_PACKAGE,
    RUN_FROM_PACKAGE_IDENTITY,
    ActivationResult,
    activate_functionapp,
)
from tests.fakes.function_app import FakeFunctionApp, MemoryBlobs
from tests.function_packages import function_package

IDENTITY = (
    "/subscriptions/0000/resourceGroups/rg/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/packages-reader"
)
OLD_URL = "https://packages.blob.core.windows.net/function-packages/apps/old.zip"
PREVIOUS = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "DB_PASSWORD": "hunter2-very-secret",
    RUN_FROM_PACKAGE: OLD_URL,
    RUN_FROM_PACKAGE_IDENTITY: IDENTITY,
}


@dataclass
class AzuriteBlobs:
    """The package container in a real Azurite, through the storage SDK."""

    container: ContainerClient
    uploads: list[str] = field(default_factory=list)

    def exists(self, name: str) -> bool:
        return self.container.get_blob_client(name).exists()

    def upload(self, name: str, data: bytes) -> None:
        self.uploads.append(name)
        self.container.upload_blob(name, data, overwrite=False)

    def url_for(self, name: str) -> str:
        return self.container.get_blob_client(name).url

    def read_url(self, url: str) -> bytes | None:
        prefix = self.container.url.rstrip("/") + "/"
        if not url.startswith(prefix):
            return None  # another storage account: not readable here
        blob = self.container.get_blob_client(url[len(prefix) :])
        return blob.download_blob().readall() if blob.exists() else None


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["memory", pytest.param("azurite", marks=pytest.mark.azurite)])
def blobs(request: pytest.FixtureRequest) -> Iterator[MemoryBlobs | AzuriteBlobs]:
    if request.param == "memory":
        yield MemoryBlobs()
        return
    storage = request.getfixturevalue("storage")
    service = BlobServiceClient.from_connection_string(storage)
    container = service.get_container_client(f"pkgs-{uuid.uuid4().hex}")
    container.create_container()
    yield AzuriteBlobs(container)
    container.delete_container()


def _app(version: str = "1") -> AppPackage:
    return build_app_package(
        [function_package("hello", {"main.py": f"def handle(e, c):\n    return {version}\n"})]
    )


def _target(blobs: MemoryBlobs | AzuriteBlobs, **faults: object) -> FakeFunctionApp:
    return FakeFunctionApp(
        read_package=blobs.read_url, identity_id=IDENTITY, settings=dict(PREVIOUS), **faults
    )  # type: ignore[arg-type]


def _activate(
    fake: FakeFunctionApp,
    blobs: MemoryBlobs | AzuriteBlobs,
    app: AppPackage,
    last_key: str | None = None,
    clock: FakeClock | None = None,
) -> ActivationResult:
    clock = clock or FakeClock()
    return activate_functionapp(
        fake, blobs, app, identity_id=IDENTITY, blob_url_for=blobs.url_for, last_key=last_key,
        timeout_s=60, poll_interval_s=2, clock=clock, sleep=clock.sleep,
    )  # fmt: skip


def test_activation_points_the_app_at_the_package_and_keeps_every_other_setting(blobs):
    """The package is uploaded, the settings written with the blob URL (no query) and the
    identity, every other setting kept; triggers are synced and the app serves the new key."""
    fake, app = _target(blobs), _app()
    result = _activate(fake, blobs, app)
    assert ("activated", True, None) == (result.outcome, result.uploaded, result.reason)
    assert [app.blob_name] == blobs.uploads
    url = blobs.url_for(app.blob_name)
    assert {**PREVIOUS, RUN_FROM_PACKAGE: url, RUN_FROM_PACKAGE_IDENTITY: IDENTITY} == fake.settings
    assert "?" not in fake.settings[RUN_FROM_PACKAGE]
    assert ["get_app_settings", "put_app_settings", "sync_triggers", "default_host_name",
            "probe_package_key"] == fake.calls  # fmt: skip
    assert app.key == fake.serving


def test_nothing_is_called_when_the_key_did_not_change(blobs):
    """The same set of active versions as last time: no ARM call, no upload, nothing."""
    fake, app = _target(blobs), _app()
    result = _activate(fake, blobs, app, last_key=app.key)
    assert ("unchanged", [], []) == (result.outcome, fake.calls, blobs.uploads)


def test_a_package_already_stored_is_not_uploaded_again(blobs):
    """Going back to an app package stored before sends no bytes."""
    fake, one, two = _target(blobs), _app("1"), _app("2")
    assert _activate(fake, blobs, one).ok and _activate(fake, blobs, two, one.key).ok
    result = _activate(fake, blobs, one, two.key)
    assert ("activated", False, [one.blob_name, two.blob_name]) == (
        result.outcome, result.uploaded, blobs.uploads
    )  # fmt: skip
    assert one.key == fake.serving


def test_a_rerun_after_a_crash_completes_without_rewriting_settings(blobs):
    """Killed after the settings write but before the key was recorded: the next run finds
    the package stored and the settings in place, writes nothing, and verifies."""
    fake, app = _target(blobs), _app()
    assert _activate(fake, blobs, app).ok
    fake.calls.clear()
    result = _activate(fake, blobs, app, last_key=None)  # the key was never recorded
    assert ("activated", False) == (result.outcome, result.uploaded)
    assert ["get_app_settings", "sync_triggers", "default_host_name", "probe_package_key"] == (
        fake.calls
    )


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ({"fail_puts": 1}, "writing app settings failed"),
        ({"fail_sync": True}, "syncing triggers failed"),
        ({"stuck": True}, "did not serve package"),
    ],
    ids=["settings-put-fails", "trigger-sync-fails", "never-serves-new-key"],
)
def test_a_failed_activation_puts_the_previous_settings_back_exactly(blobs, faults, reason):
    """On a failed step or a timeout, the previous settings are written back unchanged."""
    fake = _target(blobs, **faults)
    result = _activate(fake, blobs, _app())
    assert ("failed", True) == (result.outcome, result.restored)
    assert result.reason is not None and reason in result.reason
    assert PREVIOUS == fake.settings
    assert PREVIOUS == fake.puts[-1]


def test_timeout_restarts_once_then_gives_up(blobs):
    """An app that never serves the new key is restarted once, halfway, then rolled back."""
    fake, clock = _target(blobs, stuck=True), FakeClock()
    result = _activate(fake, blobs, _app(), clock=clock)
    assert (1, False) == (fake.calls.count("restart"), result.ok)
    assert 60 <= clock.now - 1000.0 < 70


def test_an_app_that_loads_the_package_only_on_restart_is_activated(blobs):
    """If the settings change is not picked up, the halfway restart makes the app load it."""
    fake, app = _target(blobs, loads_only_on_restart=True), _app()
    result = _activate(fake, blobs, app)
    assert ("activated", 1, app.key) == (result.outcome, fake.calls.count("restart"), fake.serving)


def test_reading_settings_fails_before_anything_changes(blobs):
    """When the settings cannot be read, nothing is written and nothing needs restoring."""
    fake = _target(blobs, fail_get=True)
    result = _activate(fake, blobs, _app())
    assert ("failed", False, ["get_app_settings"]) == (result.outcome, result.restored, fake.calls)
    assert PREVIOUS == fake.settings


def test_restore_that_fails_too_is_reported(blobs):
    """If putting the previous settings back fails as well, the result says both."""
    fake = _target(blobs, fail_puts=2)
    result = _activate(fake, blobs, _app())
    assert (False, False) == (result.ok, result.restored)
    assert result.reason is not None and "restoring the previous settings failed" in result.reason


def test_a_sas_url_is_refused_before_any_call():
    """A package URL with a query string (a SAS) is refused: no upload, no ARM call."""
    blobs = MemoryBlobs()
    fake = _target(blobs)
    with pytest.raises(UsageError, match="never a SAS"):
        activate_functionapp(
            fake, blobs, _app(), identity_id=IDENTITY, last_key=None, timeout_s=1,
            poll_interval_s=1, blob_url_for=lambda n: blobs.url_for(n) + "?sv=2024&sig=abc",
        )  # fmt: skip
    assert ([], []) == (fake.calls, blobs.uploads)


def test_setting_values_are_never_logged(caplog: pytest.LogCaptureFixture):
    """Activation and its rollback log setting names only, never a value."""
    blobs = MemoryBlobs()
    caplog.set_level(logging.DEBUG)
    _activate(_target(blobs), blobs, _app("1"))
    _activate(_target(blobs, stuck=True), blobs, _app("2"))
    assert "WEBSITE_RUN_FROM_PACKAGE" in caplog.text
    for value in (*PREVIOUS.values(), blobs.url_for(_app("2").blob_name)):
        assert value not in caplog.text
