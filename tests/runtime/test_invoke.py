"""Invoking a function: the handler's JSON comes back; environment, imports, context, bad input."""

from __future__ import annotations

import json
import logging

import pytest

from gitops_sync.runtime import MAX_BODY_BYTES, FunctionRuntime

from . import handlers
from .packages import PackageStore
from .util import wait_for


def test_invoke_returns_the_handlers_json(runtime: FunctionRuntime, store: PackageStore) -> None:
    """The event is the JSON body; the answer is 200 with the handler's return and the version."""
    ref = store.add("echo", 3, {"main.py": handlers.ECHO})
    runtime.set_active("echo", ref)

    result = runtime.invoke("echo", b'{"order": 7}', invocation_id="inv-1")

    assert 200 == result.status
    answer = result.json()
    assert {"order": 7} == answer["event"]
    assert (3, "echo", "inv-1") == (answer["version"], answer["function"], answer["invocation_id"])
    assert 0 < answer["remaining_ms"] <= 30_000
    assert str(runtime.packages.path_for(ref)) == answer["cwd"]
    assert "3" == result.headers["X-Function-Version"]


def test_empty_body_is_an_empty_event(runtime: FunctionRuntime, store: PackageStore) -> None:
    """No body at all invokes the handler with ``{}``."""
    runtime.set_active("echo", store.add("echo", 1, {"main.py": handlers.ECHO}))

    assert {} == runtime.invoke("echo", b"").json()["event"]


def test_environment_is_built_not_inherited(runtime: FunctionRuntime, store: PackageStore) -> None:
    """[environment] and named secrets reach the handler; the server's own secrets do not."""
    ref = store.add(
        "env", 1, {"main.py": handlers.ENV}, environment={"LOG_LEVEL": "DEBUG"},
        secrets=["ORDERS_DB_URL"],
    )  # fmt: skip
    runtime.set_active("env", ref)

    env = runtime.invoke("env", b"{}").json()["env"]

    assert "DEBUG" == env["LOG_LEVEL"]
    assert "postgres://orders-secret" == env["ORDERS_DB_URL"]
    assert "1" == env["MALLOC_ARENA_MAX"]
    assert env["HOME"].startswith(str(runtime.cache_dir))
    assert {"PATH", "LANG", "HOME", "MALLOC_ARENA_MAX", "LOG_LEVEL", "ORDERS_DB_URL"} == set(env)
    text = json.dumps(env)
    for leaked in ("server-api-key", "server-storage-key", "server-webhook-secret"):
        assert leaked not in text


def test_a_missing_secret_is_a_clear_error(runtime: FunctionRuntime, store: PackageStore) -> None:
    """A secret named in function.toml but not set on the server answers 500 naming it."""
    runtime.set_active("env", store.add("env", 1, {"main.py": handlers.ENV}, secrets=["NOPE"]))

    result = runtime.invoke("env", b"{}")

    assert 500 == result.status
    assert "'NOPE'" in result.json()["error"]


def test_include_and_deps_are_importable(runtime: FunctionRuntime, store: PackageStore) -> None:
    """A handler imports its include directory by basename, and third-party code from _deps."""
    files = {
        "main.py": "from common import greet\nimport tinydep\n"
        "def handle(event, context):\n    return {'msg': greet(event['who']), 'dep': tinydep.X}\n",
        "_include/common/__init__.py": "def greet(who):\n    return 'hello ' + who\n",
        "_deps/tinydep.py": "X = 42\n",
    }
    runtime.set_active("inc", store.add("inc", 1, files, include=["lib/common"]))

    result = runtime.invoke("inc", b'{"who": "ada"}')

    assert {"msg": "hello ada", "dep": 42} == result.json()


def test_server_site_packages_are_not_importable(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """A worker sees the package and the stdlib only: the server's libraries are not importable."""
    code = "def handle(event, context):\n    import starlette\n    return {}\n"
    runtime.set_active("iso", store.add("iso", 1, {"main.py": code}))

    result = runtime.invoke("iso", b"{}")

    assert (500, "ModuleNotFoundError") == (result.status, result.json()["type"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"{not json", 400, id="not-json"),
        pytest.param(b"[" + b" " * MAX_BODY_BYTES + b"]", 413, id="over-6-mib"),
    ],
)
def test_bad_bodies_are_refused(
    runtime: FunctionRuntime, store: PackageStore, body: bytes, status: int
) -> None:
    """A body that is not JSON gets 400, one over 6 MiB gets 413; the handler never runs."""
    runtime.set_active("echo", store.add("echo", 1, {"main.py": handlers.ECHO}))

    result = runtime.invoke("echo", body)

    assert status == result.status
    assert "error" in result.json()


def test_unknown_function_is_404(runtime: FunctionRuntime) -> None:
    """A function with no active version answers 404."""
    assert 404 == runtime.invoke("nobody", b"{}").status


def test_removed_function_is_404(runtime: FunctionRuntime, store: PackageStore) -> None:
    """After set_active(name, None) the function answers 404 and its workers stop."""
    runtime.set_active("echo", store.add("echo", 1, {"main.py": handlers.ECHO}))
    assert 200 == runtime.invoke("echo", b"{}").status

    runtime.set_active("echo", None)

    assert 404 == runtime.invoke("echo", b"{}").status
    wait_for(lambda: not runtime.worker_pids(), what="workers of a removed function to stop")


def test_an_explicit_version_runs_that_version(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """invoke(version=ref) runs a kept version that is not active; its idle worker stops later."""
    v1 = store.add("ver", 1, {"main.py": handlers.VERSION.format(version=1)})
    v2 = store.add("ver", 2, {"main.py": handlers.VERSION.format(version=2)})
    runtime.set_active("ver", v2)

    assert 1 == runtime.invoke("ver", b"{}", version=v1).json()["version"]
    assert 2 == runtime.invoke("ver", b"{}").json()["version"]
    wait_for(lambda: len(runtime.worker_pids()) == 1, what="v1's idle worker to stop")
    assert 1 == runtime.invoke("ver", b"{}", version=v1).json()["version"]


def test_handler_errors_are_500_with_type_and_message(
    runtime: FunctionRuntime, store: PackageStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising handler answers 500 with type and message; the traceback goes to the log only."""
    caplog.set_level(logging.INFO, logger="gitops_sync.functions")
    runtime.set_active("bad", store.add("bad", 1, {"main.py": handlers.MISBEHAVE}))

    result = runtime.invoke("bad", b'{"do": "raise"}', invocation_id="inv-raise")

    assert 500 == result.status
    assert {"error": "bad order id 42", "type": "ValueError"} == result.json()
    wait_for(lambda: "Traceback" in caplog.text, what="the traceback in the log")
    assert "inv-raise" in caplog.text


def test_a_non_json_return_is_500_saying_so(runtime: FunctionRuntime, store: PackageStore) -> None:
    """A handler returning something json cannot encode answers 500 naming the problem."""
    runtime.set_active("bad", store.add("bad", 1, {"main.py": handlers.MISBEHAVE}))

    result = runtime.invoke("bad", b'{"do": "not_json"}')

    assert 500 == result.status
    assert "not JSON-serialisable" in result.json()["error"]


def test_a_handler_that_cannot_load_is_500(runtime: FunctionRuntime, store: PackageStore) -> None:
    """A handler module that fails to import answers 500 naming the handler and the error."""
    runtime.set_active(
        "broken", store.add("broken", 1, {"main.py": "import nowhere_to_be_found\n"})
    )

    result = runtime.invoke("broken", b"{}")

    assert 500 == result.status
    assert "main.handle could not be loaded: ModuleNotFoundError" in result.json()["error"]


def test_output_is_logged_with_function_version_and_invocation(
    runtime: FunctionRuntime, store: PackageStore, caplog: pytest.LogCaptureFixture
) -> None:
    """print() and logging in a handler reach gitops_sync.functions, tagged with the invocation."""
    caplog.set_level(logging.INFO, logger="gitops_sync.functions")
    code = (
        "import logging\n"
        "def handle(event, context):\n"
        "    print('to stdout')\n"
        "    context.logger.warning('via context logger')\n"
        "    logging.getLogger('mine').info('via logging')\n"
        "    return {}\n"
    )
    runtime.set_active("talky", store.add("talky", 4, {"main.py": code}))

    assert 200 == runtime.invoke("talky", b"{}", invocation_id="inv-talk").status

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "gitops_sync.functions"]

    wait_for(lambda: sum("inv-talk" in line for line in lines()) >= 3, what="three log lines")
    tagged = [line for line in lines() if "inv-talk" in line]
    assert all("function=talky version=4 invocation=inv-talk" in line for line in tagged)
    assert any("stdout: to stdout" in line for line in tagged)
    assert any("via context logger" in line for line in tagged)
    assert any("via logging" in line for line in tagged)


def test_unavailable_runtime_is_a_clear_error(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """A runtime this host cannot run answers 502 naming it; nothing runs on another Python."""
    runtime.set_active("old", store.add("old", 1, {"main.py": handlers.ECHO}, runtime="python2.7"))

    result = runtime.invoke("old", b"{}")

    assert 502 == result.status
    assert "python2.7 is not available" in result.json()["error"]


def test_runtimes_lists_every_identifier(runtime: FunctionRuntime) -> None:
    """runtimes() lists the four identifiers; python3.11 is available and names an executable."""
    rows = {row["runtime"]: row for row in runtime.runtimes()}

    assert ["python3.10", "python3.11", "python3.12", "python3.13"] == sorted(rows)
    assert rows["python3.11"]["available"] is True
    assert rows["python3.11"]["executable"]
