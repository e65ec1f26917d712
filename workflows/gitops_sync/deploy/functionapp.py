"""Activation on the ``functionapp`` target: point a Function App at a new app package.

Phases: skip (same key) -> store (``apps/<key>.zip``) -> point (settings) -> sync triggers ->
verify (poll the package route) -> on any failure, put the previous settings back exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from ..adapters.arm import FunctionAppApi
from ..core.appgen import AppPackage
from ..core.errors import GitopsSyncError, UsageError

log = logging.getLogger("gitops_sync")

RUN_FROM_PACKAGE = "WEBSITE_RUN_FROM_PACKAGE"
RUN_FROM_PACKAGE_IDENTITY = "WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID"

T = TypeVar("T")
Outcome = Literal["unchanged", "activated", "failed"]


class AppPackageBlobs(Protocol):
    """Where app packages are stored (the package container)."""

    def exists(self, name: str) -> bool: ...

    def upload(self, name: str, data: bytes) -> object: ...


@dataclass(frozen=True, slots=True)
class ActivationResult:
    outcome: Outcome
    key: str
    reason: str | None = None  # why it failed; names the step, never a setting's value
    uploaded: bool = False  # bytes were sent to the package container
    restored: bool = False  # the previous settings were put back

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"


class _StepFailed(Exception):
    """A step failed after settings may have changed: restore, then report."""


def package_url(url: str) -> str:
    """The run-from-package URL, refused when it carries a query string or fragment.

    Never a SAS: a SAS expires (and takes the app down when it does) and would put a
    secret into an app setting; the app reads the blob with its managed identity.
    """
    parts = urlsplit(url)
    if parts.query or parts.fragment or "?" in url:
        raise UsageError("the package URL must not carry a query string (never a SAS)")
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise UsageError("the package URL must be an absolute http(s) URL")
    return url


def activate_functionapp(
    api: FunctionAppApi,
    blobs: AppPackageBlobs,
    app: AppPackage,
    *,
    identity_id: str,
    blob_url_for: Callable[[str], str],
    last_key: str | None,
    timeout_s: float,
    poll_interval_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ActivationResult:
    """Make the Function App run ``app``; a no-op (no call at all) when its key is ``last_key``."""
    if app.key == last_key:
        return ActivationResult("unchanged", app.key)
    url = package_url(blob_url_for(app.blob_name))
    if not identity_id:
        raise UsageError("DEPLOY_IDENTITY_ID is needed: the app reads its package with it")

    uploaded = False
    try:
        if not blobs.exists(app.blob_name):
            blobs.upload(app.blob_name, app.data)
            uploaded = True
        previous = api.get_app_settings()
    except GitopsSyncError as exc:  # nothing changed on the app yet
        return _failed(app, f"{exc}", uploaded=uploaded)

    wanted = {**previous, RUN_FROM_PACKAGE: url, RUN_FROM_PACKAGE_IDENTITY: identity_id}
    try:
        if wanted != previous:
            _step("writing app settings", lambda: api.put_app_settings(wanted))
            log.info("function app: settings %s written", ", ".join(_changed(previous, wanted)))
        _step("syncing triggers", api.sync_triggers)
        host = _step("reading the app's host name", api.default_host_name)
        _wait_for_key(api, host, app.key, timeout_s, poll_interval_s, clock, sleep)
    except _StepFailed as exc:
        return _roll_back(api, app, previous, str(exc), uploaded=uploaded)
    log.info("function app: now runs package %s", app.key[:12])
    return ActivationResult("activated", app.key, uploaded=uploaded)


def _step(what: str, call: Callable[[], T]) -> T:
    """Run one step after settings may have changed: any failure leads to the restore."""
    try:
        return call()
    except GitopsSyncError as exc:
        raise _StepFailed(str(exc)) from exc
    except Exception as exc:  # an unexpected error must still put the settings back
        raise _StepFailed(f"function app: {what} failed: {type(exc).__name__}") from exc


def _wait_for_key(
    api: FunctionAppApi,
    host: str,
    key: str,
    timeout_s: float,
    poll_interval_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Poll the package route until it answers ``key``; restart once, halfway, if it does not."""
    start = clock()
    restarted = False
    while True:
        if api.probe_package_key(host) == key:
            return
        elapsed = clock() - start
        if elapsed >= timeout_s:
            raise _StepFailed(
                f"function app: the app did not serve package {key[:12]} within {timeout_s:g} s"
            )
        if not restarted and elapsed >= timeout_s / 2:
            restarted = True
            _step("restarting", api.restart)
        sleep(poll_interval_s)


def _roll_back(
    api: FunctionAppApi, app: AppPackage, previous: dict[str, str], reason: str, *, uploaded: bool
) -> ActivationResult:
    log.warning("function app: activation of %s failed (%s); restoring", app.key[:12], reason)
    try:
        _step("restoring app settings", lambda: api.put_app_settings(previous))
    except _StepFailed as exc:
        log.error("function app: restoring the previous settings failed: %s", exc)
        return _failed(
            app, f"{reason}; restoring the previous settings failed too: {exc}", uploaded=uploaded
        )
    try:  # best effort: the settings are back, and they restart the app by themselves
        _step("syncing triggers", api.sync_triggers)
    except _StepFailed as exc:
        log.warning("function app: syncing triggers after the restore failed: %s", exc)
    return ActivationResult("failed", app.key, reason, uploaded=uploaded, restored=True)


def _failed(app: AppPackage, reason: str, *, uploaded: bool) -> ActivationResult:
    log.warning("function app: activation of %s failed: %s", app.key[:12], reason)
    return ActivationResult("failed", app.key, reason, uploaded=uploaded)


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Names (never values) of the settings that differ."""
    return sorted(k for k in after.keys() | before.keys() if before.get(k) != after.get(k))
