"""Other Python runtimes: the stdlib-only bootstrap serves a function under each one found."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_sync.runtime import FunctionRuntime, find_interpreter

from .packages import PackageStore

CODE = "import sys\ndef handle(event, context):\n    return list(sys.version_info[:2])\n"


@pytest.fixture()
def pyenv_versions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lets pyenv shims (if this host uses pyenv) resolve every installed version."""
    monkeypatch.setenv("PYENV_VERSION", "3.11.7:3.10.13:3.12.1:3.13.0")
    find_interpreter.cache_clear()
    yield
    find_interpreter.cache_clear()


@pytest.mark.parametrize("runtime_id", ["python3.10", "python3.12", "python3.13"])
@pytest.mark.usefixtures("pyenv_versions")
def test_a_function_runs_under_its_own_python(
    runtime: FunctionRuntime, store: PackageStore, runtime_id: str
) -> None:
    """A function whose runtime names another Python answers from that interpreter."""
    if find_interpreter(runtime_id) is None:
        pytest.skip(f"{runtime_id} is not installed on this host")
    ref = store.add("pyver", 1, {"main.py": CODE}, runtime=runtime_id)
    runtime.set_active("pyver", ref)

    result = runtime.invoke("pyver", b"{}")

    assert 200 == result.status
    assert runtime_id == "python{}.{}".format(*result.json())


def test_the_bootstrap_imports_the_stdlib_only() -> None:
    """bootstrap.py imports nothing outside the standard library (it runs under any Python)."""
    from gitops_sync.runtime import bootstrap

    tree = ast.parse(Path(bootstrap.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }

    assert set() == {name for name in imported if name not in sys.stdlib_module_names}
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))
