"""The Function App that runs the ``functionapp`` target, through Azure Resource Manager.

``FunctionAppApi`` is the whole surface activation needs; ``ArmFunctionApp`` implements it
with ``azure-mgmt-web`` and translates SDK errors into ``FunctionAppError`` (never a value).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from azure.core.exceptions import AzureError, HttpResponseError

from ..core.errors import GitopsSyncError, UsageError

log = logging.getLogger("gitops_sync")

PACKAGE_PATH = "/api/gitops-sync/package"  # the generated app's anonymous key route
_SITE_ID = re.compile(
    r"^/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)"
    r"/providers/Microsoft\.Web/sites/(?P<site>[^/]+)/?$",
    re.IGNORECASE,
)


class FunctionAppError(GitopsSyncError):
    """A call to the target Function App failed; the message names the call, never a value."""

    permanent = False


class FunctionAppApi(Protocol):
    """What activating a package on a Function App needs, and nothing more."""

    def get_app_settings(self) -> dict[str, str]: ...

    def put_app_settings(self, settings: Mapping[str, str]) -> None:
        """Replace the whole settings dictionary (ARM has no per-setting update)."""
        ...

    def sync_triggers(self) -> None: ...

    def restart(self) -> None: ...

    def default_host_name(self) -> str: ...

    def probe_package_key(self, host: str) -> str | None:
        """The key the app at ``host`` serves, or ``None`` when it does not answer one."""
        ...


@dataclass(frozen=True, slots=True)
class FunctionAppId:
    subscription: str
    resource_group: str
    site: str

    @classmethod
    def parse(cls, resource_id: str) -> FunctionAppId:
        """Parse ``/subscriptions/S/resourceGroups/G/providers/Microsoft.Web/sites/N``."""
        match = _SITE_ID.match(resource_id.strip())
        if match is None:
            raise UsageError(
                "DEPLOY_FUNCTIONAPP_ID must be a Function App resource id: /subscriptions/<id>"
                "/resourceGroups/<group>/providers/Microsoft.Web/sites/<name>"
            )
        return cls(match["subscription"], match["group"], match["site"])


def _failure(call: str, exc: AzureError) -> FunctionAppError:
    if isinstance(exc, HttpResponseError):
        code = getattr(getattr(exc, "error", None), "code", None)
        detail = f"HTTP {exc.status_code} {exc.reason or ''}".strip()
        if code:
            detail += f" ({code})"
    else:
        detail = type(exc).__name__
    return FunctionAppError(f"function app: {call} failed: {detail}")


class ArmFunctionApp:
    """One Function App through ``WebSiteManagementClient``; the package probe through httpx."""

    def __init__(
        self,
        app_id: FunctionAppId,
        credential: Any,
        *,
        probe_scheme: str = "https",
        probe_timeout: float = 10.0,
        **client_options: Any,
    ) -> None:
        # imported here: azure.mgmt.web is large, and only the functionapp target needs it
        from azure.mgmt.web import WebSiteManagementClient

        self.app_id = app_id
        self.probe_scheme = probe_scheme
        self.probe_timeout = probe_timeout
        self._web = WebSiteManagementClient(credential, app_id.subscription, **client_options)

    @classmethod
    def from_resource_id(cls, resource_id: str, **kw: Any) -> ArmFunctionApp:
        """The app named by ``DEPLOY_FUNCTIONAPP_ID``, signed in with DefaultAzureCredential."""
        from azure.identity import DefaultAzureCredential

        return cls(FunctionAppId.parse(resource_id), DefaultAzureCredential(), **kw)

    def _site(self) -> tuple[str, str]:
        return self.app_id.resource_group, self.app_id.site

    def get_app_settings(self) -> dict[str, str]:
        try:
            answer = self._web.web_apps.list_application_settings(*self._site())
        except AzureError as exc:
            raise _failure("reading app settings", exc) from exc
        return dict(answer.properties or {})

    def put_app_settings(self, settings: Mapping[str, str]) -> None:
        from azure.mgmt.web.models import StringDictionary

        body = StringDictionary(properties=dict(settings))
        try:
            self._web.web_apps.update_application_settings(*self._site(), body)
        except AzureError as exc:
            raise _failure("writing app settings", exc) from exc

    def sync_triggers(self) -> None:
        try:
            self._web.web_apps.sync_function_triggers(*self._site())
        except AzureError as exc:
            raise _failure("syncing triggers", exc) from exc

    def restart(self) -> None:
        try:
            self._web.web_apps.restart(*self._site())
        except AzureError as exc:
            raise _failure("restarting", exc) from exc

    def default_host_name(self) -> str:
        try:
            site = self._web.web_apps.get(*self._site())
        except AzureError as exc:
            raise _failure("reading the app", exc) from exc
        host = site.properties.default_host_name if site.properties else None
        if not host:
            raise FunctionAppError("function app: the app has no default host name yet")
        return host

    def probe_package_key(self, host: str) -> str | None:
        url = f"{self.probe_scheme}://{host}{PACKAGE_PATH}"
        try:
            response = httpx.get(url, timeout=self.probe_timeout, follow_redirects=False)
            key = response.json().get("key") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.debug("package probe of %s: %s", host, type(exc).__name__)
            return None
        return key if isinstance(key, str) else None

    def close(self) -> None:
        self._web.close()
