"""Benchmark: the function runtime's warm invoke overhead, cold start, and rollback to a warm pool.

Warm: a small Starlette app (run by uvicorn in its own process) serves two routes on 127.0.0.1:
``POST /runtime/{name}`` calls ``FunctionRuntime.invoke`` and ``POST /inprocess/{name}`` calls the
same handler in the server process. One keep-alive client alternates between them, so both see the
same machine at the same moment; the overhead is the difference of their percentiles. Cold start
and rollback run in this process against the runtime directly. Run:

    .venv/bin/python bench/bench_invoke.py [--requests 2000] [--cold 30]
    .venv/bin/python bench/bench_invoke.py --url http://127.0.0.1:7071 --key KEY \\
        --runtime-path /api/functions/echo/invoke --inprocess-path /api/health  # another server

Results: bench/out/invoke/result.json, and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.runtime.packages import make_package  # noqa: E402

from gitops_sync.runtime import FunctionRuntime, VersionRef  # noqa: E402

OUT = REPO / "bench" / "out" / "invoke"
HANDLER = """
def handle(event, context):
    return {"echo": event, "version": VERSION}

VERSION = %d
"""
LARGE_HANDLER = """
import pydantic

class Order(pydantic.BaseModel):
    id: int
    items: list[str]

def handle(event, context):
    return Order(**event).model_dump()

VERSION = %d
"""
LARGE_DEPS = ["pydantic", "pydantic_core", "typing_extensions.py", "annotated_types",
              "typing_inspection"]  # fmt: skip
EVENT = {"order": 42, "items": ["a", "b", "c"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50), 3),
        "p95_ms": round(pct(values, 95), 3),
        "p99_ms": round(pct(values, 99), 3),
        "mean_ms": round(statistics.fmean(values), 3),
    }


def overhead(times: dict[str, list[float]]) -> dict[str, Any]:
    """The runtime's and the in-process figures, and the runtime's overhead over them."""
    runtime, inprocess = summary(times["runtime"]), summary(times["inprocess"])
    return {
        "runtime": runtime,
        "inprocess": inprocess,
        "overhead_p50_ms": round(runtime["p50_ms"] - inprocess["p50_ms"], 3),
        "overhead_p99_ms": round(runtime["p99_ms"] - inprocess["p99_ms"], 3),
    }


class Packages:
    """Builds and serves packages for the runtime's ``load_package``."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, int], bytes] = {}

    def add(
        self, name: str, version: int, files: dict[str, str | bytes], **config: Any
    ) -> VersionRef:
        ref, data = make_package(name, version, files, **config)
        self.data[(name, version)] = data
        return ref

    def __call__(self, ref: VersionRef) -> bytes:
        return self.data[(ref.name, ref.version)]


def large_files(version: int) -> dict[str, str | bytes]:
    """A handler importing pydantic, with pydantic and its dependencies copied into _deps/."""
    import pydantic

    site = Path(pydantic.__file__).parents[1]
    files: dict[str, str | bytes] = {"main.py": LARGE_HANDLER % version}
    for dep in LARGE_DEPS:
        source = site / dep
        paths = [source] if source.is_file() else sorted(source.rglob("*"))
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                files[f"_deps/{path.relative_to(site).as_posix()}"] = path.read_bytes()
    return files


# -- the server (its own process) -------------------------------------------------------------
def serve(port: int, cache: Path) -> None:
    """A Starlette app with a runtime route and an in-process route calling the same handler."""
    import anyio.to_thread
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    packages = Packages()
    ref = packages.add("echo", 1, {"main.py": HANDLER % 1}, warm_workers=2)
    runtime = FunctionRuntime(cache_dir=cache, load_package=packages, lookup_setting=lambda n: None)
    runtime.set_active("echo", ref)
    namespace: dict[str, Any] = {}
    exec(HANDLER % 1, namespace)
    handler: Callable[[Any, Any], Any] = namespace["handle"]

    # Both routes hand the call to a worker thread, as a sync route would: same path but one step.
    async def via_runtime(request: Request) -> Response:
        body = await request.body()
        name = request.path_params["name"]
        result = await anyio.to_thread.run_sync(lambda: runtime.invoke(name, body))
        return Response(result.body, result.status, dict(result.headers))

    async def in_process(request: Request) -> Response:
        body = await request.body()
        answer = await anyio.to_thread.run_sync(lambda: handler(json.loads(body or b"{}"), None))
        return Response(json.dumps(answer, separators=(",", ":")), 200,
                        media_type="application/json")  # fmt: skip

    app = Starlette(routes=[
        Route("/runtime/{name}", via_runtime, methods=["POST"]),
        Route("/inprocess/{name}", in_process, methods=["POST"]),
    ])  # fmt: skip
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    finally:
        runtime.close()


# -- the measurements ------------------------------------------------------------------------
def measure_warm(
    url: str, runtime_path: str, inprocess_path: str, requests: int, key: str | None
) -> dict[str, Any]:
    """Alternates the two routes on one keep-alive client; returns both latency summaries."""
    body = json.dumps(EVENT).encode()
    headers = {"Content-Type": "application/json", **({"x-functions-key": key} if key else {})}
    times: dict[str, list[float]] = {"runtime": [], "inprocess": []}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for _ in range(50):  # warm-up: connections, threads, caches
            client.post(runtime_path, content=body).raise_for_status()
            client.post(inprocess_path, content=body).raise_for_status()
        for i in range(requests):
            order = ("runtime", "inprocess") if i % 2 == 0 else ("inprocess", "runtime")
            for which in order:
                path = runtime_path if which == "runtime" else inprocess_path
                start = time.perf_counter()
                response = client.post(path, content=body)
                times[which].append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
    return overhead(times)


Files = Callable[[int], dict[str, str | bytes]]


def measure_cold(cache: Path, count: int, files: Files) -> dict[str, Any]:
    """New version each round, no warm worker: time to its first answer (unpack, start, import)."""
    packages = Packages()
    new_version, same_version = [], []
    with FunctionRuntime(cache_dir=cache, load_package=packages,
                         lookup_setting=lambda n: None) as rt:  # fmt: skip
        for version in range(1, count + 2):
            ref = packages.add("cold", version, files(version), warm_workers=0, memory_mb=1024)
            rt.set_active("cold", ref)
            start = time.perf_counter()
            result = rt.invoke("cold", json.dumps({"id": 1, "items": []}).encode())
            elapsed = (time.perf_counter() - start) * 1000
            assert result.status == 200, result.body
            rt.set_active("cold", None)  # a fresh worker of the same, already unpacked version
            rt.set_active("cold", ref)
            start = time.perf_counter()
            assert rt.invoke("cold", b'{"id": 1, "items": []}').status == 200
            again = (time.perf_counter() - start) * 1000
            if version > 1:  # the first round also fills the shared stdlib bytecode cache
                new_version.append(elapsed)
                same_version.append(again)
            rt.set_active("cold", None)
    return {"new_version": summary(new_version), "restart_same_version": summary(same_version)}


def measure_direct(cache: Path, requests: int) -> dict[str, Any]:
    """No HTTP: FunctionRuntime.invoke against calling the handler, alternating, in this process."""
    packages = Packages()
    namespace: dict[str, Any] = {}
    exec(HANDLER % 1, namespace)  # the benchmark's own handler
    handler = namespace["handle"]
    body = json.dumps(EVENT).encode()
    times: dict[str, list[float]] = {"runtime": [], "inprocess": []}
    with FunctionRuntime(cache_dir=cache, load_package=packages,
                         lookup_setting=lambda n: None) as rt:  # fmt: skip
        rt.set_active("echo", packages.add("echo", 1, {"main.py": HANDLER % 1}))
        for _ in range(50):
            assert rt.invoke("echo", body).status == 200
        for _ in range(requests):
            start = time.perf_counter()
            rt.invoke("echo", body)
            times["runtime"].append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            json.dumps(handler(json.loads(body), None)).encode()
            times["inprocess"].append((time.perf_counter() - start) * 1000)
    return overhead(times)


def measure_rollback(cache: Path, rounds: int) -> dict[str, Any]:
    """1 active, deploy 2 (invoked), roll back to 1: time to 1's first answer after the rollback."""
    packages = Packages()
    rollback, deploy = [], []
    with FunctionRuntime(cache_dir=cache, load_package=packages,
                         lookup_setting=lambda n: None) as rt:  # fmt: skip
        for r in range(rounds):
            name = f"rb{r}"
            v1 = packages.add(name, 1, {"main.py": HANDLER % 1})
            v2 = packages.add(name, 2, {"main.py": HANDLER % 2})
            rt.set_active(name, v1)
            assert rt.invoke(name, b"{}").json()["version"] == 1
            start = time.perf_counter()
            rt.set_active(name, v2)
            assert rt.invoke(name, b"{}").json()["version"] == 2
            deploy.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            rt.set_active(name, v1)
            assert rt.invoke(name, b"{}").json()["version"] == 1
            rollback.append((time.perf_counter() - start) * 1000)
            rt.set_active(name, None)
    return {"rollback_first_answer": summary(rollback), "deploy_first_answer": summary(deploy)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per route, interleaved")
    parser.add_argument("--cold", type=int, default=30, help="cold starts per handler")
    parser.add_argument("--rollbacks", type=int, default=20)
    parser.add_argument("--url", help="measure warm invokes against this running server instead")
    parser.add_argument("--key", help="x-functions-key for --url")
    parser.add_argument("--runtime-path", default="/runtime/echo")
    parser.add_argument("--inprocess-path", default="/inprocess/echo")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.cache)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-invoke-"))
    server = None
    try:
        url = args.url
        if url is None:
            port = free_port()
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(port), "--cache", str(work / "srv")]
            )
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(url + args.inprocess_path)
        results: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
        results["warm"] = measure_warm(
            url, args.runtime_path, args.inprocess_path, args.requests, args.key
        )
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
            server = None
        results["direct"] = measure_direct(work / "direct", args.requests)
        results["cold_stdlib"] = measure_cold(
            work / "cold", args.cold, lambda v: {"main.py": HANDLER % v}
        )
        results["cold_pydantic"] = measure_cold(
            work / "cold-large", max(5, args.cold // 3), large_files
        )
        results["rollback"] = measure_rollback(work / "rollback", args.rollbacks)
        results["load_avg_end"] = os.getloadavg()
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "result.json").write_text(json.dumps(results, indent=2))
    print_table(results)


def _wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, content=b"{}").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server at {url} did not come up")


def print_table(results: dict[str, Any]) -> None:
    warm, cold, large = results["warm"], results["cold_stdlib"], results["cold_pydantic"]
    rows = [
        ("warm, through the runtime", warm["runtime"]),
        ("warm, in-process handler", warm["inprocess"]),
        ("no HTTP: FunctionRuntime.invoke", results["direct"]["runtime"]),
        ("no HTTP: the handler called in-process", results["direct"]["inprocess"]),
        ("cold start, new version (stdlib handler)", cold["new_version"]),
        ("cold start, same version restarted (stdlib)", cold["restart_same_version"]),
        ("cold start, new version (imports pydantic)", large["new_version"]),
        ("cold start, same version restarted (pydantic)", large["restart_same_version"]),
        ("deploy: first answer from the new version", results["rollback"]["deploy_first_answer"]),
        ("rollback: first answer from the previous", results["rollback"]["rollback_first_answer"]),
    ]  # fmt: skip
    print(f"{'measurement':48} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for label, s in rows:
        print(f"{label:48} {s['n']:>5} {s['p50_ms']:>8.2f} {s['p95_ms']:>8.2f} {s['p99_ms']:>8.2f}")
    print(
        f"warm overhead: p50 {warm['overhead_p50_ms']:.3f} ms, p99 {warm['overhead_p99_ms']:.3f} ms"
    )
    direct = results["direct"]
    print(f"no-HTTP overhead: p50 {direct['overhead_p50_ms']:.3f} ms, "
          f"p99 {direct['overhead_p99_ms']:.3f} ms")  # fmt: skip
    print(f"load average: {results['load_avg_start']} -> {results['load_avg_end']}")


if __name__ == "__main__":
    main()
