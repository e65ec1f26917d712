"""One set of setting names and defaults: settings.py, the reference, Bicep, compose, image.

A name misspelled in any one place (``SYNC_QEUE``) is a setting silently never read; these tests
find it. ``WHERE`` below says, for each contract setting, where it must be set and where not:
the Function App (Bicep), the dev container (compose) and ``workflows/local.settings.json.example``
(Core Tools' ``func start``). The contract itself (``../shared/CONTRACT.md``) is an optional
extra check, skipped when absent; ``docs/reference.md`` is what users read.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass

import pytest

from gitops_sync import settings
from gitops_sync.settings import Settings
from tests.unit.test_infra import (
    MAIN_BICEP,
    REPO,
    bicep,
    compose_default,
    compose_env,
    declaration,
    dockerfile_env,
    function_app_settings,
)

SETTINGS_PY = REPO / "workflows" / "gitops_sync" / "settings.py"
CONTRACT = REPO.parent / "shared" / "CONTRACT.md"
HOST_JSON = REPO / "workflows" / "host.json"
APP_ROOT = REPO / "workflows"
LOCAL_SETTINGS = APP_ROOT / "local.settings.json.example"


@dataclass(frozen=True)
class Where:
    bicep: bool
    compose: bool
    local: bool
    why: str = ""


#: Every contract setting: does the Function App (Bicep), the dev compose, local.settings set it?
WHERE = {
    "AzureWebJobsStorage": Where(False, True, True, "in Azure the identity-based form replaces it"),
    "AzureWebJobsStorage__accountName": Where(True, False, False, "identity-based, Azure only"),
    "GITHUB_WEBHOOK_SECRET": Where(True, True, True),
    "SYNC_REPOSITORY": Where(True, True, True),
    "SYNC_REPO_URL": Where(True, True, True),
    "SYNC_BRANCH": Where(True, True, True),
    "GIT_TOKEN": Where(True, True, True),
    "WORKSPACE_ROOT": Where(True, True, True),
    "WORKSPACE_SHARE": Where(
        True, False, False, "Azure only, on request (workspaceThroughFilesApi)"
    ),
    "SYNC_QUEUE": Where(True, True, True),
    "GITOPS_SYNC_API_KEY": Where(False, False, False, "the Functions host checks function keys"),
    "SYNC_RECONCILE_INTERVAL_SECONDS": Where(False, False, False, "the default suits all"),
    "GITOPS_SYNC_CACHE_DIR": Where(False, False, False, "the image sets it (container disk)"),
    "DEPLOY_TARGET": Where(True, True, True, "Bicep: deployToFunctionApp picks the value"),
    "DEPLOY_PACKAGE_CONTAINER": Where(True, True, True),
    "DEPLOY_VERSIONS_KEPT": Where(True, True, True),
    "DEPLOY_FUNCTIONAPP_ID": Where(True, False, False, "Bicep sets it with deployToFunctionApp"),
    "DEPLOY_IDENTITY_ID": Where(True, False, False, "Bicep sets it with deployToFunctionApp"),
}

#: Settings of the app beyond the contract's table (the debugger; docs/reference.md lists them).
DEBUG_SETTINGS = {
    "ENABLE_DEBUGGING": Where(False, True, True, "never in Azure: the app refuses it there"),
    "DEBUGPY_WAIT": Where(False, True, True),
    "GITOPS_SYNC_DEBUGPY_PORT": Where(False, True, True),
}

#: Settings of the Functions host, the platform and the Azure SDK (documented by Microsoft).
HOST_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "PYTHON_ENABLE_INIT_INDEXING",
    "WEBSITES_ENABLE_APP_SERVICE_STORAGE",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AZURE_CLIENT_ID",
    "AzureWebJobsScriptRoot",
    "AzureFunctionsJobHost__Logging__Console__IsEnabled",
    "PYTHON_ISOLATE_WORKER_DEPENDENCIES",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "PYTHONDONTWRITEBYTECODE",
}

#: Environment names settings.py may read beyond the contract: not settings of the product.
#: (WEBSITE_*: App Service sets them; their presence means "in Azure", so no debugger.)
#: (SOURCE_DATE_EPOCH: the reproducible-builds convention for package timestamps.)
PLATFORM_NAMES = {"XDG_CACHE_HOME", "WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME", "SOURCE_DATE_EPOCH"}


def local_settings() -> dict[str, str]:
    """The ``Values`` of ``workflows/local.settings.json.example`` (Core Tools' app settings)."""
    doc = json.loads(LOCAL_SETTINGS.read_text(encoding="utf-8"))
    assert False is doc["IsEncrypted"]
    return {str(k): str(v) for k, v in doc["Values"].items()}


def settings_py_names() -> set[str]:
    """Names settings.py reads: literals passed to ``env.get``, ``os.environ.get``, ``getenv``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(SETTINGS_PY.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        first, func = node.args[0], node.func
        reads_env = (
            isinstance(func, ast.Attribute)
            and func.attr == "get"
            and ast.unparse(func.value) in {"env", "os.environ", "environ"}
        ) or ast.unparse(func) in {"os.getenv", "getenv"}
        if reads_env and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
    return names


def contract_table() -> dict[str, str]:
    """The contract's configuration table: name -> default cell (plus the identity-based alias)."""
    if not CONTRACT.exists():
        pytest.skip(f"{CONTRACT} is absent (CI clones have shared/ beside the repository)")
    text = CONTRACT.read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    table: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or not cells[0].startswith("`"):
            continue
        table[cells[0].strip("`")] = cells[1]
        for alias in re.findall(r"`(\w+__\w+)`", cells[2]):
            table.setdefault(alias, "")
    assert table, f"no configuration table found in {CONTRACT}"
    return table


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


# --- settings.py and the contract ------------------------------------------------------------


def test_contract_names_are_the_table_here():
    """The contract's settings are exactly the ones WHERE places (so none is forgotten)."""
    assert sorted(WHERE) == sorted(contract_table())


@pytest.mark.parametrize("name", sorted(WHERE))
def test_settings_py_reads_every_contract_setting(name):
    """settings.py reads each contract setting by its exact name."""
    assert name in settings_py_names()


def test_settings_py_reads_no_near_miss_of_a_contract_name():
    """Extra names settings.py reads are project-namespaced and not a typo of a contract name."""
    extras = settings_py_names() - set(WHERE) - PLATFORM_NAMES - set(DEBUG_SETTINGS)
    near_misses = {
        (extra, name)
        for extra in extras
        for name in WHERE
        if extra.lower() == name.lower() or _edit_distance(extra, name) <= 2
    }
    assert set() == near_misses
    assert [] == sorted(e for e in extras if not e.startswith(("SYNC_", "GITOPS_SYNC_")))


@pytest.mark.parametrize("name", sorted(DEBUG_SETTINGS))
def test_settings_py_reads_every_debug_setting(name):
    """settings.py reads each debugger setting by its exact name."""
    assert name in settings_py_names()


def _literal_defaults() -> dict[str, str]:
    """Contract defaults that are one literal value, like `sync-jobs`."""
    found = {}
    for name, cell in contract_table().items():
        m = re.fullmatch(r"`([^`$]+)`", cell)
        if m:
            found[name] = m[1]
    return found


def test_contract_has_literal_defaults():
    """The contract's table yields the literal defaults the next test compares."""
    assert {"SYNC_BRANCH", "SYNC_QUEUE", "WORKSPACE_ROOT"} <= set(_literal_defaults())


@pytest.mark.parametrize("name", ["SYNC_BRANCH", "SYNC_QUEUE", "WORKSPACE_ROOT"])
def test_settings_defaults_are_the_contract_defaults(name):
    """Setting the contract's default explicitly changes nothing; another value does."""
    default = _literal_defaults()[name]
    assert Settings.from_env({}) == Settings.from_env({name: default})
    assert Settings.from_env({}) != Settings.from_env({name: default + "-other"})


def test_repo_url_default_is_the_contract_template():
    """SYNC_REPO_URL defaults to the contract's template filled with SYNC_REPOSITORY."""
    template = contract_table()["SYNC_REPO_URL"].strip("`")
    env = {"SYNC_REPOSITORY": "octo-org/octo-repo"}
    filled = template.replace("$SYNC_REPOSITORY", env["SYNC_REPOSITORY"])
    assert Settings.from_env({**env, "SYNC_REPO_URL": filled}) == Settings.from_env(env)


# --- Bicep, compose and the Dockerfile -------------------------------------------------------


def _known() -> set[str]:
    return set(WHERE) | settings_py_names() | HOST_SETTINGS


PLACES = {
    "bicep": function_app_settings,
    "compose": compose_env,
    "dockerfile": dockerfile_env,
    "local": local_settings,
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_every_name_set_is_known(place):
    """Bicep, compose, the Dockerfile and local.settings set only names the app or host reads."""
    assert [] == sorted(set(PLACES[place]()) - _known())


_ALL = {**WHERE, **DEBUG_SETTINGS}


@pytest.mark.parametrize("name", sorted(_ALL))
def test_bicep_sets_the_settings_it_should(name):
    """The Function App sets each setting meant for Azure, and no other."""
    assert _ALL[name].bicep == (name in function_app_settings())


@pytest.mark.parametrize("name", sorted(_ALL))
def test_compose_sets_the_settings_it_should(name):
    """The dev container sets each setting meant for development, and no other."""
    assert _ALL[name].compose == (name in compose_env())


@pytest.mark.parametrize("name", sorted(_ALL))
def test_local_settings_set_the_settings_they_should(name):
    """local.settings.json.example sets each setting meant for ``func start``, and no other."""
    assert _ALL[name].local == (name in local_settings())


@pytest.mark.parametrize("place", ["bicep", "dockerfile", "local"])
def test_the_app_pins_win_over_the_python_workers(place):
    """PYTHON_ISOLATE_WORKER_DEPENDENCIES=1 wherever the Functions host runs the app."""
    assert "1" == PLACES[place]()["PYTHON_ISOLATE_WORKER_DEPENDENCIES"]


def test_local_settings_defaults_are_settings_py_defaults():
    """The defaults local.settings.json.example spells out are settings.py's."""
    local = local_settings()
    assert (
        settings.DEFAULT_QUEUE,
        settings.DEFAULT_BRANCH,
        "builtin",
        settings.DEFAULT_PACKAGE_CONTAINER,
        str(settings.DEFAULT_VERSIONS_KEPT),
        str(settings.DEFAULT_DEBUGPY_PORT),
    ) == tuple(
        local[n]
        for n in ("SYNC_QUEUE", "SYNC_BRANCH", "DEPLOY_TARGET", "DEPLOY_PACKAGE_CONTAINER",
                  "DEPLOY_VERSIONS_KEPT", "GITOPS_SYNC_DEBUGPY_PORT")
    )  # fmt: skip
    assert Settings.from_env({}) == Settings.from_env(
        {k: v for k, v in local.items() if k.startswith("DEPLOY_")}
    )


def test_deploy_defaults_in_compose_are_settings_py_defaults():
    """The DEPLOY_* values compose falls back to change nothing from settings.py's defaults."""
    env = {n: compose_default(v)[1] for n, v in compose_env().items() if n.startswith("DEPLOY_")}
    assert {"DEPLOY_TARGET", "DEPLOY_PACKAGE_CONTAINER", "DEPLOY_VERSIONS_KEPT"} == set(env)
    assert Settings.from_env({}) == Settings.from_env(env)


def test_bicep_deploy_settings_follow_main_parameters():
    """DEPLOY_* app settings come from main.bicep's parameters, passed through unchanged."""
    app = function_app_settings()
    assert ("param:packageContainerName", "deployToFunctionApp") == (
        app["DEPLOY_PACKAGE_CONTAINER"],
        app["DEPLOY_TARGET"]["operator"]["operands"]["condition"],
    )
    target = app["DEPLOY_TARGET"]["operator"]["operands"]
    assert ("functionapp", "builtin") == (target["true_value"], target["false_value"])
    assert set(settings.DEPLOY_TARGETS) == {target["true_value"], target["false_value"]}
    params = declaration(bicep(MAIN_BICEP)["modules"]["functionApp"])["params"]
    for name in ("deployToFunctionApp", "packageContainerName", "versionsKept",
                 "targetFunctionAppId", "targetIdentityId"):  # fmt: skip
        assert name == params[name]


def test_compose_passes_each_setting_from_the_same_shell_variable():
    """``NAME: ${NAME:-...}``: a compose setting is read from the shell variable of its own name."""
    mismatched = {
        name: var
        for name, value in compose_env().items()
        if name in WHERE and (var := compose_default(value)[0]) is not None and var != name
    }
    assert {} == mismatched


def test_defaults_repeated_in_compose_are_settings_py_defaults():
    """The queue, branch and workspace root compose falls back to are settings.py's defaults."""
    env = compose_env()
    assert (settings.DEFAULT_QUEUE, settings.DEFAULT_BRANCH, settings.DEFAULT_WORKSPACE_ROOT) == (
        compose_default(env["SYNC_QUEUE"])[1],
        compose_default(env["SYNC_BRANCH"])[1],
        compose_default(env["WORKSPACE_ROOT"])[1],
    )


def test_dockerfile_workspace_root_is_the_default():
    """The image's WORKSPACE_ROOT, when it sets one, is settings.py's default."""
    assert dockerfile_env().get("WORKSPACE_ROOT", settings.DEFAULT_WORKSPACE_ROOT) == (
        settings.DEFAULT_WORKSPACE_ROOT
    )


def test_defaults_repeated_in_bicep_are_settings_py_defaults():
    """main.bicep's queue and branch defaults are settings.py's; the app sets what main passes."""
    params = bicep(MAIN_BICEP)["parameters"]
    assert (settings.DEFAULT_QUEUE, settings.DEFAULT_BRANCH) == (
        params["syncQueueName"]["default"],
        params["syncBranch"]["default"],
    )
    app = function_app_settings()
    assert ("param:syncQueueName", "param:syncBranch") == (app["SYNC_QUEUE"], app["SYNC_BRANCH"])
    modules = bicep(MAIN_BICEP)["modules"]
    for module in ("functionApp", "storage"):
        # The queue the storage module creates is the one the app is told to use.
        assert "syncQueueName" == declaration(modules[module])["params"]["syncQueueName"]


# --- host.json and the app's binding expressions ---------------------------------------------


def _host_json() -> dict:
    return json.loads(HOST_JSON.read_text(encoding="utf-8"))


def test_max_dequeue_count_agrees():
    """host.json's maxDequeueCount is what the local worker uses and what Bicep/compose repeat."""
    configured = _host_json().get("extensions", {}).get("queues", {}).get("maxDequeueCount")
    assert isinstance(configured, int) and configured > 0, "host.json sets no maxDequeueCount"
    from gitops_sync.local.poller import QueueOptions

    assert configured == QueueOptions.from_host_json().max_dequeue_count
    override = "AzureFunctionsJobHost__extensions__queues__maxDequeueCount"
    for place in (function_app_settings(), compose_env()):
        assert str(configured) == str(place.get(override, configured))


def _trigger_modules() -> list[tuple[str, ast.Module]]:
    """The app's modules that use azure.functions: only they declare triggers."""
    found = []
    for path in sorted(APP_ROOT.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if ".python_packages" not in path.parts and "azure.functions" in source:
            found.append((str(path.relative_to(REPO)), ast.parse(source)))
    return found


def _keyword_arguments() -> list[tuple[str, str, ast.expr]]:
    """(file, keyword, value expression) of every keyword argument in the trigger modules."""
    return [
        (path, kw.arg, kw.value)
        for path, tree in _trigger_modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg
    ]


def _binding_arguments() -> list[tuple[str, str, str]]:
    """(file, keyword, value) of each string-literal keyword argument in the trigger modules."""
    return [
        (path, kw, value.value)
        for path, kw, value in _keyword_arguments()
        if isinstance(value, ast.Constant) and isinstance(value.value, str)
    ]


def test_queue_trigger_follows_sync_queue():
    """A queue trigger's queue is %SYNC_QUEUE% or the Settings queue, never a hard-coded name."""
    queues = [(path, ast.unparse(v)) for path, kw, v in _keyword_arguments() if kw == "queue_name"]
    assert queues, "the app declares no queue trigger"
    follows = re.compile(r"'%SYNC_QUEUE%'|\w+\.queue")  # binding expression or Settings.queue
    assert [] == [(path, value) for path, value in queues if not follows.fullmatch(value)]


def test_trigger_connections_are_configured():
    """A trigger's ``connection`` names a storage setting Bicep and compose provide."""
    connections = {value for _, kw, value in _binding_arguments() if kw == "connection"}
    assert connections, "no trigger names its storage connection"
    app, dev = function_app_settings(), compose_env()
    assert [] == sorted(
        c for c in connections if not ({c, f"{c}__accountName"} & set(app) and c in dev)
    )
