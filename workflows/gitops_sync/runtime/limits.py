"""Memory caps for workers: a memory cgroup per worker where we may create one, else RLIMIT_AS.

cgroup v2 (``memory.max``) is used when our own cgroup delegates the memory controller; cgroup v1
(``memory.limit_in_bytes``) when the v1 memory hierarchy is mounted and writable. The worker joins
its cgroup itself, before it imports the handler. Without either, the worker caps its own address
space (bootstrap.py: RLIMIT_AS = what the bare worker maps + memory_mb).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .model import FUNCTIONS_LOGGER

log = logging.getLogger(FUNCTIONS_LOGGER)
CGROUP_ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count(1)


@dataclass(frozen=True)
class CgroupMemory:
    """Creates one memory cgroup per worker under ``parent`` (a folder this process owns)."""

    parent: Path
    version: int  # 1 or 2

    @property
    def description(self) -> str:
        return "cgroup v2 memory.max" if self.version == 2 else "cgroup v1 memory.limit_in_bytes"

    def create(self, memory_mb: int) -> Path:
        """A new cgroup capped at ``memory_mb``; a worker joins it via its ``cgroup.procs``."""
        path = self.parent / f"w{os.getpid()}-{next(_counter)}"
        path.mkdir()
        limit = str(memory_mb * 1024 * 1024)
        if self.version == 2:
            (path / "memory.max").write_text(limit)
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")
        else:
            (path / "memory.limit_in_bytes").write_text(limit)
            with contextlib.suppress(OSError):  # only when swap accounting is on
                (path / "memory.memsw.limit_in_bytes").write_text(limit)
        return path

    def oom_killed(self, path: Path) -> bool:
        """True when the kernel's OOM killer acted in this cgroup."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def remove(self, path: Path) -> None:
        """Deletes a worker's cgroup once its processes are gone (retries briefly)."""
        for _ in range(50):
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)
        log.warning("memory cgroup %s still busy; left in place", path)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.parent.rmdir()


def detect_memory_cgroup(root: Path = CGROUP_ROOT) -> CgroupMemory | None:
    """A usable memory cgroup parent for this process, or None (then RLIMIT_AS is used)."""
    own = _own_cgroups()
    for candidate in (_v2_parent(root, own.get("")), _v1_parent(root, own.get("memory"))):
        if candidate is None:
            continue
        try:
            _clean_stale(candidate[0].parent)
            candidate[0].mkdir(exist_ok=True)
            if candidate[1] == 2:
                (candidate[0] / "cgroup.subtree_control").write_text("+memory")
            probe = CgroupMemory(*candidate)
            probe.remove(probe.create(64))
        except OSError:
            continue
        return probe
    return None


def _own_cgroups() -> dict[str, str]:
    """Controller (``""`` for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            found[controller] = path
    return found


def _v2_parent(root: Path, own: str | None) -> tuple[Path, int] | None:
    if own is None:
        return None
    mount = root if (root / "cgroup.controllers").exists() else root / "unified"
    here = mount / own.lstrip("/")
    try:
        if "memory" not in (here / "cgroup.subtree_control").read_text().split():
            return None  # enabling it here would break the no-internal-processes rule
    except OSError:
        return None
    return here / _own_folder_name(), 2


def _v1_parent(root: Path, own: str | None) -> tuple[Path, int] | None:
    mount = root / "memory"
    if own is None or not (mount / "memory.limit_in_bytes").exists():
        return None
    return mount / own.lstrip("/") / _own_folder_name(), 1


def _own_folder_name() -> str:
    """One folder per runtime instance: gitops-sync-<pid>-<n>."""
    return f"gitops-sync-{os.getpid()}-{next(_counter)}"


def _clean_stale(folder: Path) -> None:
    """Empty cgroups left by a server that was killed (their workers exited with it)."""
    with contextlib.suppress(OSError):
        for stale in folder.glob("gitops-sync-*"):
            owner = stale.name.removeprefix("gitops-sync-").partition("-")[0]
            if not owner.isdigit() or Path(f"/proc/{owner}").exists():
                continue  # ours, or another live server's
            for child in stale.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                stale.rmdir()
