"""Benchmark: `gitops-sync sync` against git archive | tar, rsync, git checkout and git status.

A repository of FILES files (~10 KB each) in DIRS directories (written with
``git fast-import``: no working tree); commit A, then B changes 5 files. Whole
processes are timed (startup included); each round runs both sides, the side
that goes first alternating round by round; each figure is the median of
--repeat rounds and each ratio is ours / reference (lower is better). Wall time
and CPU time (user + system of the whole process tree) are both recorded; the
"Python" figure is the sync process's own CPU, without its git children.
Writes a small result file (``bench/out/sync/results.json``). Run:

    .venv/bin/python bench/bench_sync.py [--files 20000] [--dirs 400] [--repeat 5] [--big]

``--big`` also syncs 10x the files (200,000) once and times its incremental and
no-op syncs, to show how they grow (``--big-only``: just that part, added to an
existing result file). ``--rows noop,checkout`` times only those rows (a quick
iteration: nothing is written to the result file). rsync is installed with
apt-get if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-c", "from gitops_sync.cli import main; main()"]
# The sync's own CPU (the Python part), written at exit by a wrapper around the CLI.
_WRAP = (
    "import atexit, json, os, resource\n"
    "def _report():\n"
    "    s = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    with open(os.environ['BENCH_SELF_CPU'], 'w') as f:\n"
    "        json.dump(s.ru_utime + s.ru_stime, f)\n"
    "atexit.register(_report)\n"
    "from gitops_sync.cli import main\n"
    "main()\n"
)
GOALS = {
    "full": ("full sync of A into an empty dir vs `git archive A | tar -x`", 1.2),
    "rsync": ("incremental A->B vs `rsync -a --delete`", 0.6),
    "rsync_checksum": ("incremental A->B vs `rsync -a --delete --checksum`", 0.2),
    "checkout": ("incremental A->B vs `git checkout` A->B", 3.0),
    "noop": ("no-op sync (same commit) vs `git status --porcelain`", 2.0),
}
FULL_CPU_GOAL = 1.5
SELF_CPU = [HERE / "out" / "sync" / "self-cpu.json"]  # under --out once known


@dataclass
class Sample:
    wall: float
    cpu: float  # user + system of the process and every child it waited for
    py: float | None = None  # the sync process's own CPU (ours only)


def sh(*args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, **kw)


def ensure_tools() -> None:
    if shutil.which("rsync") is None:
        print("rsync is missing: apt-get install rsync", flush=True)
        sh("apt-get", "update", "-q")
        sh("apt-get", "install", "-y", "-q", "rsync")


def make_repo(root: Path, files: int, dirs: int, seed: int = 1) -> tuple[str, str, list[str]]:
    """Commits A and B (5 files changed) straight into a bare repository."""
    repo = root / "repo.git"
    shutil.rmtree(repo, ignore_errors=True)
    sh("git", "init", "-q", "--bare", "-b", "main", str(repo))
    rng = random.Random(seed)
    per_dir = files // dirs
    paths = [
        f"d{d // 20:02d}/s{d:03d}/file{f:03d}.txt" for d in range(dirs) for f in range(per_dir)
    ]
    changed = paths[:: len(paths) // 5][:5]
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "fast-import", "--quiet"], stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    out = proc.stdin

    def blob(mark: int) -> None:
        data = rng.randbytes(5000).hex().encode()  # 10 KB of text
        out.write(b"blob\nmark :%d\ndata %d\n%s\n" % (mark, len(data), data))

    for i in range(len(paths)):
        blob(i + 1)
    who = b"committer b <b@b.invalid> 1700000000 +0000\n"
    out.write(b"commit refs/heads/main\nmark :%d\n%sdata 1\nA\n" % (len(paths) + 1, who))
    for i, p in enumerate(paths):
        out.write(b"M 100644 :%d %s\n" % (i + 1, p.encode()))
    base = len(paths) + 2
    for j in range(len(changed)):
        blob(base + j)
    out.write(b"commit refs/heads/main\n%sdata 1\nB\nfrom :%d\n" % (who, len(paths) + 1))
    for j, p in enumerate(changed):
        out.write(b"M 100644 :%d %s\n" % (base + j, p.encode()))
    out.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    a = sh("git", "-C", str(repo), "rev-parse", "main~1").stdout.decode().strip()
    b = sh("git", "-C", str(repo), "rev-parse", "main").stdout.decode().strip()
    return a, b, changed


def run(cmd: list[str], *, shell: bool = False, ours: bool = False) -> Sample:
    env = dict(os.environ)
    self_cpu = SELF_CPU[0]
    if ours:
        cmd = [sys.executable, "-c", _WRAP, *cmd[3:]]
        env["BENCH_SELF_CPU"] = str(self_cpu)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{cmd} failed: {err}")
    if proc.stderr:
        proc.stderr.close()
    py = json.loads(self_cpu.read_text()) if ours else None
    return Sample(wall, usage.ru_utime + usage.ru_stime, py)


def rounds(
    ours: Callable[[], Sample], ref: Callable[[], Sample], reset: Callable[[], None], repeat: int
) -> tuple[list[Sample], list[Sample]]:
    """Interleaved; the side that runs first alternates every round."""
    a: list[Sample] = []
    b: list[Sample] = []
    for i in range(repeat):
        reset()
        if i % 2 == 0:
            a.append(ours())
            b.append(ref())
        else:
            b.append(ref())
            a.append(ours())
    return a, b


def summary(key: str, a: list[Sample], b: list[Sample]) -> dict[str, object]:
    label, goal = GOALS[key]
    ours_s = statistics.median(s.wall for s in a)
    ref_s = statistics.median(s.wall for s in b)
    out: dict[str, object] = {
        "label": label,
        "ours_s": round(ours_s, 6),
        "ref_s": round(ref_s, 6),
        "ratio": round(ours_s / ref_s, 3),
        "goal": goal,
        "met": ours_s / ref_s <= goal,
        "ours_cpu_s": round(statistics.median(s.cpu for s in a), 4),
        "ref_cpu_s": round(statistics.median(s.cpu for s in b), 4),
        "python_cpu_s": round(statistics.median(s.py or 0.0 for s in a), 4),
        "ours_wall_all": [round(s.wall, 4) for s in a],
        "ref_wall_all": [round(s.wall, 4) for s in b],
    }
    out["cpu_ratio"] = round(float(out["ours_cpu_s"]) / max(float(out["ref_cpu_s"]), 1e-9), 3)  # type: ignore[arg-type]
    return out


def bench(
    out: Path, files: int, dirs: int, repeat: int, rows: frozenset[str] = frozenset(GOALS)
) -> dict[str, object]:
    print(f"building {files} files in {dirs} directories ...", flush=True)
    a, b, changed = make_repo(out, files, dirs)
    repo = out / "repo.git"
    sync = [*CLI, "sync", "--repo", str(repo)]

    # rsync's best case: B is A's copy with the 5 files rewritten (unchanged mtimes kept)
    tree_a, tree_b, dest = out / "tree-a", out / "tree-b", out / "rsync-dest"
    for d in (tree_a, tree_b, dest):
        shutil.rmtree(d, ignore_errors=True)
    tree_a.mkdir()
    sh("sh", "-c", f"git -C {repo} archive {a} | tar -x -C {tree_a}")
    sh("cp", "-a", f"{tree_a}/.", str(tree_b))
    for rel in changed:
        (tree_b / rel).write_bytes(sh("git", "-C", str(repo), "show", f"{b}:{rel}").stdout)
    sh("cp", "-a", str(tree_a), str(dest))
    changed_bytes = sum((tree_b / rel).stat().st_size for rel in changed)
    results: dict[str, object] = {}

    # 1. full sync into an empty directory vs git archive | tar -x
    full_ws, full_tar = out / "full-ws", out / "full-tar"

    def reset_full() -> None:
        for d in (full_ws, full_tar):
            shutil.rmtree(d, ignore_errors=True)
        full_tar.mkdir()
        # the previous round's 2 x 200 MB (and their removal) reach the disk now, not
        # while the next round's first side runs
        os.sync()

    if "full" in rows:
        full = rounds(
            lambda: run([*sync, "--ref", a, "--workspace", str(full_ws)], ours=True),
            lambda: run([f"git -C {repo} archive {a} | tar -x -C {full_tar}"], shell=True),
            reset_full,
            repeat,
        )
        results["full"] = summary("full", *full)
        reset_full()
        print(f"  full: {results['full']}", flush=True)

    # 2. incremental A -> B against rsync (both flavours) and git checkout
    ws = out / "inc-ws"
    shutil.rmtree(ws, ignore_errors=True)
    sync_a = [*sync, "--ref", a, "--workspace", str(ws)]
    sync_b = [*sync, "--ref", b, "--workspace", str(ws)]
    sh(*sync_a)
    wt = out / "checkout-wt"
    shutil.rmtree(wt, ignore_errors=True)
    sh("git", "-C", str(repo), "worktree", "prune")
    sh("git", "-C", str(repo), "worktree", "add", "-q", "--detach", str(wt), a)

    def reset_inc() -> None:
        sh(*sync_a)
        sh("rsync", "-a", "--delete", f"{tree_a}/", f"{dest}/")
        sh("git", "-C", str(wt), "checkout", "-q", "--detach", a)

    refs: dict[str, list[str]] = {
        "rsync": ["rsync", "-a", "--delete", f"{tree_b}/", f"{dest}/"],
        "rsync_checksum": ["rsync", "-a", "--delete", "--checksum", f"{tree_b}/", f"{dest}/"],
        "checkout": ["git", "-C", str(wt), "checkout", "-q", "--detach", b],
    }
    for key, ref_cmd in refs.items():
        if key not in rows:
            continue
        pair = rounds(
            lambda: run(sync_b, ours=True),
            lambda c=ref_cmd: run(c),  # type: ignore[misc]
            reset_inc,
            repeat,
        )
        results[key] = summary(key, *pair)
        print(f"  {key}: {results[key]}", flush=True)

    # 3. no-op: the same commit again vs git status on a checkout of the same tree
    if "noop" in rows:
        sh(*sync_b)
        sh("git", "-C", str(wt), "checkout", "-q", "--detach", b)
        noop = rounds(
            lambda: run(sync_b, ours=True),
            lambda: run(["git", "-C", str(wt), "status", "--porcelain"]),
            lambda: None,
            repeat,
        )
        results["noop"] = summary("noop", *noop)
        print(f"  noop: {results['noop']}", flush=True)

    sh(*sync_a)
    report = json.loads(sh(*sync_b, "--json").stdout)
    again = json.loads(sh(*sync_b, "--json").stdout)
    sh("git", "-C", str(repo), "worktree", "remove", "--force", str(wt))
    return {
        "files": files,
        "dirs": dirs,
        "repeat": repeat,
        "results": results,
        "bytes_written": report["bytes_written"],
        "changed_bytes": changed_bytes,
        "bytes_exact": report["bytes_written"] == changed_bytes,
        "noop_bytes_written": again["bytes_written"],
    }


def bench_big(out: Path, files: int, dirs: int, repeat: int) -> dict[str, object]:
    """10x the files: one full sync, then incremental and no-op syncs (ours only)."""
    print(f"building {files} files in {dirs} directories ...", flush=True)
    a, b, _changed = make_repo(out, files, dirs)
    repo = out / "repo.git"
    ws = out / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    sync = [*CLI, "sync", "--repo", str(repo), "--workspace", str(ws)]
    full = run([*sync, "--ref", a], ours=True)
    inc, noop = [], []
    for _ in range(repeat):
        run([*sync, "--ref", a])
        inc.append(run([*sync, "--ref", b], ours=True))
        noop.append(run([*sync, "--ref", b], ours=True))
    shutil.rmtree(ws, ignore_errors=True)

    def med(samples: list[Sample]) -> dict[str, float]:
        return {
            "wall_s": round(statistics.median(s.wall for s in samples), 4),
            "cpu_s": round(statistics.median(s.cpu for s in samples), 4),
            "python_cpu_s": round(statistics.median(s.py or 0.0 for s in samples), 4),
        }

    return {"files": files, "full": med([full]), "incremental": med(inc), "noop": med(noop)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--dirs", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--big", action="store_true", help="also time 10x the files (200,000)")
    ap.add_argument(
        "--big-only",
        action="store_true",
        help="only the 10x run, merged into the results file if there is one",
    )
    ap.add_argument(
        "--rows",
        default=",".join(GOALS),
        help=f"comma-separated rows to time (of {','.join(GOALS)}); a subset is only printed",
    )
    ap.add_argument("--out", type=Path, default=HERE / "out" / "sync")
    args = ap.parse_args()
    rows = frozenset(r for r in args.rows.split(",") if r)
    if not rows or rows - GOALS.keys():
        ap.error(f"--rows: choose among {','.join(GOALS)}")
    ensure_tools()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    SELF_CPU[0] = out / "self-cpu.json"
    # as installed: bytecode compiled once (PYTHONDONTWRITEBYTECODE may be set here)
    sh(sys.executable, "-m", "compileall", "-q", str(HERE.parent / "workflows"))
    results = out / "results.json"
    if args.big_only:
        # merged into the 20,000-file results when there are some; alone otherwise
        doc = json.loads(results.read_text()) if results.exists() else {}
        doc["big"] = bench_big(out / "big", args.files * 10, args.dirs * 10, args.repeat)
        results.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"10x files: {json.dumps(doc['big'])}")
        return
    doc = bench(out, args.files, args.dirs, args.repeat, rows)
    partial = rows != GOALS.keys()
    if args.big and not partial:
        doc["big"] = bench_big(out / "big", args.files * 10, args.dirs * 10, args.repeat)
    if not partial:
        results.write_text(json.dumps(doc, indent=2) + "\n")

    print(f"\n{args.files} files x ~10 KB, {args.dirs} dirs; median of {args.repeat} rounds\n")
    print(f"{'comparison':62} {'ours':>8} {'ref':>8} {'ratio':>7}  goal")
    for r in doc["results"].values():  # type: ignore[attr-defined]
        print(
            f"{r['label']:62} {r['ours_s']:8.3f} {r['ref_s']:8.3f} {r['ratio']:6.2f}x"
            f"  <= {r['goal']}x {'met' if r['met'] else 'NOT met'}"
        )
    if "full" in rows:
        full = doc["results"]["full"]  # type: ignore[index]
        print(f"full sync CPU: {full['ours_cpu_s']}s vs {full['ref_cpu_s']}s = {full['cpu_ratio']}x"
              f" (goal <= {FULL_CPU_GOAL}x)")  # fmt: skip
    print(
        f"bytes written A->B: {doc['bytes_written']} (changed files: {doc['changed_bytes']})"
        f" -> {'exact' if doc['bytes_exact'] else 'MISMATCH'}; no-op: {doc['noop_bytes_written']}"
    )
    if "big" in doc:
        print(f"10x files: {json.dumps(doc['big'])}")
    for r in doc["results"].values():  # type: ignore[attr-defined]
        walls = f"ours {r['ours_wall_all']} ref {r['ref_wall_all']}"
        print(f"  {r['label'][:40]}: python cpu {r['python_cpu_s']}s; {walls}")
    if not partial:
        print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
