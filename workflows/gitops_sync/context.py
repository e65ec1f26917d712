"""``AppContext``: settings plus the storage adapters, built once per process.

Both hosts (the Functions app and the local server) build one with
``AppContext.from_settings`` and hand it to every route handler and the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .adapters.dir_store import DirectoryStore
from .adapters.leases import WorkspaceLeases
from .adapters.packages import PackageBlobs
from .adapters.pip_deps import PipInstaller
from .adapters.queues import JobQueue
from .adapters.tables import Tables
from .adapters.versions import VersionStore
from .connections import DEFAULT_ID, ConnectionStore, HeadStore, workspace_clash
from .core.errors import UsageError
from .deploy.live import LiveFunctions
from .deploy.reconcile import Deployer
from .deploy.service import FunctionsService
from .jobs import JobStore
from .ports import WorkspaceStore
from .settings import Settings, app_setting, azurite_connection_string

#: host.json's queues.maxDequeueCount: the attempt that fails last records the job failed
MAX_DEQUEUE = 5
DEFAULT_PREFIX = "gitopssync"


def runtime_problem(runtime: str) -> str | None:
    """Why this host cannot run ``runtime`` (e.g. ``python3.12``), or None when it can."""
    from .runtime.interpreters import find_interpreter  # stdlib only: cheap to import

    if find_interpreter(runtime) is not None:
        return None
    return f"{runtime} is not available on this host (GET /api/runtimes lists what is)"


#: the Python the target Function App runs (infra/bicep sets linuxFxVersion to match)
FUNCTIONAPP_RUNTIME = "python3.11"


def functionapp_runtime_problem(runtime: str) -> str | None:
    """With ``DEPLOY_TARGET=functionapp`` every function runs on the app's one Python."""
    if runtime == FUNCTIONAPP_RUNTIME:
        return None
    return f"the function app runs {FUNCTIONAPP_RUNTIME}, not {runtime}"


def storage_connection(settings: Settings) -> str | None:
    conn = settings.storage_connection
    if conn and conn.replace(" ", "").lower() == "usedevelopmentstorage=true":
        return azurite_connection_string()  # not every SDK here parses the shorthand
    return conn


@dataclass
class AppContext:
    settings: Settings
    tables: Tables
    queue: JobQueue
    leases: WorkspaceLeases
    connections: ConnectionStore
    heads: HeadStore
    jobs: JobStore
    deployer: Deployer
    enforce_keys: bool = False
    max_dequeue: int = MAX_DEQUEUE
    lease_wait_s: float = 30.0  # how long a job waits for another sync of its workspace
    _live: LiveFunctions | None = field(default=None, repr=False)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        enforce_keys: bool = False,
        prefix: str = DEFAULT_PREFIX,
        lookup: Callable[[str], str | None] = app_setting,
        **options: Any,
    ) -> AppContext:
        """Build the adapters (no network I/O here: tables and queues are created on use).

        ``prefix`` names the tables and the lease container, so two stacks (or two
        tests) can share one storage account without seeing each other.
        """
        conn = storage_connection(settings)
        leases_container = f"{prefix.lower()}-leases"
        if conn:
            tables = Tables.from_connection_string(conn, prefix)
            queue = JobQueue.from_connection_string(conn, settings.queue)
            leases = WorkspaceLeases.from_connection_string(conn, leases_container)
            blobs = PackageBlobs.from_connection_string(conn, settings.package_container)
        elif settings.storage_account_name:
            from azure.identity import DefaultAzureCredential

            cred = DefaultAzureCredential()
            account = settings.storage_account_name
            tables = Tables.from_account(account, cred, prefix)
            queue = JobQueue.from_account(account, cred, settings.queue)
            leases = WorkspaceLeases.from_account(account, cred, leases_container)
            blobs = PackageBlobs.from_account(account, cred, settings.package_container)
        else:
            raise UsageError("no storage configured: set AzureWebJobsStorage")
        problem = settings.deploy_problem()
        if problem:
            raise UsageError(problem)
        deployer = Deployer(
            versions=VersionStore(tables),
            blobs=blobs,
            pip=PipInstaller(settings.state_dir / "deps"),
            versions_kept=settings.versions_kept,
            runtime_problem=runtime_problem,
            source_date_epoch=settings.source_date_epoch,
        )
        if settings.deploy_target == "functionapp":
            from .deploy.target import FunctionAppTarget

            app_id = settings.functionapp_id or ""

            def arm() -> Any:
                from .adapters.arm import ArmFunctionApp

                return ArmFunctionApp.from_resource_id(app_id)

            deployer.runtime_problem = functionapp_runtime_problem
            deployer.activate_app = FunctionAppTarget(
                deployer.versions,
                blobs,
                arm,
                identity_id=settings.identity_id or "",
                source_date_epoch=settings.source_date_epoch,
            )
        return cls(
            settings=settings,
            tables=tables,
            queue=queue,
            leases=leases,
            connections=ConnectionStore(tables, settings, lookup),
            heads=HeadStore(tables),
            jobs=JobStore(tables),
            deployer=deployer,
            enforce_keys=enforce_keys,
            **options,
        )

    @property
    def functions(self) -> FunctionsService:
        return FunctionsService(self.deployer)

    @property
    def live(self) -> LiveFunctions | None:
        """This process's function runtime, fed the active versions (builtin target only)."""
        if self.settings.deploy_target != "builtin":
            return None
        if self._live is None:
            settings = self.settings

            def make_runtime(load_package: Callable[[Any], bytes]) -> Any:
                from .runtime import FunctionRuntime  # only a serving process needs it

                return FunctionRuntime(
                    cache_dir=settings.state_dir / "functions",
                    load_package=load_package,
                    lookup_setting=app_setting,
                )

            self._live = LiveFunctions(self.deployer, make_runtime)
            self.deployer.on_change = self._live.notify
            self._live.start()
        return self._live

    def close(self) -> None:
        """Stop what this context started (the function runtime's workers)."""
        if self._live is not None:
            self._live.close()
            self._live = None

    def secrets(self) -> list[str]:
        """Every secret value known to this process (for redaction)."""
        return self.settings.secrets()

    def workspace_store(self, connection_id: str | None = None) -> WorkspaceStore:
        """The workspace of a connection (``None``: the default one, ``WORKSPACE_ROOT``)."""
        # A new store each time: stores cache what they saw, and syncs change it.
        key = connection_id or DEFAULT_ID
        share = self.settings.workspace_share
        folder: str | None = None
        if key != DEFAULT_ID:
            conn = self.connections.get(key)
            if conn is None:
                raise UsageError(f"no connection {key!r}")
            default = self.connections.default()
            clash = workspace_clash(conn, [default] if default else [])
            if clash:  # e.g. added before SYNC_REPOSITORY was set: refuse, never wipe
                raise UsageError(f"connection {key}: {clash}")
            share, folder = conn.share, conn.workspace or (None if conn.share else conn.id)
        store: WorkspaceStore
        if share:
            from .adapters.azure_files import AzureFilesStore  # only Azure Files needs it

            conn_str = storage_connection(self.settings)
            account = self.settings.storage_account_name
            if conn_str:
                store = AzureFilesStore.from_connection_string(conn_str, share)
            elif account:
                from azure.identity import DefaultAzureCredential

                store = AzureFilesStore.from_account_name(account, share, DefaultAzureCredential())
            else:
                raise UsageError("WORKSPACE_SHARE needs AzureWebJobsStorage")
        else:
            root: Path = self.settings.workspace_root
            store = DirectoryStore(root / folder if folder else root)
        return store
