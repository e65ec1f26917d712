"""Settings: the only module (with ``cli``) that reads the environment.

Names and defaults are the contract's (``CONTRACT.md``, "Configuration"); the
Function App settings in ``infra/bicep`` and the compose file use the same names,
which ``tests/unit/test_settings_agree.py`` checks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
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
        )

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


def app_setting(name: str) -> str | None:
    """One app setting by name: a connection keeps its secret as the NAME of one."""
    return os.environ.get(name) or None
