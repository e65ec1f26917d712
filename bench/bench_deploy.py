"""Benchmark: the deploy step (1 of N functions changed vs all N) and the package build vs `zip`.

Part 1 times ``deploy_functions`` itself on a real Azurite that this script
starts: a push that changes one of --functions functions, against deploying all
of them into fresh tables and a fresh container, in the same run, interleaved,
alternating which goes first; medians of --repeat rounds. Bytes uploaded are
read from the deploy summary and, independently, from the container listing.
Part 2 builds a ~--package-mb MB function (text and random bytes) with
``PackageBuilder`` from two clones, against ``zip -X -r`` of the checked-out
directory; every build of ours must be byte-identical. Run:

    .venv/bin/python bench/bench_deploy.py [--functions 50] [--repeat 5] [--package-mb 5]
                                           [--package-repeat 9] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gitops_sync.adapters.azurite import Azurite
from gitops_sync.adapters.git_source import GitSource
from gitops_sync.adapters.pip_deps import PipInstaller
from gitops_sync.context import AppContext
from gitops_sync.deploy.build import PackageBuilder, scan_functions
from gitops_sync.deploy.reconcile import deploy_functions
from gitops_sync.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "deploy.json"
TOML = 'runtime = "python{}.{}"\nhandler = "main.handle"\n'.format(*sys.version_info[:2])
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@gitops-sync.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@gitops-sync.invalid",
           "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip
T = TypeVar("T")
U = TypeVar("U")
SDK_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return done.stdout.decode().strip()


def init_repo(repo: Path) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "gc.auto=0", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def source_text(size: int) -> bytes:
    """Real source text (this Python's standard library), at least ``size`` bytes."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out = bytearray()
    for path in sorted(stdlib.glob("*.py")):
        out += path.read_bytes()
        if len(out) >= size:
            break
    while len(out) < size:
        out += out
    return bytes(out)


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def handler(answer: str) -> bytes:
    return f"def handle(event, context):\n    return {{'answer': {answer!r}}}\n".encode()


def make_functions_repo(repo: Path, count: int) -> tuple[str, str, str]:
    """COUNT functions of ~20-80 KB (source text, a little binary data); B changes one.

    Returns (commit A, commit B, the changed function's name).
    """
    rng = random.Random(count)
    text = source_text(4 << 20)
    init_repo(repo)
    for i in range(count):
        base = repo / "functions" / f"fn{i:03d}"
        write(base / "function.toml", TOML.encode())
        write(base / "main.py", handler(f"fn{i:03d} v1"))
        for j in range(rng.randint(2, 6)):
            size = rng.randint(4 << 10, 16 << 10)
            start = rng.randrange(len(text) - size)
            write(base / "lib" / f"mod{j}.py", text[start : start + size])
        write(base / "data" / "table.bin", rng.randbytes(rng.randint(1 << 10, 8 << 10)))
    write(repo / "README.md", b"functions for the deploy benchmark\n")
    a = commit_all(repo, "A")
    changed = f"fn{count // 3:03d}"
    write(repo / "functions" / changed / "main.py", handler(f"{changed} v2"))
    b = commit_all(repo, "B")
    return a, b, changed


class RequestCounter(logging.Handler):
    """Counts the HTTP requests the Azure SDK sends (its logging policy logs each at INFO)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Request URL"):
            self.count += 1


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of process PID so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of the children this process has waited for (git, zip)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def interleaved(
    first: Callable[[int], T], second: Callable[[int], U], repeat: int
) -> tuple[list[T], list[U]]:
    """Each run REPEAT times, alternating which goes first in a round; their results."""
    xs: list[T] = []
    ys: list[U] = []
    for r in range(repeat):
        if r % 2:
            ys.append(second(r))
        xs.append(first(r))
        if not r % 2:
            ys.append(second(r))
    return xs, ys


class DeployBench:
    """Fresh stacks (tables + package container) on one Azurite, and timed deploys on them."""

    def __init__(self, az: Azurite, repo: Path, work: Path, azurite_pid: int | None) -> None:
        self.conn = az.connection_string
        self.azurite_pid = azurite_pid
        self.source = GitSource(str(repo))
        self.work = work

    def stack(self) -> AppContext:
        """An AppContext (the production composition root) on its own tables and container."""
        env = {
            "AzureWebJobsStorage": self.conn,
            "SYNC_REPO_URL": str(self.work / "unused"),
            "WORKSPACE_ROOT": str(self.work / "workspace"),
            "GITOPS_SYNC_CACHE_DIR": str(self.work / "state" / "cache"),
            "DEPLOY_PACKAGE_CONTAINER": f"bench-{uuid.uuid4().hex[:16]}",
        }
        ctx = AppContext.from_settings(Settings.from_env(env), prefix=f"b{uuid.uuid4().hex[:12]}")
        ctx.deployer.versions.list_functions()  # tables and container exist, connections warm
        ctx.deployer.blobs.names()
        return ctx

    def drop(self, ctx: AppContext) -> None:
        """Delete the stack's tables and container, so every round starts from the same state."""
        ctx.deployer.blobs.container.delete_container()
        for table in list(ctx.tables.service.list_tables()):
            if table.name.startswith(ctx.tables.prefix):
                ctx.tables.service.delete_table(table.name)

    def deploy(self, ctx: AppContext, commit: str, count: bool = False) -> dict[str, Any]:
        """Time ``deploy_functions`` for COMMIT; bytes from the summary and from the listing."""
        report = scan_functions(self.source, commit)
        listing = ctx.deployer.blobs.container.list_blobs
        before = {b.name: b.size for b in listing()}
        counter = RequestCounter()
        sdk_log = logging.getLogger(SDK_LOGGER)
        level = sdk_log.level
        if count:
            sdk_log.addHandler(counter)
            sdk_log.setLevel(logging.INFO)
        az_cpu = cpu_of(self.azurite_pid) if self.azurite_pid else 0.0
        cpu, wall = time.process_time() + children_cpu(), time.perf_counter()
        summary = deploy_functions(ctx.deployer, self.source, commit, report)
        wall = time.perf_counter() - wall
        cpu = time.process_time() + children_cpu() - cpu  # with git cat-file's
        az_cpu = (cpu_of(self.azurite_pid) - az_cpu) if self.azurite_pid else 0.0
        sdk_log.removeHandler(counter)
        sdk_log.setLevel(level)
        after = {b.name: b.size for b in listing()}
        if summary.failed:
            raise SystemExit(f"deploy failed: {summary.failed}")
        new = {n: s for n, s in after.items() if n not in before}
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "azurite_cpu_s": az_cpu,
            "deployed": len(summary.deployed),
            "bytes_uploaded": summary.bytes_uploaded,
            "listing_bytes_added": sum(after.values()) - sum(before.values()),
            "new_blobs": new,
            "requests": counter.count if count else None,
        }

    def one_changed(self, ctx: AppContext, b: str, count: bool = False) -> dict[str, Any]:
        """Time the deploy of B on a stack at A; drop the stack."""
        try:
            return self.deploy(ctx, b, count)
        finally:
            self.drop(ctx)

    def all_fresh(self, a: str, count: bool = False) -> tuple[dict[str, Any], AppContext]:
        """Time the deploy of A into a fresh stack; the stack is kept for ``one_changed``."""
        ctx = self.stack()
        return self.deploy(ctx, a, count), ctx


def medians(runs: list[dict[str, Any]], *keys: str) -> dict[str, Any]:
    """The median of each of ``keys`` over ``runs``, and every run's wall time."""
    out = {k: round(statistics.median(r[k] for r in runs), 4) for k in keys}
    return {**out, "runs_wall_s": [round(r["wall_s"], 4) for r in runs]}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    counted = {(r["bytes_uploaded"], r["listing_bytes_added"]) for r in runs}
    return {
        **medians(runs, "wall_s", "cpu_s", "azurite_cpu_s"),
        **{k: runs[0][k] for k in ("deployed", "bytes_uploaded", "listing_bytes_added")},
        "bytes_same_every_run": len(counted) == 1,
    }


def bench_deploy(az: Azurite, work: Path, functions: int, repeat: int) -> dict[str, Any]:
    repo = work / "functions-repo"
    a, b, changed = make_functions_repo(repo, functions)
    git(repo, "gc", "-q")
    pid = getattr(getattr(az, "_proc", None), "pid", None)  # Azurite's CPU, from /proc
    bench = DeployBench(az, repo, work, pid)
    # Warm-up (imports, first connections), discarded but for its request counts: the
    # SDK's request log is on only here, so no timed run pays for it.
    counted_full, first = bench.all_fresh(a, count=True)
    # Each round deploys all of A into a fresh stack (timed) and B onto a stack that an
    # earlier step left at A (timed), so every stack is deployed in full only once.
    stacks = [first]

    def full_step(_r: int) -> dict[str, Any]:
        result, ctx = bench.all_fresh(a)
        stacks.append(ctx)
        return result

    one, full = interleaved(lambda _r: bench.one_changed(stacks.pop(0), b), full_step, repeat)
    counted_one = bench.one_changed(stacks.pop(), b, count=True)
    # the changed function's package, built on its own exactly as a deployment builds it
    report = scan_functions(bench.source, b)
    builder = PackageBuilder(bench.source, PipInstaller(work / "deps"), source_date_epoch=None)
    package, _ = builder.build(
        report.specs[changed], report.members[changed], sha256=report.hashes[changed], commit=b
    )
    s_one, s_full = summarise(one), summarise(full)
    new_blob_sizes = sorted(one[0]["new_blobs"].values())
    s_one["requests"], s_full["requests"] = counted_one["requests"], counted_full["requests"]
    return {
        "functions": functions,
        "repeat": repeat,
        "changed_function": changed,
        "changed_package_bytes": package.size,
        "new_blob_sizes": new_blob_sizes,
        "one_changed": s_one,
        "all": s_full,
        "bytes_exact": s_one["bytes_same_every_run"]
        and s_one["bytes_uploaded"] == s_one["listing_bytes_added"] == package.size
        and new_blob_sizes == [package.size],
        "time_ratio": round(s_one["wall_s"] / s_full["wall_s"], 4),
        "cpu_ratio": round(s_one["cpu_s"] / s_full["cpu_s"], 4),
        "time_goal": 1 / 20,
    }


def make_big_function(repo: Path, total: int) -> str:
    """One function of ~TOTAL bytes: ~60% source text, ~40% random bytes, many files."""
    rng = random.Random(total)
    text = source_text(4 << 20)
    init_repo(repo)
    base = repo / "functions" / "big"
    write(base / "function.toml", TOML.encode())
    write(base / "main.py", handler("big"))
    used, i = 0, 0
    while used < total:
        size = min(int(rng.lognormvariate(9.5, 0.9)) + 256, 256 << 10)
        if rng.random() < 0.6:
            start = rng.randrange(len(text) - size)
            write(base / f"pkg{i % 12:02d}" / f"m{i:04d}.py", text[start : start + size])
        else:
            write(base / "assets" / f"a{i:04d}.bin", rng.randbytes(size))
        used, i = used + size, i + 1
    return commit_all(repo, "big")


def ensure_zip() -> None:
    if shutil.which("zip") is None:
        print("zip is missing: apt-get install -y zip", flush=True)
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "zip"], check=True, capture_output=True)


def bench_package(work: Path, megabytes: float, repeat: int) -> dict[str, Any]:
    repo = work / "big-repo"
    commit = make_big_function(repo, int(megabytes * (1 << 20)))
    git(repo, "gc", "-q")  # packed, as a fetched repository cache is
    clone = work / "big-clone"  # a second checkout elsewhere: its own objects, times and modes
    git(work, "clone", "-q", "--no-local", str(repo), str(clone))
    pip, sources = PipInstaller(work / "deps"), [GitSource(str(p)) for p in (repo, clone)]
    builders = [(PackageBuilder(s, pip, source_date_epoch=None), scan_functions(s, commit))
                for s in sources]  # fmt: skip
    directory = repo / "functions" / "big"
    files = [p for p in directory.rglob("*") if p.is_file()]
    tmp = Path("/dev/shm") if Path("/dev/shm").is_dir() else work  # RAM: no disk noise
    out = tmp / f"bench-deploy-{os.getpid()}.zip"

    def ours(r: int) -> dict[str, Any]:
        builder, report = builders[r % 2]
        cpu, wall = time.process_time() + children_cpu(), time.perf_counter()
        package, _ = builder.build(
            report.specs["big"], report.members["big"], sha256=report.hashes["big"], commit=commit
        )
        cpu = time.process_time() + children_cpu() - cpu  # git cat-file's CPU counts as ours
        return {"wall_s": time.perf_counter() - wall, "cpu_s": cpu, "data": package.data}

    def ref() -> dict[str, Any]:
        out.unlink(missing_ok=True)  # zip adds to an existing archive
        cpu, wall = children_cpu(), time.perf_counter()
        subprocess.run(["zip", "-q", "-X", "-r", str(out), "."], cwd=directory, check=True)
        wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
        return {"wall_s": wall, "cpu_s": cpu, "bytes": out.stat().st_size}

    warm = ours(1)["data"]  # warm-up (page cache, git's pack index), from the second clone
    ref()
    o_runs, z_runs = interleaved(ours, lambda _r: ref(), repeat)
    out.unlink(missing_ok=True)
    identical = len({warm, *(o["data"] for o in o_runs)}) == 1
    if not identical:
        raise SystemExit("two builds of the same function gave different bytes")
    ours_s = {**medians(o_runs, "wall_s", "cpu_s"), "bytes": len(o_runs[0]["data"])}
    zip_s = {**medians(z_runs, "wall_s", "cpu_s"), "bytes": z_runs[0]["bytes"]}
    return {
        "input_bytes": sum(p.stat().st_size for p in files),
        "files": len(files),
        "repeat": repeat,
        "ours": ours_s,
        "zip": zip_s,
        "ratio": round(ours_s["wall_s"] / zip_s["wall_s"], 4),
        "cpu_ratio": round(ours_s["cpu_s"] / zip_s["cpu_s"], 4),
        "goal": 1.5,
        "identical": identical,
        "builds_compared": len(o_runs) + 1,
    }


def print_table(doc: dict[str, Any]) -> None:
    d, p = doc["deploy"], doc["package"]
    one, full = d["one_changed"], d["all"]
    print(f"\ndeploy step, {d['functions']} functions, median of {d['repeat']} (interleaved)")
    print(f"{'':26} {'wall s':>8} {'cpu s':>8} {'azurite cpu':>11} {'requests':>8} {'bytes':>10}")
    for label, s in ((f"1 changed ({d['changed_function']})", one), ("all, fresh", full)):
        print(f"{label:26} {s['wall_s']:8.3f} {s['cpu_s']:8.3f} {s['azurite_cpu_s']:11.3f} "
              f"{s['requests']:>8} {s['bytes_uploaded']:>10}")  # fmt: skip
    goal = "met" if d["time_ratio"] <= d["time_goal"] else "NOT met"
    print(f"time ratio 1/all: {d['time_ratio']:.3f} (goal <= {d['time_goal']:.3f}: {goal}); "
          f"cpu ratio {d['cpu_ratio']:.3f}")  # fmt: skip
    print(f"bytes uploaded {one['bytes_uploaded']}, container grew {one['listing_bytes_added']}, "
          f"changed package {d['changed_package_bytes']}: "
          f"{'exact' if d['bytes_exact'] else 'MISMATCH'}")  # fmt: skip
    print(f"\npackage build, {p['input_bytes'] / (1 << 20):.1f} MB in {p['files']} files, "
          f"median of {p['repeat']}")  # fmt: skip
    print(f"{'':26} {'wall s':>8} {'cpu s':>8} {'zip bytes':>10}")
    for label, s in (("PackageBuilder", p["ours"]), ("zip -X -r", p["zip"])):
        print(f"{label:26} {s['wall_s']:8.3f} {s['cpu_s']:8.3f} {s['bytes']:>10}")
    goal = "met" if p["ratio"] <= p["goal"] else "NOT met"
    print(f"ratio ours/zip: {p['ratio']:.2f}x wall (goal <= {p['goal']}x: {goal}), "
          f"{p['cpu_ratio']:.2f}x cpu; {p['builds_compared']} builds byte-identical: "
          f"{p['identical']}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--functions", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--package-mb", type=float, default=5.0)
    ap.add_argument("--package-repeat", type=int, default=9, help="a build takes < 1 s")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    ensure_zip()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp, Azurite() as az:
        work = Path(tmp)
        print(f"deploy: {args.functions} functions, {args.repeat} rounds ...", flush=True)
        deploy = bench_deploy(az, work, args.functions, args.repeat)
        print(f"package: {args.package_mb} MB function vs zip ...", flush=True)
        package = bench_package(work, args.package_mb, args.package_repeat)
    doc = {
        "command": " ".join(["bench/bench_deploy.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "seconds": round(time.monotonic() - started, 1),
        "deploy": deploy,
        "package": package,
    }
    print_table(doc)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {args.out} ({doc['seconds']} s)")


if __name__ == "__main__":
    main()
