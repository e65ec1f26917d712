"""The real ``azure-mgmt-web`` client behind ``ArmFunctionApp``: the requests it sends to
Azure Resource Manager (method, URL, api-version, body), recorded at the HTTP transport."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gitops_sync.adapters.arm import ArmFunctionApp, FunctionAppError, FunctionAppId
from gitops_sync.core.errors import UsageError
from tests.fakes.arm_transport import RecordingTransport, StaticToken

SUB = "11111111-2222-3333-4444-555555555555"
SITE = f"/subscriptions/{SUB}/resourceGroups/rg-fns/providers/Microsoft.Web/sites/target-app"
API_VERSION = "2025-05-01"


def _client(transport: RecordingTransport, **kw: object) -> ArmFunctionApp:
    return ArmFunctionApp(FunctionAppId.parse(SITE), StaticToken(), transport=transport, **kw)


def test_get_app_settings_posts_to_the_list_action():
    """Reading settings is POST .../config/appsettings/list with the pinned api-version."""
    transport = RecordingTransport(
        {("POST", f"{SITE}/config/appsettings/list"): (200, {"properties": {"A": "1", "B": "2"}})}
    )
    assert {"A": "1", "B": "2"} == _client(transport).get_app_settings()
    (sent,) = transport.sent
    assert ("POST", f"{SITE}/config/appsettings/list", [API_VERSION]) == (
        sent.method, sent.path, sent.query["api-version"]
    )  # fmt: skip
    assert "Bearer static-test-token" == sent.headers["Authorization"]


def test_put_app_settings_sends_the_whole_dictionary():
    """Writing settings is PUT .../config/appsettings with every setting in properties."""
    settings = {"A": "1", "WEBSITE_RUN_FROM_PACKAGE": "https://acct.blob/c/apps/k.zip"}
    transport = RecordingTransport(
        {("PUT", f"{SITE}/config/appsettings"): (200, {"properties": settings})}
    )
    _client(transport).put_app_settings(settings)
    (sent,) = transport.sent
    assert ("PUT", f"{SITE}/config/appsettings", [API_VERSION], {"properties": settings}) == (
        sent.method, sent.path, sent.query["api-version"], sent.body
    )  # fmt: skip


def test_sync_triggers_restart_and_host_name():
    """Trigger sync and restart are POSTs on the site; the host name comes from GET site."""
    transport = RecordingTransport(
        {
            ("POST", f"{SITE}/syncfunctiontriggers"): (204, None),
            ("POST", f"{SITE}/restart"): (200, None),
            ("GET", SITE): (200, {"location": "westeurope", "properties": {
                "defaultHostName": "target-app.azurewebsites.net"}}),
        }
    )  # fmt: skip
    client = _client(transport)
    client.sync_triggers()
    client.restart()
    assert "target-app.azurewebsites.net" == client.default_host_name()
    assert [
        ("POST", f"{SITE}/syncfunctiontriggers"),
        ("POST", f"{SITE}/restart"),
        ("GET", SITE),
    ] == [(s.method, s.path) for s in transport.sent]
    assert {API_VERSION} == {s.query["api-version"][0] for s in transport.sent}


def test_arm_errors_become_function_app_errors_without_values():
    """An ARM error answer is a FunctionAppError naming the call, the status and the code."""
    transport = RecordingTransport(
        {("PUT", f"{SITE}/config/appsettings"): (409, {"error": {
            "code": "Conflict", "message": "busy"}})}
    )  # fmt: skip
    with pytest.raises(FunctionAppError) as caught:
        _client(transport).put_app_settings({"SECRET": "do-not-show-me"})
    message = str(caught.value)
    assert "writing app settings failed: HTTP 409" in message and "Conflict" in message
    assert "do-not-show-me" not in message


@pytest.mark.parametrize(
    "bad",
    ["", "/subscriptions/x/resourceGroups/g", f"{SITE}/slots/staging", "target-app"],
    ids=["empty", "no-site", "a-slot", "bare-name"],
)
def test_a_resource_id_that_is_not_a_site_is_refused_clearly(bad):
    """DEPLOY_FUNCTIONAPP_ID must be a site's resource id; anything else says so."""
    with pytest.raises(UsageError, match="DEPLOY_FUNCTIONAPP_ID must be a Function App"):
        FunctionAppId.parse(bad)


def test_resource_id_parses_into_its_parts():
    """Subscription, resource group and site name come out of the resource id."""
    assert FunctionAppId(SUB, "rg-fns", "target-app") == FunctionAppId.parse(SITE)


class _PackageRoute(BaseHTTPRequestHandler):
    answer: bytes = b""
    status: int = 200

    def do_GET(self) -> None:
        body = self.answer if self.path == "/api/gitops-sync/package" else b"{}"
        self.send_response(self.status if self.path == "/api/gitops-sync/package" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def package_server() -> Iterator[tuple[str, type[_PackageRoute]]]:
    handler = type("Route", (_PackageRoute,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize(
    ("status", "answer", "expected"),
    [
        (200, json.dumps({"key": "abc"}).encode(), "abc"),
        (503, json.dumps({"key": "abc"}).encode(), None),
        (200, b"<html>starting</html>", None),
        (200, b"[1]", None),
    ],
    ids=["serves-key", "unavailable", "not-json", "not-an-object"],
)
def test_probe_reads_the_key_over_real_http(package_server, status, answer, expected):
    """The probe GETs /api/gitops-sync/package and answers the key, or None for anything else."""
    host, handler = package_server
    handler.status, handler.answer = status, answer
    transport = RecordingTransport()
    client = _client(transport, probe_scheme="http")
    assert expected == client.probe_package_key(host)
    assert [] == transport.sent  # the probe goes to the app, not to ARM


def test_probe_of_a_host_that_does_not_answer_is_none():
    """A connection refused (app restarting) is None, not an error."""
    transport = RecordingTransport()
    client = _client(transport, probe_scheme="http", probe_timeout=5)
    assert client.probe_package_key("127.0.0.1:9") is None
    assert [] == transport.sent
