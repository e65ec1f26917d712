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
        )

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line or a stored error."""
        return [s for s in (self.webhook_secret, self.git_token, self.api_key) if s]


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gitops-sync" / "repos"


def app_setting(name: str) -> str | None:
    """One app setting by name: a connection keeps its secret as the NAME of one."""
    return os.environ.get(name) or None
