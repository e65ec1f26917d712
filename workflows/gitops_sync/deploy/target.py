"""The ``functionapp`` activation target, wired to the versions table and the package container.

Given the active versions, it builds the one app package (``core.appgen``),
activates it (``deploy.functionapp``), and remembers the key it activated, so
that when the set of active versions did not change, nothing is called at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..adapters.arm import FunctionAppApi
from ..adapters.packages import PackageBlobs
from ..adapters.versions import FunctionRecord, VersionStore
from ..core.appgen import AppBuildError, app_key, build_app_package
from .functionapp import activate_functionapp

log = logging.getLogger("gitops_sync")
ACTIVATION_TIMEOUT_S = 300.0
POLL_INTERVAL_S = 5.0


class FunctionAppTarget:
    """``Deployer.activate_app`` for ``DEPLOY_TARGET=functionapp``."""

    def __init__(
        self,
        versions: VersionStore,
        blobs: PackageBlobs,
        api: Callable[[], FunctionAppApi],
        *,
        identity_id: str,
        source_date_epoch: str | None = None,
        timeout_s: float = ACTIVATION_TIMEOUT_S,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.versions = versions
        self.blobs = blobs
        self._make_api = api
        self._api: FunctionAppApi | None = None
        self.identity_id = identity_id
        self.source_date_epoch = source_date_epoch
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s

    @property
    def api(self) -> FunctionAppApi:
        if self._api is None:
            self._api = self._make_api()  # on first use: the ARM client is slow to import
        return self._api

    def __call__(self, active: list[FunctionRecord]) -> str | None:
        """Activate ``active`` on the app; None when done (or nothing to do), else why not."""
        last_key = self.versions.get_target_key("functionapp")
        if app_key((r.name, r.active_sha256) for r in active) == last_key:
            return None  # the same set of versions runs there: nothing to download or call
        functions = []
        for rec in sorted(active, key=lambda r: r.name):
            version = self.versions.get_version(rec.name, rec.active_version)
            if version is None:
                return f"{rec.name} version {rec.active_version} has no row"
            data = self.blobs.download(version.package, version.package_sha256)
            functions.append((rec.name, version.sha256, data))
        raw_epoch = self.source_date_epoch or ""
        epoch = int(raw_epoch) if raw_epoch.isdigit() else None
        try:
            app = build_app_package(
                functions,
                source_date_epoch=epoch,
                versions={r.name: r.active_version for r in active},
            )
        except AppBuildError as exc:
            return str(exc)
        result = activate_functionapp(
            self.api,
            self.blobs,
            app,
            identity_id=self.identity_id,
            blob_url_for=self.blobs.url,
            last_key=last_key,
            timeout_s=self.timeout_s,
            poll_interval_s=self.poll_interval_s,
        )
        if not result.ok:
            return result.reason or "activation failed"
        if result.outcome == "activated":
            self.versions.set_target_key("functionapp", app.key)
            log.info("function app runs %d functions (package %s)", len(functions), app.key[:12])
        return None
