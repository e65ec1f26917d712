"""The runtime pins: requirements.txt equals pyproject, each pin is used, debugpy is dev-only.

An unused pin (GitPython was one) ships in every image and venv for nothing.
"""

from __future__ import annotations

import ast
import re
import tomllib
from typing import Any

from tests.unit.test_infra import REPO, REQUIREMENTS, dockerfile_instructions


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip().lower())


def _pins(lines: list[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, sep, version = line.partition("==")
            assert sep, f"{line!r} is not pinned with =="
            pins[_normalise(name)] = version.strip()
    return pins


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_requirements_pin_exactly_the_runtime_dependencies():
    """workflows/requirements.txt (what the image installs) equals pyproject.toml's runtime pins."""
    expected = _pins(_pyproject()["project"]["dependencies"])
    assert expected == _pins(REQUIREMENTS.read_text(encoding="utf-8").splitlines())


def test_dev_image_debugpy_is_the_dev_extra_pin():
    """The dev image's debugpy is the pin of pyproject's dev extra, and never a runtime pin."""
    runs = " ".join(args for keyword, args in dockerfile_instructions() if keyword == "RUN")
    in_image = dict(re.findall(r"\b(debugpy)==([\w.]+)", runs))
    dev = _pins(_pyproject()["project"]["optional-dependencies"]["dev"])
    runtime = _pins(_pyproject()["project"]["dependencies"])
    assert ({"debugpy": dev["debugpy"]}, False) == (in_image, "debugpy" in runtime)


def _imported_modules() -> set[str]:
    """Every module the app (workflows/) imports, with each of its parent packages."""
    found: set[str] = set()
    for path in (REPO / "workflows").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            elif (  # importlib.import_module("name"), as lazy imports do
                isinstance(node, ast.Call)
                and ast.unparse(node.func).endswith("import_module")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and not node.args[0].value.startswith(".")
            ):
                names = [node.args[0].value]
            for name in names:
                parts = name.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found


def _provided_modules(distribution: str) -> set[str]:
    """The importable modules an installed distribution ships (``azure.core``, ``click``, ...)."""
    from importlib import metadata

    modules: set[str] = set()
    for file in metadata.distribution(distribution).files or []:
        parts = file.parts
        if parts[0].endswith((".dist-info", ".data")) or parts[0] in {"..", "bin"}:
            continue
        if file.name == "__init__.py":
            modules.add(".".join(parts[:-1]))
        elif file.suffix == ".py" and len(parts) == 1:
            modules.add(file.stem)
    # azure.core, not azure: a namespace package is shared by many distributions
    return {m for m in modules if not any(m.startswith(o + ".") for o in modules)} or modules


def _required_by_other_pins(name: str, runtime: set[str]) -> list[str]:
    from importlib import metadata

    from packaging.requirements import Requirement

    return sorted(
        other
        for other in runtime - {name}
        for req in metadata.requires(other) or []
        if _normalise(Requirement(req).name) == name and "extra ==" not in req
    )


def test_every_runtime_dependency_is_imported_or_needed_by_one():
    """Each runtime pin is imported by the app, or required by another pin (pinned to hold it)."""
    runtime = set(_pins(_pyproject()["project"]["dependencies"]))
    imported = _imported_modules()
    unused = {
        name
        for name in runtime
        if not _provided_modules(name) & imported and not _required_by_other_pins(name, runtime)
    }
    assert set() == unused


def test_gitpython_is_not_a_dependency():
    """git runs as a subprocess; GitPython is neither pinned nor imported."""
    runtime = _pins(_pyproject()["project"]["dependencies"])
    assert ("gitpython" in runtime, "git" in _imported_modules()) == (False, False)
