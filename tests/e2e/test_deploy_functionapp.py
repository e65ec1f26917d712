"""DEPLOY_TARGET=functionapp end to end: Azurite for tables and packages, a fake only for ARM."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops_sync.deploy.functionapp import RUN_FROM_PACKAGE, RUN_FROM_PACKAGE_IDENTITY
from gitops_sync.deploy.target import FunctionAppTarget
from tests.deploy_support import add_function
from tests.e2e.test_deploy import push
from tests.fakes.function_app import FakeFunctionApp
from tests.pipeline_support import Stack, make_stack

pytestmark = pytest.mark.azurite
IDENTITY = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity"
    "/userAssignedIdentities/reader"
)
APP_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/target-app"
PREVIOUS = {"FUNCTIONS_WORKER_RUNTIME": "python", "CUSTOM_SETTING": "kept"}


@pytest.fixture()
def target(storage: str, tmp_path: Path) -> tuple[Stack, FakeFunctionApp]:
    stack = make_stack(
        storage,
        tmp_path,
        extra_env={
            "DEPLOY_TARGET": "functionapp",
            "DEPLOY_FUNCTIONAPP_ID": APP_ID,
            "DEPLOY_IDENTITY_ID": IDENTITY,
        },
    )
    blobs = stack.ctx.deployer.blobs

    def read_package(url: str) -> bytes | None:
        prefix = blobs.url("x")[:-1]
        if not url.startswith(prefix):
            return None
        name = url[len(prefix) :]
        return blobs.download(name) if blobs.exists(name) else None

    app = FakeFunctionApp(read_package=read_package, identity_id=IDENTITY, settings=dict(PREVIOUS))
    activator = stack.ctx.deployer.activate_app
    assert isinstance(activator, FunctionAppTarget)
    activator._make_api = lambda: app  # the one fake: Azure Resource Manager
    activator.poll_interval_s, activator.timeout_s = 0.01, 0.5
    return stack, app


def test_deploy_points_the_app_at_one_package_and_keeps_every_setting(target):
    """The app package's blob URL (no SAS) and the identity are written; other settings stay."""
    stack, app = target
    add_function(stack.repo, "orders", "o1")
    add_function(stack.repo, "billing", "b1")
    summary = push(stack)
    assert 2 == len(summary["deployed"])
    assert {**PREVIOUS, RUN_FROM_PACKAGE: app.settings[RUN_FROM_PACKAGE],
            RUN_FROM_PACKAGE_IDENTITY: IDENTITY} == app.settings  # fmt: skip
    url = app.settings[RUN_FROM_PACKAGE]
    assert "?" not in url and "/apps/" in url
    assert "sync_triggers" in app.calls
    assert app.serving == stack.ctx.deployer.versions.get_target_key("functionapp")


def test_no_call_at_all_when_the_active_set_did_not_change(target):
    """A push that changes no function calls nothing on the app."""
    stack, app = target
    add_function(stack.repo, "orders", "o1")
    push(stack)
    before = list(app.calls)
    stack.repo.write("README.md", "unrelated\n")
    push(stack)
    assert before == app.calls


def test_failed_activation_restores_settings_and_fails_the_new_version(target):
    """The app never serves the new package: settings put back, v2 failed, v1 still active."""
    stack, app = target
    add_function(stack.repo, "orders", "o1")
    push(stack)
    good = dict(app.settings)
    app.stuck = True
    add_function(stack.repo, "orders", "o2")
    summary = push(stack)
    assert [] == summary["deployed"]
    assert ["orders"] == [f["name"] for f in summary["failed"]]
    assert good == app.settings
    shown = stack.ctx.functions.show("orders")
    assert ("failed", 1) == (shown["status"], shown["active_version"])
    assert "activation on the function app failed" in shown["error"]


def test_rollback_is_activated_on_the_app(target):
    """Rolling back changes the set of active versions: the app gets the old package's key."""
    stack, app = target
    add_function(stack.repo, "orders", "o1")
    push(stack)
    first_key = app.serving
    add_function(stack.repo, "orders", "o2")
    push(stack)
    assert first_key != app.serving
    stack.ctx.functions.rollback("orders")
    assert first_key == app.serving


def test_a_runtime_other_than_the_apps_fails_that_function(target):
    """The app runs python3.11; a python3.12 function fails with that reason."""
    stack, _app = target
    add_function(stack.repo, "orders", "o1")
    stack.repo.write("functions/other/function.toml", 'runtime = "python3.12"\nhandler = "m.h"\n')
    stack.repo.write("functions/other/m.py", "def h(e, c):\n    return {}\n")
    summary = push(stack)
    assert [{"name": "orders", "version": 1}] == summary["deployed"]
    assert "the function app runs python3.11, not python3.12" in summary["failed"][0]["error"]
