"""Limits that hold: timeouts, memory caps, misbehaving handlers: answered, contained, replaced."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from gitops_sync.runtime import FunctionRuntime

from . import handlers
from .conftest import SETTINGS
from .packages import PackageStore
from .util import running, wait_for


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _call(runtime: FunctionRuntime, name: str, event: dict[str, object]) -> tuple[int, dict]:
    result = runtime.invoke(name, json.dumps(event).encode())
    return result.status, result.json()


def test_a_sleeper_past_its_timeout_gets_504_while_another_answers(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """Past timeout_seconds the worker is killed and the answer is 504; other functions answer."""
    runtime.set_active(
        "slow", store.add("slow", 1, {"main.py": handlers.MISBEHAVE}, timeout_seconds=1)
    )
    runtime.set_active("echo", store.add("echo", 1, {"main.py": handlers.ECHO}))
    status, first = _call(runtime, "slow", {"do": "hello"})
    assert 200 == status
    answers: list[int] = []
    sleeper = threading.Thread(
        target=lambda: answers.append(_call(runtime, "slow", {"do": "sleep", "seconds": 60})[0])
    )

    sleeper.start()
    others = [_call(runtime, "echo", {})[0] for _ in range(5)]
    sleeper.join(timeout=60)

    assert [504] == answers
    assert [200] * 5 == others
    wait_for(lambda: not running(first["pid"]), what="the timed-out worker to be gone")
    status, again = _call(runtime, "slow", {"do": "hello"})
    assert (200, True) == (status, again["pid"] != first["pid"])


def test_an_infinite_loop_is_killed_and_replaced(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """A handler spinning forever gets 504; the next invocation runs on a fresh worker."""
    runtime.set_active(
        "spin", store.add("spin", 1, {"main.py": handlers.MISBEHAVE}, timeout_seconds=1)
    )
    _, first = _call(runtime, "spin", {"do": "hello"})

    status, answer = _call(runtime, "spin", {"do": "spin"})

    assert 504 == status
    assert "timeout of 1 s" in answer["error"]
    assert not running(first["pid"])
    status, again = _call(runtime, "spin", {"do": "hello"})
    assert (200, True) == (status, again["pid"] != first["pid"])


@pytest.mark.parametrize("mechanism", ["auto", "rlimit"])
def test_an_allocator_past_its_memory_gets_502_and_the_server_is_unaffected(
    tmp_path: Path, store: PackageStore, pycache: Path, mechanism: str
) -> None:
    """Allocating past memory_mb answers 502 naming the cap; the server's RSS does not grow."""
    runtime = FunctionRuntime(
        cache_dir=tmp_path / "cache", load_package=store, lookup_setting=SETTINGS.get,
        pycache_dir=pycache, memory_limit=mechanism,
    )  # fmt: skip
    try:
        _allocate_past_the_cap(runtime, store)
    finally:
        runtime.close()


def _allocate_past_the_cap(runtime: FunctionRuntime, store: PackageStore) -> None:
    ref = store.add("hog", 1, {"main.py": handlers.MISBEHAVE}, memory_mb=64)
    runtime.set_active("hog", ref)
    status, fits = _call(runtime, "hog", {"do": "allocate", "mb": 32})
    assert 200 == status
    before = _rss_bytes()

    status, answer = _call(runtime, "hog", {"do": "allocate", "mb": 512})

    assert 502 == status
    assert "memory_mb = 64 MB" in answer["error"]
    assert _rss_bytes() - before < 32 * 1024 * 1024
    status, again = _call(runtime, "hog", {"do": "allocate", "mb": 32})
    assert (200, True) == (status, again["pid"] != fits["pid"])
    expected = runtime.cgroups.description if runtime.cgroups else "RLIMIT_AS (+"
    assert runtime.describe("hog")["memory_limit"].startswith(expected)


@pytest.mark.parametrize(
    ("do", "status", "says"),
    [
        pytest.param("crash", 502, "SIGSEGV", id="crash"),
        pytest.param("os_exit", 502, "exited with code 7", id="os-exit"),
        pytest.param("exit", 500, "sys.exit(3)", id="sys-exit"),
        pytest.param("close_stdout", 200, "", id="close-stdout"),
        pytest.param("fork_and_return", 200, "", id="fork"),
    ],
)
def test_misbehaving_handlers_are_answered_and_replaced(
    runtime: FunctionRuntime, store: PackageStore, do: str, status: int, says: str
) -> None:
    """Crash, os._exit, sys.exit, closed stdout, fork: each answered, the worker replaced."""
    runtime.set_active("bad", store.add("bad", 1, {"main.py": handlers.MISBEHAVE}))
    _, first = _call(runtime, "bad", {"do": "hello"})

    got, answer = _call(runtime, "bad", {"do": do})

    assert status == got
    assert says in json.dumps(answer)
    if do == "fork_and_return":
        assert {"from": "parent", "pid": first["pid"]} == answer
    wait_for(lambda: not running(first["pid"]), what="the misbehaving worker to be gone")
    again_status, again = _call(runtime, "bad", {"do": "hello"})
    assert (200, True) == (again_status, again["pid"] != first["pid"])


def test_a_forked_child_that_lingers_is_killed_with_its_worker(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """A child forked by the handler does not outlive its worker (the process group is killed)."""
    runtime.set_active("bad", store.add("bad", 1, {"main.py": handlers.MISBEHAVE}))

    status, answer = _call(runtime, "bad", {"do": "fork_and_linger"})

    assert 200 == status
    wait_for(lambda: not running(answer["child"]), what="the forked child to be killed")
    wait_for(lambda: not running(answer["pid"]), what="the forking worker to be replaced")


def test_a_killed_fork_server_is_replaced(runtime: FunctionRuntime, store: PackageStore) -> None:
    """Workers outlive a killed fork server, and the next cold start gets a new fork server."""
    runtime.set_active("echo", store.add("echo", 1, {"main.py": handlers.ECHO}))
    status, first = _call(runtime, "echo", {})
    assert 200 == status
    [forkserver] = runtime.forkserver_pids()

    os.kill(forkserver, signal.SIGKILL)
    wait_for(lambda: not running(forkserver), what="the fork server to die")

    assert first["pid"] == _call(runtime, "echo", {})[1]["pid"]
    runtime.set_active("echo", store.add("echo", 2, {"main.py": handlers.ECHO}))
    status, second = _call(runtime, "echo", {})
    assert (200, 2) == (status, second["version"])
    assert [forkserver] != runtime.forkserver_pids()


def test_each_worker_gets_its_own_memory_cgroup_when_the_host_allows(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """With cgroups available, a worker runs in its own capped cgroup, deleted after the worker."""
    if runtime.cgroups is None:
        pytest.skip("this host lets us create no memory cgroup (RLIMIT_AS is tested above)")
    runtime.set_active("echo", store.add("echo", 1, {"main.py": handlers.ECHO}, memory_mb=96))
    pid = _call(runtime, "echo", {})[1]["pid"]
    controller = "0:" if runtime.cgroups.version == 2 else "memory:"
    line = next(x for x in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if controller in x)
    folder = runtime.cgroups.parent / line.rsplit("/", 1)[1]
    limit = "memory.max" if runtime.cgroups.version == 2 else "memory.limit_in_bytes"
    assert str(96 * 1024 * 1024) == (folder / limit).read_text().strip()

    runtime.close()

    assert not folder.exists()
    assert not runtime.cgroups.parent.exists()


def test_a_stopped_worker_times_out_even_mid_request(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """A worker that stops reading (SIGSTOP) while a 1 MiB request is sent gets 504, not a hang."""
    runtime.set_active(
        "slow", store.add("slow", 1, {"main.py": handlers.MISBEHAVE}, timeout_seconds=1)
    )
    _, first = _call(runtime, "slow", {"do": "hello"})
    os.kill(first["pid"], signal.SIGSTOP)

    result = runtime.invoke("slow", json.dumps({"do": "hello", "pad": "x" * 2**20}).encode())

    assert 504 == result.status
    wait_for(lambda: not running(first["pid"]), what="the stopped worker to be killed")
    status, again = _call(runtime, "slow", {"do": "hello"})
    assert (200, True) == (status, again["pid"] != first["pid"])
