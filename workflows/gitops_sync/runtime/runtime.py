"""FunctionRuntime: the ``builtin`` target; runs each function's active version in worker pools.

The deploy side calls ``set_active`` on activation, rollback and removal; the invoke route calls
``invoke`` from many threads at once. Every failure becomes an ``InvokeResult``, never an exception.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .forkserver import ForkServer
from .interpreters import available_runtimes, find_interpreter
from .limits import detect_memory_cgroup
from .model import (
    FUNCTIONS_LOGGER,
    MAX_BODY_BYTES,
    InvokeResult,
    VersionRef,
    WorkerLost,
    WorkerStartError,
    WorkerTimedOut,
    error_result,
)
from .packages import PackageCache
from .pool import Admission, Pool
from .worker import Worker, WorkerSpec

log = logging.getLogger(FUNCTIONS_LOGGER)
ENV_ALLOWLIST = ("PATH", "LANG", "TZ")
MALLOC_ARENA_MAX = "1"  # an extra glibc arena reserves 64 MiB of address space: RLIMIT_AS counts it


class FunctionRuntime:
    """Worker pools per function version; thread-safe."""

    def __init__(
        self,
        *,
        cache_dir: Path,
        load_package: Callable[[VersionRef], bytes],
        lookup_setting: Callable[[str], str | None],
        idle_seconds: float = 60.0,
        keep_previous_seconds: float = 300.0,
        server_environ: dict[str, str] | None = None,
        pycache_dir: Path | None = None,
        memory_limit: str = "auto",
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.packages = PackageCache(self.cache_dir / "packages")
        # bytecode of the stdlib and of every package, outside the read-only package folders
        self.pycache_dir = pycache_dir or self.cache_dir / "pycache"
        # "auto": a memory cgroup per worker when this host lets us create one; "rlimit": never
        self.cgroups = detect_memory_cgroup() if memory_limit == "auto" else None
        self._load_package = load_package
        self._lookup_setting = lookup_setting
        self.idle_seconds = idle_seconds
        self.keep_previous_seconds = keep_previous_seconds
        environ = os.environ if server_environ is None else server_environ
        self._base_env = {k: environ[k] for k in ENV_ALLOWLIST if k in environ}
        self._lock = threading.RLock()
        self._active: dict[str, VersionRef] = {}
        self._previous: dict[str, tuple[VersionRef, float]] = {}
        self._pools: dict[tuple[str, int, str], Pool] = {}
        self._draining: list[Pool] = []
        self._closed = False
        self._forkservers: dict[str, ForkServer] = {}
        self._forkservers_lock = threading.Lock()
        self._stop = threading.Event()
        tick = max(0.05, min(1.0, idle_seconds / 4, keep_previous_seconds / 4))
        self._reaper = threading.Thread(
            target=self._reap_loop, args=(tick,), name="fn-reaper", daemon=True
        )
        self._reaper.start()

    # -- activation ---------------------------------------------------------------------------
    def set_active(self, name: str, ref: VersionRef | None) -> None:
        """Makes ``ref`` the active version of ``name`` (deploy, rollback) or removes it (None)."""
        with self._lock:
            old = self._active.get(name)
            if ref is not None and old is not None and old.key == ref.key:
                return
            prev = self._previous.pop(name, None)
            if ref is None:
                self._active.pop(name, None)
                keep: set[tuple[str, int, str]] = set()
            else:
                self._active[name] = ref
                if old is not None:
                    self._previous[name] = (old, time.monotonic() + self.keep_previous_seconds)
                keep = {ref.key} | ({old.key} if old is not None else set())
            for key in [k for k in self._pools if k[0] == name and k not in keep]:
                self._retire(key)
            pool = self._pool_for(ref) if ref is not None else None
        if pool is not None:
            pool.warm_up()
        log.info(
            "function=%s active version %s (was %s, previous kept: %s)",
            name,
            ref.version if ref else None,
            old.version if old else None,
            prev[0].version if prev else None,
        )

    # -- invocation ---------------------------------------------------------------------------
    def invoke(
        self,
        name: str,
        body: bytes,
        *,
        version: VersionRef | None = None,
        invocation_id: str | None = None,
    ) -> InvokeResult:
        """Runs one invocation of the active version (or ``version``) with ``body`` as the event."""
        invocation_id = invocation_id or uuid.uuid4().hex
        if len(body) > MAX_BODY_BYTES:
            return error_result(413, f"request body is over {MAX_BODY_BYTES} bytes (6 MiB)")
        if body.strip():
            try:
                json.loads(body)
            except ValueError as exc:
                return error_result(400, f"request body is not JSON: {exc}")
        else:
            body = b"{}"
        for _attempt in range(20):  # an active pool retired between lookup and admission
            with self._lock:
                if self._closed:
                    return error_result(503, "the function runtime is shut down")
                ref = version or self._active.get(name)
                if ref is None:
                    return error_result(404, f"function {name!r} has no active version")
                pool = self._pool_for(ref)
            admission = pool.admit()
            if admission is Admission.ADMITTED:
                return self._run(pool, ref, body, invocation_id)
            if admission is Admission.BUSY:
                return error_result(
                    429,
                    f"{name} v{ref.version} is at max_concurrency ({pool.max_concurrency})",
                    {"Retry-After": "1", "X-Function-Version": str(ref.version)},
                )
        return error_result(503, f"{name}: the active version kept changing; retry")

    def _run(self, pool: Pool, ref: VersionRef, body: bytes, invocation_id: str) -> InvokeResult:
        headers = {"X-Function-Version": str(ref.version), "X-Invocation-Id": invocation_id}
        timeout = float(ref.config.get("timeout_seconds", 30))
        memory_mb = int(ref.config.get("memory_mb", 128))
        try:
            worker = pool.checkout(wait_seconds=120.0)
        except WorkerStartError as exc:
            pool.leave()
            return error_result(exc.status, str(exc), headers, **exc.extra)
        except Exception as exc:  # invoke never raises: e.g. out of file descriptors
            pool.leave()
            log.exception("function=%s version=%s worker start failed", ref.name, ref.version)
            return error_result(502, f"worker could not be started: {exc}", headers)
        healthy = False
        try:
            meta, payload = worker.invoke(invocation_id, body, timeout)
        except WorkerTimedOut:
            return error_result(
                504, f"{ref.name} ran past its timeout of {timeout:g} s; worker killed", headers
            )
        except WorkerLost as exc:
            if worker.oom_killed:
                message = f"{ref.name} ran out of memory: past its memory_mb = {memory_mb} MB"
                return error_result(502, f"{message} ({exc})", headers, memory_mb=memory_mb)
            return error_result(
                502, f"{exc} (its memory cap is {memory_mb} MB; the worker is replaced)", headers
            )
        except Exception as exc:
            log.exception("function=%s version=%s invocation failed", ref.name, ref.version)
            return error_result(502, f"the worker broke its protocol: {exc}", headers)
        else:
            healthy = not meta.get("recycle")
        finally:
            pool.checkin(worker, healthy=healthy)
        kind = meta.get("kind")
        if kind == "ok":
            return InvokeResult(200, payload, {"Content-Type": "application/json", **headers})
        if kind == "memory":
            message = f"{ref.name} ran out of memory: past its memory_mb = {memory_mb} MB"
            return error_result(502, message, headers, memory_mb=memory_mb)
        if kind == "error":
            return error_result(500, str(meta.get("message")), headers, type=str(meta.get("type")))
        return error_result(502, f"worker answered {kind!r}", headers)

    # -- workers ------------------------------------------------------------------------------
    def _pool_for(self, ref: VersionRef) -> Pool:
        pool = self._pools.get(ref.key)
        if pool is None or pool.retired:
            pool = Pool(ref, lambda: self._start_worker(ref))
            self._pools[ref.key] = pool
        return pool

    def _retire(self, key: tuple[str, int, str]) -> None:
        pool = self._pools.pop(key)
        pool.retire()
        self._draining.append(pool)

    def _start_worker(self, ref: VersionRef) -> Worker:
        runtime = str(ref.config.get("runtime", "python3.11"))
        executable = find_interpreter(runtime)
        if executable is None:
            raise WorkerStartError(502, f"runtime {runtime} is not available on this host")
        root = self.packages.ensure(ref, self._load_package)
        return Worker(
            WorkerSpec(
                function=ref.name,
                version=ref.version,
                forkserver=self._forkserver(executable),
                root=root,
                handler=str(ref.config["handler"]),
                memory_mb=int(ref.config.get("memory_mb", 128)),
                env=self._environment(ref),
                cgroup=self.cgroups,
            )
        )

    def _forkserver(self, executable: str) -> ForkServer:
        with self._forkservers_lock:
            if self._closed:
                raise WorkerStartError(503, "the function runtime is shut down")
            server = self._forkservers.get(executable)
            if server is None or not server.alive:
                if server is not None:
                    server.close()
                home = self.cache_dir / "home"
                home.mkdir(parents=True, exist_ok=True, mode=0o700)
                env = {**self._base_env, "HOME": str(home), "MALLOC_ARENA_MAX": MALLOC_ARENA_MAX}
                server = ForkServer(executable, self.pycache_dir, env)
                self._forkservers[executable] = server
            return server

    def _environment(self, ref: VersionRef) -> dict[str, str]:
        """Built, not inherited: allowlist, private HOME, [environment], then the named secrets."""
        home = self.cache_dir / "home" / ref.name
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {**self._base_env, "HOME": str(home), "MALLOC_ARENA_MAX": MALLOC_ARENA_MAX}
        env.update({str(k): str(v) for k, v in dict(ref.config.get("environment") or {}).items()})
        for secret in ref.config.get("secrets") or ():
            value = self._lookup_setting(secret)
            if value is None:
                raise WorkerStartError(
                    500, f"app setting {secret!r} named in secrets of {ref.name} is not set"
                )
            env[secret] = value
        return env

    # -- housekeeping -------------------------------------------------------------------------
    def _reap_loop(self, tick: float) -> None:
        while not self._stop.wait(tick):
            try:
                self._reap_once()
            except Exception:  # the reaper must survive anything
                log.exception("function runtime housekeeping failed")

    def _reap_once(self) -> None:
        now = time.monotonic()
        with self._lock:
            for name, (prev, until) in list(self._previous.items()):
                if now >= until:
                    del self._previous[name]
                    if prev.key in self._pools and self._active.get(name, prev).key != prev.key:
                        self._retire(prev.key)
            plan = []
            for key, pool in self._pools.items():
                kept = self._active.get(key[0])
                previous = self._previous.get(key[0])
                warm = kept is not None and kept.key == key
                warm = warm or (previous is not None and previous[0].key == key)
                plan.append((pool, pool.warm_workers if warm else 0, warm))
            for key, pool in list(self._pools.items()):  # e.g. an old version invoked by number
                warm_now = any(p is pool and w for p, _, w in plan)
                if not warm_now and pool.idle and now - pool.last_used >= self.idle_seconds:
                    self._retire(key)
            self._draining = [p for p in self._draining if not p.drained]
            draining = list(self._draining)
        for pool, keep, warm in plan:
            pool.reap(keep, self.idle_seconds)
            if warm:
                pool.warm_up()
        for pool in draining:
            pool.reap(0, 0.0)

    def describe(self, name: str) -> dict[str, Any]:
        """Worker counts of the active version, and which memory limit is in force."""
        with self._lock:
            ref = self._active.get(name)
            pool = self._pools.get(ref.key) if ref is not None else None
            prev = self._previous.get(name)
            prev_pool = self._pools.get(prev[0].key) if prev is not None else None
        counts = pool.counts() if pool else {"warm": 0, "busy": 0, "starting": 0, "in_flight": 0}
        if pool is not None and pool.limit:
            headroom = pool.limit
        elif self.cgroups is not None:
            headroom = self.cgroups.description
        else:
            headroom = "RLIMIT_AS (+headroom measured when a worker starts)"
        return {
            **counts,
            "active_version": ref.version if ref else None,
            "previous_version": prev[0].version if prev else None,
            "previous_warm": prev_pool.counts()["warm"] if prev_pool else 0,
            "memory_limit": headroom,
        }

    def runtimes(self) -> list[dict[str, Any]]:
        return available_runtimes()

    def prune_cache(self, name: str, kept_versions: set[int]) -> None:
        """Deletes unpacked versions of ``name`` not kept (never the active or previous one)."""
        with self._lock:
            keep = set(kept_versions)
            for ref in [self._active.get(name), self._previous.get(name, (None, 0))[0]]:
                if ref is not None:
                    keep.add(ref.version)
            for key in [k for k in self._pools if k[0] == name and k[1] not in keep]:
                self._retire(key)
        self.packages.prune(name, keep)

    def worker_pids(self) -> list[int]:
        """Every worker process this runtime holds (for tests and diagnostics)."""
        with self._lock:
            pools = [*self._pools.values(), *self._draining]
        return [pid for pool in pools for pid in pool.pids()]

    def forkserver_pids(self) -> list[int]:
        """The fork server processes (one per interpreter in use)."""
        with self._forkservers_lock:
            return [pid for server in self._forkservers.values() for pid in server.pids()]

    def close(self) -> None:
        """Stops every worker and the housekeeping thread; later invocations answer 503."""
        with self._lock:
            self._closed = True
            pools = [*self._pools.values(), *self._draining]
            self._pools.clear()
            self._draining.clear()
            self._active.clear()
            self._previous.clear()
        self._stop.set()
        for pool in pools:
            pool.close()
        with self._forkservers_lock:
            servers, self._forkservers = list(self._forkservers.values()), {}
        for server in servers:
            server.close()
        if self.cgroups is not None:
            self.cgroups.close()
        self._reaper.join(timeout=10)

    def __enter__(self) -> FunctionRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
