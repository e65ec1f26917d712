"""Benchmark: the streamed workspace ZIP through a real `gitops-sync serve`, against `zip -r`.

A workspace of --size bytes (many small source-like files, a few files of hundreds
of MB, some already-compressed files) is made once under bench/out/archive-SIZE/
with the manifest a sync would leave. The archive is streamed by a real server
process to curl, which discards it; the server's peak RSS (VmHWM) is read from
/proc. The reference is `zip -q -r -6 -` over the same tree to the same sink. Run:

    .venv/bin/python bench/bench_archive.py --size 200M --verify
    .venv/bin/python bench/bench_archive.py --size 2G [--rounds 2] [--clean]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

from gitops_sync.core.manifest import Manifest, dumps
from gitops_sync.core.model import MODE_FILE, RecordedFile

OUT = Path(__file__).resolve().parent / "out"
CLI = str(Path(sys.executable).parent / "gitops-sync")
KEY = "bench-key"


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def text_blocks(rng: random.Random, count: int = 48, size: int = 1 << 20) -> list[bytes]:
    """Real source text (this Python's standard library), cut into blocks of ``size``.

    Blocks are reused far beyond deflate's 32 KiB window, so repeating them does
    not make the data compress better than source code does.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    corpus = bytearray()
    for path in sorted(stdlib.rglob("*.py")):
        if "test" in path.parts:
            continue
        corpus += path.read_bytes()
        if len(corpus) >= count * size:
            break
    while len(corpus) < count * size:
        corpus += corpus
    return [bytes(corpus[b * size : (b + 1) * size]) for b in range(count)]


def make_workspace(root: Path, total: int) -> dict[str, int]:
    """Write the tree and its manifest; returns counts by kind. Deterministic for a size."""
    rng = random.Random(total)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    blocks = text_blocks(rng)

    def put(rel: str, chunks: list[bytes]) -> None:
        full = root / rel
        full.parent.mkdir(parents=True, exist_ok=True)
        with open(full, "wb") as f:
            for c in chunks:
                f.write(c)

    budget_small = total * 15 // 100  # many small files
    budget_packed = total * 15 // 100  # already compressed (.gz, .jpg, .zip)
    budget_big = total - budget_small - budget_packed  # a few big text files
    counts = {"small": 0, "packed": 0, "big": 0}
    used = 0
    while used < budget_small:
        size = min(int(rng.lognormvariate(8.5, 1.0)) + 64, 256 << 10)
        block = rng.choice(blocks)
        start = rng.randrange(0, len(block) - size)
        put(
            f"src/m{counts['small'] % 300:03d}/f{counts['small']:06d}.py",
            [block[start : start + size]],
        )
        used += size
        counts["small"] += 1
    used = 0
    while used < budget_packed:
        size = min(rng.randint(1 << 20, 24 << 20), budget_packed - used + 1024)
        ext = rng.choice(["gz", "jpg", "zip", "png"])
        put(f"assets/a{counts['packed']:04d}.{ext}", [rng.randbytes(size)])
        used += size
        counts["packed"] += 1
    n_big = 3
    for i in range(n_big):
        size = budget_big // n_big
        chunks = [rng.choice(blocks) for _ in range(size >> 20)]
        put(f"data/big{i}.log", chunks)
        counts["big"] += 1
    return counts


def tree_bytes(root: Path) -> tuple[int, int]:
    total = count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".gitops-sync"]
        for name in filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_size
            count += 1
    return total, count


def write_manifest(root: Path) -> None:
    """The manifest a sync of this tree would leave (git blob ids); reading warms the cache."""
    files: dict[str, RecordedFile] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".gitops-sync"]
        for name in filenames:
            full = os.path.join(dirpath, name)
            size = os.lstat(full).st_size
            h = hashlib.sha1(b"blob %d\0" % size)  # git's blob id
            with open(full, "rb") as f:
                while chunk := f.read(4 << 20):
                    h.update(chunk)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            files[rel] = RecordedFile(h.hexdigest(), size, MODE_FILE, "")
    meta = root / ".gitops-sync"
    meta.mkdir(exist_ok=True)
    manifest = Manifest(commit="b" * 40, ref="refs/heads/main", files=files)
    (meta / "manifest.json").write_bytes(dumps(manifest))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm(pid: int, field: str) -> int:
    """A /proc/PID/status memory field in bytes (VmHWM: peak RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(workspace: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WORKSPACE_ROOT": str(workspace),
        "GITOPS_SYNC_API_KEY": KEY,
        "SYNC_REPOSITORY": "bench/workspace",
        # The workspace routes need no storage; an endpoint nobody listens on is enough.
        "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
        "KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;",
        "GITOPS_SYNC_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([CLI, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "listening" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc


def stream_once(url: str, sink: str) -> tuple[float, int]:
    started = time.perf_counter()
    out = subprocess.run(
        ["curl", "-sS", "--fail", "-H", f"x-functions-key: {KEY}", "-o", sink,
         "-w", "%{size_download}", url],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return time.perf_counter() - started, int(out.stdout)


def zip_reference(workspace: Path, extra: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and bytes of ``zip -r -6`` streaming the tree to a pipe."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with subprocess.Popen(
        ["zip", "-q", "-r", "-6", *extra, "-", ".", "-x", ".gitops-sync/*"],
        cwd=workspace, stdout=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        n = 0
        while chunk := proc.stdout.read(1 << 20):
            n += len(chunk)
    if proc.returncode:
        raise SystemExit("zip failed")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="2G", help="workspace size, e.g. 200M or 2G")
    ap.add_argument("--verify", action="store_true", help="also save the ZIP and testzip it")
    ap.add_argument("--clean", action="store_true", help="delete the data afterwards")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; best is kept")
    args = ap.parse_args()
    total = parse_size(args.size)
    base = OUT / f"archive-{args.size}"
    ws = base / "ws"
    if not (ws / "data").is_dir():
        t = time.perf_counter()
        counts = make_workspace(ws, total)
        print(f"made {ws} in {time.perf_counter() - t:.0f}s: {counts}", file=sys.stderr)
    data_bytes, n_files = tree_bytes(ws)
    write_manifest(ws)  # (again: the format may differ between versions) and warm the cache

    # Rounds interleave the two sides; the best round of each is kept, which is
    # the least disturbed by whatever else the machine runs (load_avg says how much).
    port = free_port()
    proc = serve(ws, port)
    ours: list[tuple[float, float]] = []
    zips: list[tuple[float, float]] = []
    zipns: list[tuple[float, float]] = []
    try:
        idle_hwm = vm(proc.pid, "VmHWM")
        for r in range(args.rounds):
            sink = str(base / "out.zip") if args.verify and r == 0 else "/dev/null"
            cpu0 = cpu_seconds(proc.pid)
            secs, zip_bytes = stream_once(f"http://127.0.0.1:{port}/api/workspace/archive", sink)
            ours.append((secs, cpu_seconds(proc.pid) - cpu0))
            if sink != "/dev/null":
                with zipfile.ZipFile(sink) as zf:
                    assert zf.testzip() is None and len(zf.infolist()) == n_files
                os.unlink(sink)
            secs, cpu, zip_out = zip_reference(ws, [])
            zips.append((secs, cpu))
            secs, cpu, _zipn_out = zip_reference(ws, ["-n", ".gz:.jpg:.zip:.png"])
            zipns.append((secs, cpu))
        peak = vm(proc.pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    (ours_s, ours_cpu), (zip_s, zip_cpu), (zipn_s, zipn_cpu) = min(ours), min(zips), min(zipns)
    mib = 1 << 20
    result = {
        "size": args.size,
        "files": n_files,
        "data_MiB": round(data_bytes / mib),
        "rounds": args.rounds,
        "load_avg_1m": os.getloadavg()[0],
        "server_idle_rss_MiB": round(idle_hwm / mib, 1),
        "server_peak_rss_MiB": round(peak / mib, 1),
        "ours_s": round(ours_s, 2),
        "ours_cpu_s": round(ours_cpu, 2),
        "ours_MiB_per_s": round(data_bytes / mib / ours_s, 1),
        "ours_zip_MiB": round(zip_bytes / mib),
        "zip_r6_s": round(zip_s, 2),
        "zip_r6_cpu_s": round(zip_cpu, 2),
        "zip_r6_zip_MiB": round(zip_out / mib),
        "ratio_vs_zip_r6": round(zip_s / ours_s, 2),
        "cpu_ratio_vs_zip_r6": round(zip_cpu / ours_cpu, 2),
        "zip_r6_n_s": round(zipn_s, 2),
        "zip_r6_n_cpu_s": round(zipn_cpu, 2),
        "ratio_vs_zip_r6_n": round(zipn_s / ours_s, 2),
        "cpu_ratio_vs_zip_r6_n": round(zipn_cpu / ours_cpu, 2),
    }
    print(json.dumps(result))
    if args.clean:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
