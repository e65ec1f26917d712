"""Settings: the only module (with ``cli``) that reads the environment.

Names and defaults are the contract's (``CONTRACT.md``, "Configuration"); the
Function App settings in ``infra/bicep`` and the compose file use the same names,
which ``tests/unit/test_settings_agree.py`` checks.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
DEFAULT_QUEUE = "sync-jobs"
DEFAULT_BRANCH = "main"
DEFAULT_WORKSPACE_ROOT = "/workspace"
DEFAULT_PACKAGE_CONTAINER = "function-packages"
DEFAULT_VERSIONS_KEPT = 10
DEPLOY_TARGETS = ("builtin", "functionapp")
DEFAULT_DEBUGPY_PORT = 5678
#: How App Service writes a Key Vault reference; it stays literal when it cannot be resolved.
_KEY_VAULT_REFERENCE = re.compile(r"\s*@Microsoft\.KeyVault\(", re.IGNORECASE)

log = logging.getLogger("gitops_sync")


def azurite_connection_string(host: str = "127.0.0.1", blob: int = 10000, queue: int = 10001,
                              table: int = 10002) -> str:  # fmt: skip
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://{host}:{blob}/{AZURITE_ACCOUNT};"
        f"QueueEndpoint=http://{host}:{queue}/{AZURITE_ACCOUNT};"
        f"TableEndpoint=http://{host}:{table}/{AZURITE_ACCOUNT};"
    )


@dataclass(frozen=True, slots=True)
class Settings:
    storage_connection: str | None
    storage_account_name: str | None
    webhook_secret: str | None
    repository: str | None
    repo_url: str | None
    branch: str
    git_token: str | None
    workspace_root: Path
    workspace_share: str | None
    queue: str
    api_key: str | None
    cache_dir: Path
    reconcile_interval_s: int
    deploy_target: str = "builtin"
    package_container: str = DEFAULT_PACKAGE_CONTAINER
    versions_kept: int = DEFAULT_VERSIONS_KEPT
    functionapp_id: str | None = None
    identity_id: str | None = None
    source_date_epoch: str | None = None
    #: settings read whose value is a literal ``@Microsoft.KeyVault(...)`` (names, never values)
    unresolved_references: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _ReadRecorder(os.environ if environ is None else environ)
        repository = env.get("SYNC_REPOSITORY") or None
        repo_url = env.get("SYNC_REPO_URL") or (
            f"https://github.com/{repository}.git" if repository else None
        )
        account = env.get("AzureWebJobsStorage__accountName") or None
        conn = env.get("AzureWebJobsStorage") or None
        if conn is None and account is None:
            conn = "UseDevelopmentStorage=true"
        return cls(
            storage_connection=conn,
            storage_account_name=account,
            webhook_secret=env.get("GITHUB_WEBHOOK_SECRET") or None,
            repository=repository,
            repo_url=repo_url,
            branch=env.get("SYNC_BRANCH") or DEFAULT_BRANCH,
            git_token=env.get("GIT_TOKEN") or None,
            workspace_root=Path(env.get("WORKSPACE_ROOT") or DEFAULT_WORKSPACE_ROOT),
            workspace_share=env.get("WORKSPACE_SHARE") or None,
            queue=env.get("SYNC_QUEUE") or DEFAULT_QUEUE,
            api_key=env.get("GITOPS_SYNC_API_KEY") or None,
            cache_dir=Path(env.get("GITOPS_SYNC_CACHE_DIR") or default_cache_dir(env)),
            reconcile_interval_s=int(env.get("SYNC_RECONCILE_INTERVAL_SECONDS") or 300),
            deploy_target=(env.get("DEPLOY_TARGET") or "builtin").strip().lower(),
            package_container=env.get("DEPLOY_PACKAGE_CONTAINER") or DEFAULT_PACKAGE_CONTAINER,
            versions_kept=_positive_int(
                "DEPLOY_VERSIONS_KEPT", env.get("DEPLOY_VERSIONS_KEPT"), DEFAULT_VERSIONS_KEPT
            ),
            functionapp_id=env.get("DEPLOY_FUNCTIONAPP_ID") or None,
            identity_id=env.get("DEPLOY_IDENTITY_ID") or None,
            source_date_epoch=env.get("SOURCE_DATE_EPOCH") or None,
            unresolved_references=env.unresolved_references(),
        )

    def key_vault_problem(self) -> str | None:
        """What to tell an operator when a Key Vault reference was not resolved, or ``None``.

        Covers the settings read here and those read since by name (``app_setting``: a
        connection's secret and token settings).
        """
        names = dict.fromkeys(self.unresolved_references + tuple(_unresolved_by_name))
        return unresolved_reference_message(tuple(names))

    def deploy_problem(self) -> str | None:
        """Why the deploy settings cannot work together, or ``None``."""
        if self.deploy_target not in DEPLOY_TARGETS:
            return f"DEPLOY_TARGET must be one of {', '.join(DEPLOY_TARGETS)}"
        if self.deploy_target == "functionapp":
            missing = [
                name
                for name, value in (
                    ("DEPLOY_FUNCTIONAPP_ID", self.functionapp_id),
                    ("DEPLOY_IDENTITY_ID", self.identity_id),
                )
                if not value
            ]
            if missing:
                return f"DEPLOY_TARGET=functionapp needs {' and '.join(missing)}"
        return None

    @property
    def state_dir(self) -> Path:
        """Where deploy keeps its caches: beside the repository cache."""
        return self.cache_dir.parent

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line or a stored error."""
        return [s for s in (self.webhook_secret, self.git_token, self.api_key) if s]


def is_key_vault_reference(value: str | None) -> bool:
    """True for an app setting App Service left as ``@Microsoft.KeyVault(...)``."""
    return bool(value) and _KEY_VAULT_REFERENCE.match(value or "") is not None


def unresolved_reference_message(names: tuple[str, ...] | list[str]) -> str | None:
    if not names:
        return None
    return (
        f"app setting{'s' if len(names) > 1 else ''} {', '.join(names)} "
        f"{'hold' if len(names) > 1 else 'holds'} an unresolved Key Vault reference: give the "
        "app's identity Key Vault Secrets User on the vault, wait for the role assignment to "
        "propagate, then restart the app"
    )


def log_unresolved_references(settings: Settings) -> None:
    """Say once, at start, which settings hold an unresolved Key Vault reference."""
    if problem := settings.key_vault_problem():
        log.error("%s", problem)


class _ReadRecorder(Mapping[str, str]):
    """The environment, remembering which names were read (to find unresolved references)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._read: dict[str, None] = {}

    def __getitem__(self, name: str) -> str:
        self._read[name] = None
        return self._env[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)

    def unresolved_references(self) -> tuple[str, ...]:
        return tuple(n for n in self._read if is_key_vault_reference(self._env.get(n)))


@dataclass(frozen=True, slots=True)
class DebugOptions:
    """``ENABLE_DEBUGGING`` and friends: whether the Functions worker listens for debugpy."""

    enabled: bool
    wait: bool
    port: int
    #: why the debugger must stay off (the app runs in Azure), or ``None``
    in_azure: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DebugOptions:
        env = os.environ if environ is None else environ
        raw_port = (env.get("GITOPS_SYNC_DEBUGPY_PORT") or "").strip()
        if raw_port and not (raw_port.isdigit() and 0 < int(raw_port) < 65536):
            raise ValueError(f"GITOPS_SYNC_DEBUGPY_PORT must be a port number (got {raw_port!r})")
        azure = [n for n in ("WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME") if env.get(n)]
        return cls(
            enabled=_flag(env.get("ENABLE_DEBUGGING")),
            wait=_flag(env.get("DEBUGPY_WAIT")),
            port=int(raw_port) if raw_port else DEFAULT_DEBUGPY_PORT,
            in_azure=f"{azure[0]} is set" if azure else None,
        )


def _flag(raw: str | None) -> bool:
    return (raw or "").strip().lower() in {"1", "true", "yes", "on"}


def _positive_int(name: str, raw: str | None, default: int) -> int:
    raw = raw or ""
    if not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number (got {raw!r})") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1 (got {value})")
    return value


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gitops-sync" / "repos"


#: Settings read by name whose value was an unresolved Key Vault reference (process-wide).
_unresolved_by_name: dict[str, None] = {}


def app_setting(name: str) -> str | None:
    """One app setting by name: a connection keeps its secret as the NAME of one."""
    value = os.environ.get(name) or None
    if is_key_vault_reference(value) and name not in _unresolved_by_name:
        _unresolved_by_name[name] = None
        log.error("%s", unresolved_reference_message((name,)))
    return value


def forget_unresolved_by_name() -> None:
    """Forget what ``app_setting`` saw (after a restart in tests)."""
    _unresolved_by_name.clear()
