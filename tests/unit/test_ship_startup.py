"""What the Functions app does at start: Key Vault references left unresolved, and the debugger.

An unresolved ``@Microsoft.KeyVault(...)`` setting is named (never its value) in the start log
and by ``GET /api/health`` (503 + Retry-After); ``ENABLE_DEBUGGING`` opens debugpy only outside
Azure. Processes are real (debugpy cannot stop listening once it started).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from gitops_sync import debug
from gitops_sync.context import AppContext
from gitops_sync.http.health import health
from gitops_sync.settings import (
    DEFAULT_DEBUGPY_PORT,
    DebugOptions,
    Settings,
    app_setting,
    azurite_connection_string,
    forget_unresolved_by_name,
    is_key_vault_reference,
)

REPO = Path(__file__).resolve().parents[2]
APP_ROOT = REPO / "workflows"
REFERENCE = "@Microsoft.KeyVault(SecretUri=https://kv-secret-place.vault.azure.net/secrets/hook/)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _env(**extra: str) -> dict[str, str]:
    """A clean environment for a child Python: only PATH, HOME and what the test adds."""
    keep = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    return {**keep, **extra}


# --- Key Vault references --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (REFERENCE, True),
        ("@Microsoft.KeyVault(VaultName=kv;SecretName=hook)", True),
        ("  @microsoft.keyvault(VaultName=kv;SecretName=hook)", True),
        ("s3cret", False),
        ("", False),
        (None, False),
        ("prefix @Microsoft.KeyVault(VaultName=kv;SecretName=hook)", False),
    ],
    ids=["secret-uri", "vault-name", "any-case", "plain", "empty", "unset", "not-at-start"],
)
def test_key_vault_reference_is_recognised(value, expected):
    """A value is an unresolved reference exactly when it starts with @Microsoft.KeyVault(."""
    assert expected == is_key_vault_reference(value)


def test_settings_name_every_unresolved_reference_they_read():
    """Every setting read whose value is a literal reference is named, in the order read."""
    s = Settings.from_env(
        {"GITHUB_WEBHOOK_SECRET": REFERENCE, "GIT_TOKEN": REFERENCE, "SYNC_BRANCH": "main"}
    )
    assert ("GITHUB_WEBHOOK_SECRET", "GIT_TOKEN") == s.unresolved_references
    problem = s.key_vault_problem()
    assert problem is not None and "GITHUB_WEBHOOK_SECRET, GIT_TOKEN" in problem
    assert "kv-secret-place" not in problem and "restart" in problem


def test_settings_ignore_references_in_names_they_do_not_read():
    """A reference in a setting the app never reads is none of its business."""
    s = Settings.from_env({"SOME_OTHER_APP_SETTING": REFERENCE})
    assert ((), None) == (s.unresolved_references, s.key_vault_problem())


def test_a_connection_setting_read_by_name_is_reported_too(monkeypatch: pytest.MonkeyPatch):
    """A connection's secret setting holding a reference is named by key_vault_problem too."""
    monkeypatch.setenv("ORDERS_REPO_SECRET", REFERENCE)
    try:
        assert REFERENCE == app_setting("ORDERS_REPO_SECRET")  # the value is not hidden
        problem = Settings.from_env({}).key_vault_problem()
        assert problem is not None and "ORDERS_REPO_SECRET" in problem
        assert "kv-secret-place" not in problem
    finally:
        forget_unresolved_by_name()
    assert None is Settings.from_env({}).key_vault_problem()


def _health(settings: Settings) -> tuple[int, dict[str, Any], dict[str, str]]:
    ctx = AppContext.from_settings(settings, prefix="kvref")  # no I/O until a call
    scope = {"type": "http", "method": "GET", "path": "/api/health", "headers": [],
             "query_string": b""}  # fmt: skip
    response = asyncio.run(health(Request(scope), ctx))
    return response.status_code, json.loads(bytes(response.body)), dict(response.headers)


def test_health_is_503_naming_the_unresolved_setting_never_its_value():
    """GET /api/health answers 503 with Retry-After, naming the setting and not the reference."""
    dead = azurite_connection_string(blob=9, queue=9, table=9)  # never reached
    status, body, headers = _health(
        Settings.from_env({"AzureWebJobsStorage": dead, "GITHUB_WEBHOOK_SECRET": REFERENCE})
    )
    assert (503, "unavailable") == (status, body["status"])
    assert "GITHUB_WEBHOOK_SECRET" in body["error"] and "kv-secret-place" not in json.dumps(body)
    assert int(headers["retry-after"]) > 0


def test_function_app_says_it_once_at_start():
    """Importing the app logs the unresolved setting's name once, and never the reference."""
    code = "import function_app"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=APP_ROOT,
        env=_env(GITHUB_WEBHOOK_SECRET=REFERENCE, PYTHONPATH=str(APP_ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == proc.returncode, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "Key Vault reference" in line]
    assert 1 == len(lines), proc.stderr
    assert "GITHUB_WEBHOOK_SECRET" in lines[0]
    assert "kv-secret-place" not in proc.stderr + proc.stdout


# --- the debugger ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, DebugOptions(False, False, DEFAULT_DEBUGPY_PORT, None)),
        ({"ENABLE_DEBUGGING": "true", "DEBUGPY_WAIT": "1"}, DebugOptions(True, True, 5678, None)),
        ({"ENABLE_DEBUGGING": "TRUE", "GITOPS_SYNC_DEBUGPY_PORT": "5999"},
         DebugOptions(True, False, 5999, None)),
        ({"ENABLE_DEBUGGING": "false"}, DebugOptions(False, False, 5678, None)),
        ({"ENABLE_DEBUGGING": "true", "WEBSITE_INSTANCE_ID": "abc123"},
         DebugOptions(True, False, 5678, "WEBSITE_INSTANCE_ID is set")),
        ({"WEBSITE_SITE_NAME": "my-func"},
         DebugOptions(False, False, 5678, "WEBSITE_SITE_NAME is set")),
    ],
    ids=["unset", "enabled-wait", "port", "false", "azure-instance", "azure-site"],
)  # fmt: skip
def test_debug_options_from_the_environment(env, expected):
    """ENABLE_DEBUGGING, DEBUGPY_WAIT, the port and the Azure markers are read as documented."""
    assert expected == DebugOptions.from_env(env)


@pytest.mark.parametrize("port", ["http", "0", "70000", "-1"])
def test_a_bad_debug_port_is_a_clear_error(port):
    """A port that is not 1-65535 names the setting and the value."""
    with pytest.raises(ValueError, match=f"GITOPS_SYNC_DEBUGPY_PORT.*{port}"):
        DebugOptions.from_env({"GITOPS_SYNC_DEBUGPY_PORT": port})


def test_a_bad_debug_port_never_stops_the_app(monkeypatch: pytest.MonkeyPatch):
    """At start a bad port is logged and the app goes on without a debugger."""
    monkeypatch.setenv("ENABLE_DEBUGGING", "true")
    monkeypatch.setenv("GITOPS_SYNC_DEBUGPY_PORT", "nope")
    assert debug.start_from_environment().startswith("debugger not started: ")


def test_debugger_is_refused_in_azure():
    """With WEBSITE_INSTANCE_ID set, ENABLE_DEBUGGING opens no port and says why."""
    port = _free_port()
    said = debug.start_debugger(DebugOptions(True, False, port, "WEBSITE_INSTANCE_ID is set"))
    assert "runs in Azure (WEBSITE_INSTANCE_ID is set)" in said
    assert False is _listening(port)


def test_debugger_off_by_default():
    """Without ENABLE_DEBUGGING nothing listens."""
    assert "debugger off" == debug.start_debugger(DebugOptions.from_env({}))


_CHILD = """
import sys
from gitops_sync import debug
from gitops_sync.settings import DebugOptions
print(debug.start_debugger(DebugOptions.from_env(), host="127.0.0.1"), flush=True)
sys.stdin.read()  # keep listening until the test closes stdin
"""


def _start_child(env: dict[str, str], prelude: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", prelude + _CHILD],
        env=_env(**env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(child: subprocess.Popen[str]) -> str:
    _, err = child.communicate("", timeout=60)
    return err


def test_enable_debugging_listens_for_debugpy():
    """ENABLE_DEBUGGING=true makes a real debugpy listen on GITOPS_SYNC_DEBUGPY_PORT."""
    pytest.importorskip("debugpy")
    port = _free_port()
    child = _start_child({"ENABLE_DEBUGGING": "true", "GITOPS_SYNC_DEBUGPY_PORT": str(port)})
    try:
        assert child.stdout is not None
        said = child.stdout.readline().strip()  # printed once listen() returned
        assert f"debugpy listening on 127.0.0.1:{port}" == said
        assert True is _listening(port)
    finally:
        err = _finish(child)
    assert f"debugpy listening on 127.0.0.1:{port} (ENABLE_DEBUGGING)" in err


def test_enable_debugging_without_debugpy_says_how_to_get_it():
    """Where debugpy is not installed (a production image), the app says so and goes on."""
    port = _free_port()
    child = _start_child(
        {"ENABLE_DEBUGGING": "true", "GITOPS_SYNC_DEBUGPY_PORT": str(port)},
        prelude="import sys; sys.modules['debugpy'] = None\n",  # import debugpy -> ImportError
    )
    try:
        assert child.stdout is not None
        assert "debugpy is not installed" in child.stdout.readline()
        assert False is _listening(port)
    finally:
        _finish(child)
