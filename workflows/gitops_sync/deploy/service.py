"""What the functions API offers: list, show, versions, rollback, delete a version.

Rollback moves the active pointer to a kept version without rebuilding and
pins the function, so later syncs leave it alone until its content changes in
git (then they deploy normally and unpin). Every write is ETag-guarded.
"""

from __future__ import annotations

import logging
from typing import Any

from ..adapters.versions import ACTIVE, REMOVED, FunctionRecord, VersionRecord
from ..core.errors import NotFound, Refused, StorageError
from .reconcile import ETAG_RETRIES, Deployer, now_iso

log = logging.getLogger("gitops_sync")


def function_summary(rec: FunctionRecord) -> dict[str, Any]:
    """The contract's list item."""
    return {
        "name": rec.name,
        "status": rec.status,
        "active_version": rec.active_version or None,
        "sha256": rec.active_sha256 or None,
        "runtime": rec.config.get("runtime"),
        "pinned": rec.pinned,
        "error": rec.error,
        "updated_at": rec.updated_at or None,
    }


def version_summary(v: VersionRecord, active: int) -> dict[str, Any]:
    return {
        "version": v.version,
        "sha256": v.sha256,
        "commit": v.commit,
        "created_at": v.created_at,
        "size": v.size,
        "active": v.version == active,
    }


class FunctionsService:
    """The API's operations on the versions table (and the runtime, through ``on_change``)."""

    def __init__(self, deployer: Deployer) -> None:
        self.d = deployer

    def _get(self, name: str) -> tuple[FunctionRecord, str]:
        found = self.d.versions.get_function(name)
        if found is None:
            raise NotFound(f"no function named {name!r}")
        return found

    def list_functions(self) -> list[dict[str, Any]]:
        return [function_summary(r) for r in self.d.versions.list_functions()]

    def show(self, name: str) -> dict[str, Any]:
        rec, _ = self._get(name)
        return {**function_summary(rec), "config": rec.config}

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        rec, _ = self._get(name)
        return [version_summary(v, rec.active_version) for v in self.d.versions.list_versions(name)]

    def rollback(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Activate kept ``version`` (default: the one active before); pins the function."""
        for _ in range(ETAG_RETRIES):
            rec, etag = self._get(name)
            if rec.status == REMOVED:
                raise Refused(f"{name} is removed (its directory is gone from the repository)")
            target = version if version is not None else rec.previous_version
            if not target:
                raise NotFound(f"{name} has no earlier version to roll back to")
            found = self.d.versions.get_version(name, target)
            if found is None:
                raise NotFound(f"{name} has no kept version {target}")
            if target != rec.active_version:
                rec.previous_version = rec.active_version
            rec.active_version, rec.active_sha256 = target, found.sha256
            rec.pinned, rec.status, rec.error = True, ACTIVE, None
            rec.updated_at = now_iso()
            if self.d.versions.save_function(rec, etag):
                log.info("function %s rolled back to version %d (pinned)", name, target)
                self._activate_app_after_rollback()
                self.d.on_change(name)
                return {**function_summary(rec), "config": rec.config}
        raise StorageError("the function kept changing during the rollback; retry")

    def _activate_app_after_rollback(self) -> None:
        if self.d.activate_app is None:
            return
        active = [
            r for r in self.d.versions.list_functions() if r.status != REMOVED and r.active_version
        ]
        error = self.d.activate_app(active)
        if error is not None:
            raise StorageError(f"the function app did not take the rollback: {error}")

    def delete_version(self, name: str, version: int) -> None:
        """Delete a kept version (409 for the active one); its package goes when unreferenced."""
        for _ in range(ETAG_RETRIES):
            rec, etag = self._get(name)
            found = self.d.versions.get_version(name, version)
            if found is None:
                raise NotFound(f"{name} has no kept version {version}")
            if version == rec.active_version:
                raise Refused(f"version {version} of {name} is active; roll back first")
            if version == rec.previous_version:
                rec.previous_version = 0
                rec.updated_at = now_iso()
                if not self.d.versions.save_function(rec, etag):
                    continue
            self.d.versions.delete_version(name, version)
            rest = self.d.versions.list_versions(name)
            if all(v.package != found.package for v in rest):
                self.d.blobs.delete(found.package)
            return
        raise StorageError("the function kept changing; retry")

    def version_record(self, name: str, version: int) -> VersionRecord:
        found = self.d.versions.get_version(name, version)
        if found is None:
            raise NotFound(f"{name} has no kept version {version}")
        return found
