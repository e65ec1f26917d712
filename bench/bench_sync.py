"""Benchmark: `gitops-sync sync` against git archive | tar, rsync and git checkout, same data.

A repository of FILES files (~10 KB each) in DIRS directories; commit A, then B
changes 5 files. Whole processes are timed (startup included), each side the
median of --repeat runs, interleaved; the figures are ratios. Run:

    .venv/bin/python bench/bench_sync.py [--files 20000] [--dirs 400] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "sync"
CLI = [str(Path(sys.executable).parent / "gitops-sync")]


def sh(*args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, **kw)


def make_repo(root: Path, files: int, dirs: int) -> tuple[str, str, list[str]]:
    repo = root / "repo"
    if (repo / ".git").exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b.invalid",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b.invalid"}  # fmt: skip
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    per_dir = files // dirs
    paths = []
    for d in range(dirs):
        ddir = repo / f"d{d // 20:02d}" / f"s{d:03d}"
        ddir.mkdir(parents=True, exist_ok=True)
        for f in range(per_dir):
            p = ddir / f"file{f:03d}.txt"
            p.write_bytes(os.urandom(5000).hex().encode())  # 10 KB of text
            paths.append(str(p.relative_to(repo)))
    sh("git", "add", "-A", cwd=repo, env=env)
    sh("git", "-c", "gc.auto=0", "commit", "-q", "-m", "A", cwd=repo, env=env)
    a = sh("git", "rev-parse", "HEAD", cwd=repo).stdout.decode().strip()
    changed = paths[:: len(paths) // 5][:5]
    for rel in changed:
        (repo / rel).write_bytes(os.urandom(5000).hex().encode())
    sh("git", "-c", "gc.auto=0", "commit", "-q", "-am", "B", cwd=repo, env=env)
    b = sh("git", "rev-parse", "HEAD", cwd=repo).stdout.decode().strip()
    sh("git", "gc", "-q", cwd=repo)  # packed, as a fetched cache would be
    return a, b, changed


def timed(cmd: list[str] | str, shell: bool = False) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, shell=shell, check=True, capture_output=True)
    return time.perf_counter() - start


def median_pair(
    ours: Callable[[], float], ref: Callable[[], float], reset: Callable[[], None], repeat: int
) -> tuple[float, float]:
    a, b = [], []
    for _ in range(repeat):
        reset()
        a.append(ours())
        reset()
        b.append(ref())
    return statistics.median(a), statistics.median(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--dirs", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    # as installed: bytecode compiled once (PYTHONDONTWRITEBYTECODE may be set here)
    sh(sys.executable, "-m", "compileall", "-q", str(Path(__file__).parents[1] / "workflows"))
    print(f"building {args.files} files in {args.dirs} directories ...", flush=True)
    a, b, changed = make_repo(OUT, args.files, args.dirs)
    repo = OUT / "repo"
    env_cache = {"XDG_CACHE_HOME": str(OUT / "cache")}
    os.environ.update(env_cache)

    # reference trees for rsync: B is A's copy with the 5 files rewritten, so unchanged
    # files keep A's mtimes (rsync's best case: it copies only the 5 files)
    tree_a, tree_b, dest = OUT / "tree-a", OUT / "tree-b", OUT / "rsync-dest"
    for d in (tree_a, tree_b, dest):
        shutil.rmtree(d, ignore_errors=True)
    tree_a.mkdir()
    sh("sh", "-c", f"git -C {repo} archive {a} | tar -x -C {tree_a}")
    sh("cp", "-a", f"{tree_a}/.", str(tree_b))
    for rel in changed:
        (tree_b / rel).write_bytes(sh("git", "-C", str(repo), "show", f"{b}:{rel}").stdout)
    sh("cp", "-a", str(tree_a), str(dest))
    changed_bytes = sum((tree_b / rel).stat().st_size for rel in changed)

    results: dict[str, dict[str, float]] = {}

    # 1. full sync into an empty directory vs git archive | tar -x
    full_ws, full_tar = OUT / "full-ws", OUT / "full-tar"

    def reset_full() -> None:
        for d in (full_ws, full_tar):
            shutil.rmtree(d, ignore_errors=True)
        full_tar.mkdir()

    ours, ref = median_pair(
        lambda: timed([*CLI, "sync", "--repo", str(repo), "--ref", a, "--workspace", str(full_ws)]),
        lambda: timed(f"git -C {repo} archive {a} | tar -x -C {full_tar}", shell=True),
        reset_full,
        args.repeat,
    )
    results["full sync A vs git archive|tar -x"] = {"ours_s": ours, "ref_s": ref, "goal": 1.5}
    print(f"  full sync: ours {ours:.3f}s, ref {ref:.3f}s", flush=True)

    # 2. incremental A -> B
    ws = OUT / "inc-ws"
    shutil.rmtree(ws, ignore_errors=True)
    sync_a = [*CLI, "sync", "--repo", str(repo), "--ref", a, "--workspace", str(ws)]
    sync_b = [*CLI, "sync", "--repo", str(repo), "--ref", b, "--workspace", str(ws)]
    sh(*sync_a)

    def reset_inc() -> None:
        sh(*sync_a)
        sh("rsync", "-a", "--delete", f"{tree_a}/", f"{dest}/")

    for label, rsync_args, goal in (
        ("incremental A->B vs rsync -a --delete", ["-a", "--delete"], 1.0),
        (
            "incremental A->B vs rsync -a --delete --checksum",
            ["-a", "--delete", "--checksum"],
            0.25,
        ),
    ):
        ours, ref = median_pair(
            lambda: timed(sync_b),
            lambda ra=rsync_args: timed(["rsync", *ra, f"{tree_b}/", f"{dest}/"]),  # type: ignore[misc]
            reset_inc,
            args.repeat,
        )
        results[label] = {"ours_s": ours, "ref_s": ref, "goal": goal}
        print(f"  {label}: ours {ours:.3f}s, ref {ref:.3f}s", flush=True)

    wt = OUT / "checkout-wt"
    shutil.rmtree(wt, ignore_errors=True)
    sh("git", "-C", str(repo), "worktree", "prune")
    sh("git", "-C", str(repo), "worktree", "add", "-q", "--detach", str(wt), a)

    def reset_checkout() -> None:
        reset_inc()
        sh("git", "-C", str(wt), "checkout", "-q", "--detach", a)

    ours, ref = median_pair(
        lambda: timed(sync_b),
        lambda: timed(["git", "-C", str(wt), "checkout", "-q", "--detach", b]),
        reset_checkout,
        args.repeat,
    )
    results["incremental A->B vs git checkout"] = {"ours_s": ours, "ref_s": ref, "goal": 0.0}

    sh(*sync_a)
    report = json.loads(sh(*sync_b, "--json").stdout)
    bytes_ok = report["bytes_written"] == changed_bytes

    print(f"\n{args.files} files x ~10 KB, {args.dirs} dirs; median of {args.repeat} runs\n")
    print(f"{'comparison':52} {'ours':>8} {'ref':>8} {'ratio':>7}  goal")
    for label, r in results.items():
        ratio = r["ours_s"] / r["ref_s"]
        r["ratio"] = ratio
        goal = f"<= {r['goal']}x" if r["goal"] else "(report)"
        print(f"{label:52} {r['ours_s']:8.3f} {r['ref_s']:8.3f} {ratio:6.2f}x  {goal}")
    print(
        f"\nbytes written A->B: {report['bytes_written']} (changed files: {changed_bytes})"
        f" -> {'exact' if bytes_ok else 'MISMATCH'}"
    )
    (OUT / "results.json").write_text(
        json.dumps({"files": args.files, "results": results, "bytes_exact": bytes_ok}, indent=2)
    )


if __name__ == "__main__":
    main()
