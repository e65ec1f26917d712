"""An in-memory Function App behind Azure Resource Manager, implementing ``FunctionAppApi``.

It runs from a package as Azure does: after a settings write and a trigger sync (or a
restart), it reads the blob named by ``WEBSITE_RUN_FROM_PACKAGE`` with the identity named by
``WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID`` and serves that package's key. Fault
switches make a step fail or the new package never show.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gitops_sync.adapters.arm import FunctionAppError
from gitops_sync.deploy.functionapp import RUN_FROM_PACKAGE, RUN_FROM_PACKAGE_IDENTITY


@dataclass
class MemoryBlobs:
    """The package container in memory; ``uploads`` lists every upload (name) in order."""

    base_url: str = "https://packages.blob.core.windows.net/function-packages"
    blobs: dict[str, bytes] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)

    def exists(self, name: str) -> bool:
        return name in self.blobs

    def upload(self, name: str, data: bytes) -> None:
        self.uploads.append(name)
        self.blobs[name] = data

    def url_for(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def read_url(self, url: str) -> bytes | None:
        prefix = self.base_url + "/"
        return self.blobs.get(url[len(prefix) :]) if url.startswith(prefix) else None


def served_key(package: bytes | None) -> str | None:
    """The key a generated app package answers on its package route."""
    if package is None:
        return None
    with zipfile.ZipFile(io.BytesIO(package)) as zf:
        return str(json.loads(zf.read("gitops_sync_app.json"))["key"])


@dataclass
class FakeFunctionApp:
    """ARM plus the app it manages. ``calls`` records every call by name, in order."""

    read_package: Callable[[str], bytes | None]
    identity_id: str  # the user-assigned identity the app has (and can read packages with)
    settings: dict[str, str] = field(default_factory=dict)
    host: str = "target-app.azurewebsites.net"
    calls: list[str] = field(default_factory=list)
    puts: list[dict[str, str]] = field(default_factory=list)
    # fault switches
    fail_get: bool = False
    fail_puts: int = 0  # this many settings writes fail (the next ones succeed)
    fail_sync: bool = False
    stuck: bool = False  # the app never loads another package
    loads_only_on_restart: bool = False
    serving: str | None = None  # key of the package being served now

    def get_app_settings(self) -> dict[str, str]:
        self.calls.append("get_app_settings")
        if self.fail_get:
            raise FunctionAppError("function app: reading app settings failed: HTTP 503")
        return dict(self.settings)

    def put_app_settings(self, settings: Mapping[str, str]) -> None:
        self.calls.append("put_app_settings")
        if self.fail_puts > 0:
            self.fail_puts -= 1
            raise FunctionAppError("function app: writing app settings failed: HTTP 409")
        self.settings = dict(settings)  # the PUT replaces the whole dictionary
        self.puts.append(dict(settings))
        if not self.loads_only_on_restart:
            self._load()  # a settings change restarts the app

    def sync_triggers(self) -> None:
        self.calls.append("sync_triggers")
        if self.fail_sync:
            raise FunctionAppError("function app: syncing triggers failed: HTTP 500")

    def restart(self) -> None:
        self.calls.append("restart")
        self._load()

    def default_host_name(self) -> str:
        self.calls.append("default_host_name")
        return self.host

    def probe_package_key(self, host: str) -> str | None:
        self.calls.append("probe_package_key")
        return self.serving if host == self.host else None

    def _load(self) -> None:
        if self.stuck:
            return
        url = self.settings.get(RUN_FROM_PACKAGE)
        if url is None or self.settings.get(RUN_FROM_PACKAGE_IDENTITY) != self.identity_id:
            self.serving = None  # no package, or no right to read it: the app is down
            return
        if "?" in url:
            raise AssertionError("a SAS URL reached the fake app")
        self.serving = served_key(self.read_package(url))
