"""The generated Function App is real code: unpacked, imported with the real ``azure.functions``
library, its functions indexed and called with real ``func.HttpRequest`` objects."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest

from gitops_sync.core.appgen import AppPackage, build_app_package
from tests.function_packages import dist, function_package

GREET = """
import greeting
import tinydep
from common import shout

def handle(event, context):
    return {
        "who": "greet",
        "text": shout(greeting.hello(event["name"])),
        "dep": tinydep.VALUE,
        "function_name": context.function_name,
        "version": context.version,
        "sha256": context.sha256,
        "invocation_id": context.invocation_id,
        "remaining": context.remaining_time(),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "env": __import__("os").environ.get("GREET_STYLE"),
    }
"""
ECHO = """
from common import shout

def handle(event, context):
    context.logger.info("echo called")
    if event.get("fail"):
        raise KeyError("asked to fail")
    if event.get("unserialisable"):
        return {"x": object()}
    return {"who": "echo", "event": event, "shout": shout("x")}
"""

NAMESPACED = """
from shared import tools

def handle(event, context):
    return {"twice": tools.twice(event["n"])}
"""


def _packages() -> list[tuple[str, str, bytes]]:
    common = "def shout(text):\n    return text.upper() + '!'\n"
    return [
        function_package(
            "greet",
            {
                "main.py": GREET,
                "greeting.py": "def hello(name):\n    return 'hello ' + name\n",
                "_include/common/__init__.py": common,
                **dist("tinydep", "1.0", {"tinydep/__init__.py": "VALUE = 42\n"}),
            },
            requirements=[{"name": "tinydep", "version": "1.0", "sha256": "ab" * 32}],
            environment={"GREET_STYLE": "loud"},
            timeout_seconds=5,
        ),
        function_package(
            "echo-back",
            {"main.py": ECHO, "_include/common/__init__.py": "def shout(t):\n    return 'echo'\n"},
        ),
        function_package("broken", {"main.py": "import not_there_anywhere\n"}),
        function_package(
            "spaced",  # an include directory without __init__.py: a namespace package
            {
                "main.py": NAMESPACED,
                "_include/shared/tools.py": "def twice(x):\n    return 2 * x\n",
            },
        ),
    ]


@pytest.fixture()
def isolated() -> Iterator[None]:
    """Put sys.path, sys.modules and os.environ back as they were after the test."""
    path, modules, env = list(sys.path), dict(sys.modules), dict(os.environ)
    yield
    sys.path[:] = path
    for key in set(sys.modules) - set(modules):
        del sys.modules[key]
    os.environ.clear()
    os.environ.update(env)


def _load(app: AppPackage, where: Path) -> ModuleType:
    with zipfile.ZipFile(io.BytesIO(app.data)) as zf:
        zf.extractall(where)
    spec = importlib.util.spec_from_file_location(
        f"generated_app_{where.name}", where / "function_app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def generated(tmp_path: Path, isolated: None) -> tuple[AppPackage, dict[str, Any]]:
    app = build_app_package(_packages(), versions={"greet": 7})
    module = _load(app, tmp_path / "app")
    return app, {f.get_function_name(): f for f in module.app.get_functions()}


def _post(function: Any, body: bytes, route: str) -> tuple[int, Any]:
    request = func.HttpRequest("POST", f"http://localhost/api/{route}", body=body)
    response = function.get_user_function()(request)
    return response.status_code, json.loads(response.get_body())


def test_registers_one_post_function_per_user_function_and_the_package_route(generated):
    """Each user function is a FUNCTION-key POST at functions/<name>/invoke; the package
    route is an anonymous GET."""
    app, functions = generated
    assert {
        "invoke_greet", "invoke_echo_back", "invoke_broken", "invoke_spaced", "gitops_sync_package"
    } == set(functions)  # fmt: skip
    for described in app.functions:
        trigger = functions[described.function_name].get_trigger()
        assert (f"functions/{described.name}/invoke", ["POST"]) == (
            trigger.route,
            [m.value for m in trigger.methods],
        )
        assert func.AuthLevel.FUNCTION == trigger.auth_level
    package = functions["gitops_sync_package"].get_trigger()
    assert ("gitops-sync/package", func.AuthLevel.ANONYMOUS) == (package.route, package.auth_level)


def test_package_route_answers_the_app_key(generated):
    """GET gitops-sync/package answers the key the package was built with."""
    app, functions = generated
    request = func.HttpRequest("GET", "http://localhost/api/gitops-sync/package", body=b"")
    response = functions["gitops_sync_package"].get_user_function()(request)
    assert (200, {"key": app.key}) == (response.status_code, json.loads(response.get_body()))


def test_handler_gets_the_event_and_a_context_and_sees_include_deps_and_environment(generated):
    """A call runs the handler with the JSON body as event: its own module, its include,
    its _deps package (from .python_packages) and its environment are all visible."""
    app, functions = generated
    status, body = _post(functions["invoke_greet"], b'{"name": "ada"}', "functions/greet/invoke")
    greet = next(f for f in app.functions if f.name == "greet")
    assert 200 == status
    assert ("greet", "HELLO ADA!", 42, "greet", 7, greet.sha256, "loud") == (
        body["who"], body["text"], body["dep"], body["function_name"], body["version"],
        body["sha256"], body["env"]
    )  # fmt: skip
    assert 0 < body["remaining"] <= 5
    assert 0 < body["remaining_ms"] <= 5000  # the builtin runtime's name for the same thing
    assert 36 == len(body["invocation_id"])


def test_an_include_directory_without_init_is_importable(generated):
    """include "lib/shared" without __init__.py: `from shared import tools` works."""
    _, functions = generated
    assert (200, {"twice": 42}) == _post(functions["invoke_spaced"], b'{"n": 21}', "x")


def test_two_functions_with_main_py_each_get_their_own_modules(generated):
    """Both functions have main.py and an include module 'common': each sees its own."""
    _, functions = generated
    status, body = _post(functions["invoke_echo_back"], b'{"a": 1}', "functions/echo-back/invoke")
    assert (200, {"who": "echo", "event": {"a": 1}, "shout": "echo"}) == (status, body)
    status, body = _post(functions["invoke_greet"], b'{"name": "b"}', "functions/greet/invoke")
    assert (200, "greet", "HELLO B!") == (status, body["who"], body["text"])
    assert "main" not in sys.modules and "common" not in sys.modules


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", (400, "BadRequest")),
        (b'{"fail": true}', (500, "KeyError")),
        (b'{"unserialisable": true}', (500, "TypeError")),
    ],
    ids=["non-json-body", "handler-raised", "answer-not-json"],
)
def test_errors_answer_type_and_message(generated, body: bytes, expected: tuple[int, str]):
    """A non-JSON body is 400; a handler that raises (or answers non-JSON) is 500 with the
    exception's type and message."""
    _, functions = generated
    status, answer = _post(functions["invoke_echo_back"], body, "functions/echo-back/invoke")
    assert expected == (status, answer["error"]["type"])
    assert answer["error"]["message"]


def test_empty_body_is_an_empty_event(generated):
    """A POST without a body calls the handler with {} as event."""
    _, functions = generated
    status, body = _post(functions["invoke_echo_back"], b"", "functions/echo-back/invoke")
    assert (200, {}) == (status, body["event"])


def test_a_function_that_cannot_load_answers_500_and_the_others_still_work(generated):
    """A handler whose import fails is still registered: it answers 500 naming the error."""
    _, functions = generated
    status, body = _post(functions["invoke_broken"], b"{}", "functions/broken/invoke")
    assert (500, "LoadError") == (status, body["error"]["type"])
    assert "not_there_anywhere" in body["error"]["message"]
    assert 200 == _post(functions["invoke_greet"], b'{"name": "c"}', "x")[0]


def test_same_package_imported_twice_in_one_process_keeps_functions_apart(
    tmp_path: Path, isolated: None
):
    """Loading a second app copy in the same process still gives each function its own main."""
    packages: Sequence[tuple[str, str, bytes]] = _packages()[:2]
    app = build_app_package(packages)
    first = _load(app, tmp_path / "one")
    second = _load(app, tmp_path / "two")
    for module in (first, second):
        fns = {f.get_function_name(): f for f in module.app.get_functions()}
        assert "echo" == _post(fns["invoke_echo_back"], b"{}", "x")[1]["who"]
        assert "greet" == _post(fns["invoke_greet"], b'{"name": "d"}', "x")[1]["who"]
