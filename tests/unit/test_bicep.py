"""The Bicep templates: they parse, modules fit together, and what Azure gets is safe by default.

Parsed with pycep-parser (no Azure here): structure checks, not a deployment.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from gitops_sync import settings
from tests.unit.test_infra import (
    BICEP,
    BICEP_FILES,
    FUNCTION_APP_BICEP,
    MAIN_BICEP,
    PARAMETERS_EXAMPLE,
    bicep,
    bicep_value,
    declaration,
    function_app_resources,
    function_app_settings,
)

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
# (file, module) of every module declaration in every Bicep file, main.bicep's and nested ones.
# Found by a regex so that a Bicep syntax error fails test_bicep_parses, not collection.
MODULES = sorted(
    (path, name)
    for path in BICEP_FILES
    for name in re.findall(r"^module\s+(\w+)\s", path.read_text(encoding="utf-8"), re.M)
)


@pytest.mark.parametrize(("path", "module"), MODULES, ids=[f"{p.stem}:{m}" for p, m in MODULES])
def test_each_module_gets_exactly_its_parameters(path, module):
    """Every module declaration passes each required parameter of its file and no undeclared one."""
    spec = bicep(path)["modules"][module]
    target = bicep((path.parent / spec["detail"]["path"]).resolve())
    declared = target["parameters"]
    required = {n for n, p in declared.items() if p["default"] is None}
    passed = set(declaration(spec)["params"])
    assert (set(), set()) == (required - passed, passed - set(declared))


def test_nested_modules_are_checked_too():
    """The module list includes the functionapp target's access module, declared in a module."""
    assert ("deploy-target", "targetAccess") in {(p.stem, m) for p, m in MODULES}


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


def _mount() -> dict[str, Any]:
    (config,) = [
        r
        for r in function_app_resources("Microsoft.Web/sites/config")
        if declaration(r)["name"].lower() == "azurestorageaccounts"
    ]
    return config


def test_function_app_mounts_the_share_at_the_workspace_root():
    """The azureStorageAccounts config mounts the workspace account's share at WORKSPACE_ROOT."""
    doc = bicep(FUNCTION_APP_BICEP)
    (mount,) = declaration(_mount())["properties"].values()
    assert "AzureFiles" == mount["type"]
    assert "param:workspaceShareName" == bicep_value(doc, mount["shareName"])
    assert "workspaceStorage" == mount["accountName"]["operator"]["operands"]["operand_1"]
    mount_path = bicep_value(doc, mount["mountPath"])
    assert settings.DEFAULT_WORKSPACE_ROOT == mount_path
    assert mount_path == function_app_settings()["WORKSPACE_ROOT"]


def test_the_share_is_mounted_only_without_the_files_api():
    """With workspaceThroughFilesApi the app mounts nothing (no account key at all)."""
    not_files_api = {
        "operator": {"type": "not", "operands": {"bool_value": "workspaceThroughFilesApi"}}
    }
    assert not_files_api == _mount()["config"].get("condition")
    assert not_files_api == _modules()["workspaceStorage"]["config"].get("condition")


def _storage(module: str) -> dict[str, Any]:
    return bicep(BICEP / "modules" / f"{module}.bicep")


def _resources(doc: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r for r in doc["resources"].values() if r["type"] == type_ and not r.get("existing")]


def test_host_account_refuses_shared_keys_and_the_second_account_holds_the_share():
    """The host account is identity-only; the mounted share lives in the workspace account."""
    host, work = _storage("storage"), _storage("workspace-storage")
    (host_account,) = _resources(host, "Microsoft.Storage/storageAccounts")
    (work_account,) = _resources(work, "Microsoft.Storage/storageAccounts")
    assert (False, True) == (
        declaration(host_account)["properties"]["allowSharedKeyAccess"],
        declaration(work_account)["properties"]["allowSharedKeyAccess"],
    )
    share = "Microsoft.Storage/storageAccounts/fileServices/shares"
    (work_share,) = _resources(work, share)
    assert "workspaceShareName" == declaration(work_share)["name"]
    # In the host account a share exists only for the Files API (no key needed there).
    assert ["workspaceThroughFilesApi"] == [
        r["config"].get("condition") for r in _resources(host, share)
    ]
    assert [] == _resources(work, "Microsoft.Authorization/roleAssignments")


def test_file_data_privileged_contributor_only_with_the_files_api():
    """The identity gets File Data Privileged Contributor only with workspaceThroughFilesApi."""
    host = _storage("storage")
    privileged = "69566ab7-960f-475b-8e7c-b3118f30c6bd"
    assert privileged not in set(host["variables"]["roles"]["value"].values())
    granting = [
        r
        for r in _resources(host, "Microsoft.Authorization/roleAssignments")
        if "storageFileDataPrivilegedContributor" in json.dumps(declaration(r))
    ]
    assert ["workspaceThroughFilesApi"] == [r["config"].get("condition") for r in granting]
    assert privileged == host["variables"]["storageFileDataPrivilegedContributor"]["value"]


def test_site_checks_health_and_allows_no_basic_auth_publishing():
    """healthCheckPath is the health route; HTTPS only, TLS 1.2, SCM and FTP basic auth off."""
    (site,) = function_app_resources("Microsoft.Web/sites")
    props = site["config"]["properties"]
    assert ("/api/health", True, "1.2", "Disabled") == (
        props["siteConfig"]["healthCheckPath"],
        props["httpsOnly"],
        props["siteConfig"]["minTlsVersion"],
        props["siteConfig"]["ftpsState"],
    )
    policies = function_app_resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {"scm": False, "ftp": False} == {
        declaration(p)["name"]: declaration(p)["properties"]["allow"] for p in policies
    }


def test_health_check_path_is_a_public_route():
    """The platform probes healthCheckPath without a key: it is the public health route."""
    from gitops_sync.http.routes import ROUTES

    (site,) = function_app_resources("Microsoft.Web/sites")
    path = site["config"]["properties"]["siteConfig"]["healthCheckPath"]
    assert [("GET", "none")] == [(m, r.auth) for r in ROUTES if r.path == path for m in r.methods]


def test_key_vault_recovers_a_soft_deleted_vault_on_request():
    """Redeploying over a soft-deleted vault is a parameter away: createMode follows it."""
    vault = _storage("keyvault")["resources"]["vault"]
    assert {
        "condition": "recoverSoftDeleted",
        "true_value": "recover",
        "false_value": "default",
    } == (declaration(vault)["properties"]["createMode"]["operator"]["operands"])
    params = bicep(MAIN_BICEP)["parameters"]
    assert False is params["recoverKeyVault"]["default"]
    assert "recoverKeyVault" == declaration(_modules()["keyVault"])["params"]["recoverSoftDeleted"]


def test_function_app_target_is_off_by_default():
    """What DEPLOY_TARGET=functionapp needs is deployed only when deployToFunctionApp is true."""
    params = bicep(MAIN_BICEP)["parameters"]
    assert (False, settings.DEFAULT_PACKAGE_CONTAINER, settings.DEFAULT_VERSIONS_KEPT) == (
        params["deployToFunctionApp"]["default"],
        params["packageContainerName"]["default"],
        params["versionsKept"]["default"],
    )
    assert "deployToFunctionApp" == _modules()["deployTarget"]["config"].get("condition")
    targets = bicep(FUNCTION_APP_BICEP)["variables"]["functionAppTargetSettings"]["value"]
    assert "deployToFunctionApp" == targets["operator"]["operands"]["condition"]
    assert [] == targets["operator"]["operands"]["false_value"]


def test_function_app_target_gets_its_container_and_reader_role():
    """The package container exists, and the target's identity may read it (Blob Data Reader)."""
    doc = _storage("deploy-target")
    (container,) = _resources(doc, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert "packageContainerName" == declaration(container)["name"]
    (reader,) = _resources(doc, "Microsoft.Authorization/roleAssignments")
    assert ("packages", "storageBlobDataReader") == (
        declaration(reader)["scope"],
        declaration(reader)["properties"]["roleDefinitionId"]["function"]["parameters"][
            "resource_name_1"
        ],
    )
    assert (
        "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1" == doc["variables"]["storageBlobDataReader"]["value"]
    )
    principal = declaration(reader)["properties"]["principalId"]["operator"]["operands"]
    assert "targetIdentity" == principal["operand_1"]


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
