"""Benchmark: the streamed workspace ZIP through a real `gitops-sync serve`, against `zip -r`.

A workspace of --size bytes (many small source-like files, a few files of hundreds
of MB, some already-compressed files) is made once under bench/out/archive-SIZE/
with the manifest a sync would leave. The archive is streamed by a real server
process to curl, which discards it; the server's peak RSS (VmHWM) is read from
/proc. The like-for-like reference is `zip -q -r -6 -n SUFFIXES -` over the same tree
to the same sink (it stores what ours stores); plain `zip -r -6` is reported too.
Sides are interleaved, each round starting with another side; medians are kept and
ratios are ours / reference (lower is better), for wall and for CPU time. Run:

    .venv/bin/python bench/bench_archive.py --size 200M --verify
    .venv/bin/python bench/bench_archive.py --size 2G [--rounds 3] [--clean]

It prints one JSON line and writes it to bench/out/archive-SIZE.json (--out to change).
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
import statistics
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
#: the suffixes the archive stores rather than deflates, told to the reference ``zip -n``
STORED = ".gz:.jpg:.zip:.png"


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
    """Wall seconds, CPU seconds and bytes of ``zip -r -6 EXTRA`` streaming the tree to a pipe."""
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


def median_of(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The median wall seconds and the median CPU seconds of some runs."""
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="2G", help="workspace size, e.g. 200M or 2G")
    ap.add_argument("--verify", action="store_true", help="first save one ZIP and testzip it")
    ap.add_argument("--clean", action="store_true", help="delete the data afterwards")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are kept")
    ap.add_argument("--out", type=Path, help="result file (default bench/out/archive-SIZE.json)")
    ap.add_argument("--work", type=Path, help="where the workspace is made (default bench/out/)")
    args = ap.parse_args()
    total = parse_size(args.size)
    base = (args.work or OUT) / f"archive-{args.size}"
    ws = base / "ws"
    if not (ws / "data").is_dir():
        t = time.perf_counter()
        counts = make_workspace(ws, total)
        print(f"made {ws} in {time.perf_counter() - t:.0f}s: {counts}", file=sys.stderr)
    data_bytes, n_files = tree_bytes(ws)
    write_manifest(ws)  # (again: the format may differ between versions) and warm the cache

    port = free_port()
    proc = serve(ws, port)
    url = f"http://127.0.0.1:{port}/api/workspace/archive"
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "zip_n": [], "zip_6": []}
    sizes: dict[str, int] = {}

    def ours() -> None:
        cpu0 = cpu_seconds(proc.pid)
        secs, sizes["ours"] = stream_once(url, "/dev/null")
        runs["ours"].append((secs, cpu_seconds(proc.pid) - cpu0))

    def zip_n() -> None:  # the like-for-like reference: stores what ours stores
        secs, cpu, sizes["zip_n"] = zip_reference(ws, ["-n", STORED])
        runs["zip_n"].append((secs, cpu))

    def zip_6() -> None:  # plain zip, which also deflates the already-compressed files
        secs, cpu, sizes["zip_6"] = zip_reference(ws, [])
        runs["zip_6"].append((secs, cpu))

    sides = [ours, zip_n, zip_6]
    try:
        idle_hwm = vm(proc.pid, "VmHWM")
        if args.verify:
            sink = str(base / "out.zip")
            stream_once(url, sink)
            with zipfile.ZipFile(sink) as zf:
                assert zf.testzip() is None and len(zf.infolist()) == n_files
            os.unlink(sink)
        # Rounds interleave the sides, and each round another side goes first, so a
        # burst of the disk or of other work does not always fall on the same side.
        for r in range(args.rounds):
            for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
                side()
        peak = vm(proc.pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    mib = 1 << 20
    medians = {name: median_of(r) for name, r in runs.items()}

    def side(name: str) -> dict[str, float]:
        wall, cpu = medians[name]
        return {
            "wall_s": round(wall, 4),
            "cpu_s": round(cpu, 4),
            "MiB_per_s": round(data_bytes / mib / wall, 1),
            "zip_MiB": round(sizes[name] / mib),
        }

    def ratio(ref: str, i: int) -> float | None:  # ours / reference: lower is better
        return round(medians["ours"][i] / medians[ref][i], 2) if medians[ref][i] else None

    result = {
        "bench": "archive",
        "size": args.size,
        "files": n_files,
        "data_MiB": round(data_bytes / mib),
        "rounds": args.rounds,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "server_idle_rss_MiB": round(idle_hwm / mib, 1),
        "server_peak_rss_MiB": round(peak / mib, 1),
        "ours": side("ours"),
        "zip_n": side("zip_n"),
        "zip_6": side("zip_6"),
        "ratio_wall_vs_zip_n": ratio("zip_n", 0),
        "ratio_cpu_vs_zip_n": ratio("zip_n", 1),
        "ratio_wall_vs_zip_6": ratio("zip_6", 0),
        "ratio_cpu_vs_zip_6": ratio("zip_6", 1),
    }
    line = json.dumps(result)
    print(line)
    out = args.out or OUT / f"archive-{args.size}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(line + "\n")
    if args.clean:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
