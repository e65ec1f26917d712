"""Worker pools: max_concurrency, warm workers, rollback under load and warm, idle stop, close."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gitops_sync.runtime import FunctionRuntime, InvokeResult

from . import handlers
from .conftest import SETTINGS
from .packages import PackageStore
from .util import running, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_past_max_concurrency_answers_429_and_nothing_hangs(
    runtime: FunctionRuntime, store: PackageStore, tmp_path: Path
) -> None:
    """100 invocations at once with max_concurrency 10: 10 run together, 90 get 429 at once."""
    runtime.set_active("block", store.add("block", 1, {"main.py": handlers.BLOCKER}))
    markers = tmp_path / "markers"
    markers.mkdir()
    body = json.dumps({"dir": str(markers)}).encode()
    results: list[InvokeResult] = []
    lock = threading.Lock()

    def call() -> None:
        result = runtime.invoke("block", body)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=call) for _ in range(100)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(results) >= 90, what="90 refusals")
    wait_for(lambda: len(list(markers.iterdir())) >= 10, what="10 handlers running")
    running_together = len(list(markers.iterdir()))
    refused = list(results)
    (markers / "release").touch()
    for thread in threads:
        thread.join(timeout=60)

    assert 10 == running_together
    assert [429] * 90 == [r.status for r in refused]
    assert {"1"} == {r.headers["Retry-After"] for r in refused}
    assert [200] * 10 == sorted(r.status for r in results if r not in refused)
    assert not any(thread.is_alive() for thread in threads)


def test_rollback_under_load_answers_every_invocation_from_one_version(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """200 invocations while the active version flips 1, 2, 1, 2: all 200, each from one version."""
    v1 = store.add("ver", 1, {"main.py": handlers.VERSION.format(version=1)}, max_concurrency=20)
    v2 = store.add("ver", 2, {"main.py": handlers.VERSION.format(version=2)}, max_concurrency=20)
    runtime.set_active("ver", v1)
    done: list[InvokeResult] = []
    flips = iter([(50, v2), (100, v1), (150, v2)])
    next_flip = next(flips)
    lock = threading.Lock()

    def call(_: int) -> InvokeResult:
        nonlocal next_flip
        result = runtime.invoke("ver", b'{"sleep": 0.005}')
        with lock:
            done.append(result)
            if next_flip and len(done) >= next_flip[0]:
                runtime.set_active("ver", next_flip[1])
                next_flip = next(flips, None)  # type: ignore[arg-type]
        return result

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(200)))

    assert [200] * 200 == [r.status for r in results]
    versions = [r.json()["version"] for r in results]
    assert {1, 2} == set(versions)
    assert all(
        str(v) == r.headers["X-Function-Version"] for v, r in zip(versions, results, strict=True)
    )


def test_a_rollback_is_served_warm_by_the_kept_previous_pool(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """After 1 -> 2, rolling back to 1 answers from the worker that served 1 before."""
    v1 = store.add("ver", 1, {"main.py": handlers.VERSION.format(version=1)})
    v2 = store.add("ver", 2, {"main.py": handlers.VERSION.format(version=2)})
    runtime.set_active("ver", v1)
    first = runtime.invoke("ver", b"{}").json()
    runtime.set_active("ver", v2)
    assert 2 == runtime.invoke("ver", b"{}").json()["version"]
    assert 1 == runtime.describe("ver")["previous_warm"]

    runtime.set_active("ver", v1)

    assert first == runtime.invoke("ver", b"{}").json()


def test_warm_workers_start_at_activation(runtime: FunctionRuntime, store: PackageStore) -> None:
    """warm_workers processes are started when a version becomes active, before any invocation."""
    runtime.set_active("echo", store.add("echo", 1, {"main.py": handlers.ECHO}, warm_workers=3))

    wait_for(lambda: runtime.describe("echo")["warm"] == 3, what="three warm workers")
    assert 3 == len(runtime.worker_pids())


def test_extra_idle_workers_stop_after_idle_seconds(
    runtime: FunctionRuntime, store: PackageStore, tmp_path: Path
) -> None:
    """Workers started on demand beyond warm_workers stop once idle; the warm one stays."""
    runtime.set_active("block", store.add("block", 1, {"main.py": handlers.BLOCKER}))
    markers = tmp_path / "markers"
    markers.mkdir()
    body = json.dumps({"dir": str(markers)}).encode()
    with ThreadPoolExecutor(3) as pool:
        calls = [pool.submit(runtime.invoke, "block", body) for _ in range(3)]
        wait_for(lambda: len(list(markers.iterdir())) >= 3, what="three busy workers")
        (markers / "release").touch()
        assert [200] * 3 == [c.result().status for c in calls]
    pids = {c.result().json()["pid"] for c in calls}
    assert 3 == len(pids)

    def stopped() -> int:
        return sum(not running(pid) for pid in pids)

    wait_for(lambda: stopped() == 2, what="two idle workers to stop")
    assert (1, 2) == (runtime.describe("block")["warm"], stopped())


def test_the_previous_pool_stops_after_keep_previous_seconds(
    tmp_path: Path, store: PackageStore
) -> None:
    """The previous version's warm workers stop once keep_previous_seconds has passed."""
    v1 = store.add("ver", 1, {"main.py": handlers.VERSION.format(version=1)})
    v2 = store.add("ver", 2, {"main.py": handlers.VERSION.format(version=2)})
    with FunctionRuntime(
        cache_dir=tmp_path / "cache", load_package=store, lookup_setting=SETTINGS.get,
        idle_seconds=0.2, keep_previous_seconds=0.5,
    ) as rt:  # fmt: skip
        rt.set_active("ver", v1)
        old_pid = rt.invoke("ver", b"{}").json()["pid"]
        rt.set_active("ver", v2)
        assert 200 == rt.invoke("ver", b"{}").status

        wait_for(lambda: not running(old_pid), what="the previous pool to stop")
        assert 0 == rt.describe("ver")["previous_warm"]


def test_close_leaves_no_orphans(runtime: FunctionRuntime, store: PackageStore) -> None:
    """close() kills every worker, busy ones included, and the fork server; then 503."""
    runtime.set_active("echo", store.add("echo", 1, {"main.py": handlers.ECHO}, warm_workers=2))
    runtime.set_active("slow", store.add("slow", 1, {"main.py": handlers.MISBEHAVE}))
    wait_for(lambda: runtime.describe("echo")["warm"] == 2, what="warm workers")
    busy = threading.Thread(target=runtime.invoke, args=("slow", b'{"do": "sleep", "seconds": 60}'))
    busy.start()
    wait_for(lambda: runtime.describe("slow")["busy"] == 1, what="a busy worker")
    pids = runtime.worker_pids()
    assert 3 == len(pids)
    pids += runtime.forkserver_pids()
    assert 4 == len(pids)

    runtime.close()
    busy.join(timeout=30)

    assert [] == [pid for pid in pids if running(pid)]
    assert not busy.is_alive()
    assert 503 == runtime.invoke("echo", b"{}").status


SERVER = """
import json, sys, threading, time
from pathlib import Path
from gitops_sync.runtime import FunctionRuntime
from tests.runtime.packages import PackageStore
from tests.runtime import handlers

out = Path(sys.argv[1])
store = PackageStore()
rt = FunctionRuntime(cache_dir=out / "cache", load_package=store, lookup_setting=lambda n: None)
rt.set_active("echo", store.add("echo", 1, {"main.py": handlers.ECHO}, warm_workers=2))
rt.set_active("bad", store.add("bad", 1, {"main.py": handlers.MISBEHAVE}, timeout_seconds=600))
while rt.describe("echo")["warm"] < 2:
    time.sleep(0.01)
child_file = out / "child.pid"
event = json.dumps({"do": "fork_and_spin", "file": str(child_file)}).encode()
threading.Thread(target=rt.invoke, args=("bad", event), daemon=True).start()
while not child_file.exists() or not child_file.read_text():
    time.sleep(0.01)
pids = rt.worker_pids() + rt.forkserver_pids() + [int(child_file.read_text())]
(out / "pids.json").write_text(json.dumps(pids))
time.sleep(3600)
"""


def test_workers_exit_when_the_server_is_sigkilled(tmp_path: Path) -> None:
    """A server killed with SIGKILL leaves no worker behind: idle, spinning and forked ones exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path)], env=env, cwd=REPO)
    try:
        pids_file = wait_for(
            lambda: (tmp_path / "pids.json").exists() and tmp_path / "pids.json",
            timeout=60,
            what="the server's workers",
        )
        pids = json.loads(pids_file.read_text())
        assert len(pids) >= 5  # 2 warm echo workers, the spinning one, its child, the fork server
        assert all(running(pid) for pid in pids)

        server.send_signal(signal.SIGKILL)
        server.wait()

        wait_for(lambda: not any(running(pid) for pid in pids), what="orphaned workers to exit")
    finally:
        server.kill()
        server.wait()
    with FunctionRuntime(
        cache_dir=tmp_path / "next", load_package=PackageStore(), lookup_setting=SETTINGS.get
    ) as successor:  # the next server deletes the dead one's empty memory cgroups
        if successor.cgroups is not None:
            folders = successor.cgroups.parent.parent.glob(f"gitops-sync-{server.pid}-*")
            assert [] == list(folders)
