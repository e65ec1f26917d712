"""This process's view of the active versions, kept in step with the versions table.

The worker that deploys may be another process (or machine) than the one that
serves invocations, so the serving process re-reads the function rows every
``refresh_s`` seconds in the background (and at once when a deploy or a
rollback runs in-process) and tells the runtime which version is active.
Version rows are immutable, so they are cached.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..adapters.versions import REMOVED, FunctionRecord, VersionRecord
from ..core.errors import GitopsSyncError
from .reconcile import Deployer

log = logging.getLogger("gitops_sync")


class Runtime(Protocol):
    """What ``LiveFunctions`` needs of the function runtime (``gitops_sync.runtime``)."""

    def set_active(self, name: str, ref: Any) -> None: ...
    def invoke(
        self, name: str, body: bytes, *, version: Any = None, invocation_id: str | None = None
    ) -> Any: ...
    def describe(self, name: str) -> dict[str, Any]: ...
    def prune_cache(self, name: str, kept_versions: set[int]) -> None: ...
    def close(self) -> None: ...


RuntimeFactory = Callable[[Callable[[Any], bytes]], Runtime]


class LiveFunctions:
    """Feeds the runtime the active version of every function; answers invocations."""

    def __init__(
        self, deployer: Deployer, runtime_factory: RuntimeFactory, *, refresh_s: float = 2.0
    ) -> None:
        self.d = deployer
        self._factory = runtime_factory
        self._runtime: Runtime | None = None
        self.refresh_s = refresh_s
        self._active: dict[str, tuple[int, str] | None] = {}
        self._refs: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()
        self._refreshed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------- runtime
    @property
    def runtime(self) -> Runtime:
        with self._lock:
            if self._runtime is None:
                self._runtime = self._factory(self._load_package)
            return self._runtime

    def _load_package(self, ref: Any) -> bytes:
        record = self.d.versions.get_version(ref.name, ref.version)
        if record is None:
            raise GitopsSyncError(f"{ref.name} version {ref.version} is no longer kept")
        return self.d.blobs.download(record.package, record.package_sha256)

    def version_ref(self, record: VersionRecord) -> Any:
        from ..runtime import VersionRef  # the runtime's own type

        key = (record.name, record.version)
        ref = self._refs.get(key)
        if ref is None:
            ref = VersionRef(
                name=record.name,
                version=record.version,
                sha256=record.sha256,
                package_sha256=record.package_sha256,
                config=record.config,
            )
            self._refs[key] = ref
        return ref

    # ------------------------------------------------------------- refresh
    def refresh(self) -> None:
        """Read every function row; tell the runtime about each active version that moved."""
        records = self.d.versions.list_functions()
        seen = set()
        for rec in records:
            seen.add(rec.name)
            self._apply(rec)
        for name in [n for n in self._active if n not in seen]:
            self._set(name, None)
        self._refreshed_at = time.monotonic()

    def _apply(self, rec: FunctionRecord) -> None:
        serving = rec.status != REMOVED and rec.active_version > 0
        want = (rec.active_version, rec.active_sha256) if serving else None
        if self._active.get(rec.name, "unset") == want:
            return
        if want is None:
            self._set(rec.name, None)
            return
        record = self.d.versions.get_version(rec.name, rec.active_version)
        if record is None:
            log.error("%s: active version %d has no row", rec.name, rec.active_version)
            return
        self._set(rec.name, self.version_ref(record))
        kept = {v.version for v in self.d.versions.list_versions(rec.name)}
        self.runtime.prune_cache(rec.name, kept)

    def _set(self, name: str, ref: Any) -> None:
        self.runtime.set_active(name, ref)
        self._active[name] = (ref.version, ref.sha256) if ref is not None else None
        log.info("function %s: %s", name, f"version {ref.version} active" if ref else "not active")

    def notify(self, name: str) -> None:
        """A deploy or rollback in this process changed ``name``: apply it now."""
        found = self.d.versions.get_function(name)
        if found is not None:
            self._apply(found[0])

    def active_ref(self, name: str) -> Any | None:
        if not self._refreshed_at:
            self.refresh()
        state = self._active.get(name)
        if not state:
            return None
        return self._refs.get((name, state[0]))

    def ref_for_version(self, name: str, version: int) -> Any | None:
        cached = self._refs.get((name, version))
        if cached is not None:
            return cached
        record = self.d.versions.get_version(name, version)
        return self.version_ref(record) if record is not None else None

    # ---------------------------------------------------------- background
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="gitops-sync-live", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception as exc:  # storage hiccup: keep serving what we know
                log.warning("refreshing active function versions failed: %s", exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()
