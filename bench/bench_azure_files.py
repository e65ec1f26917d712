"""Benchmark: what a sync sends to Azure Files, counted on the in-process fake File service.

Azurite has no Azure Files, so the store talks to ``tests/fakes/azure_files.py`` (the
real SDK client over HTTP to a fake server in this process). Three syncs of one commit
(FILES files of SIZE bytes in DIRS directories): the first into an empty share, the
second of the same commit, the third with the manifest deleted (a first sync onto a
populated share). Requests are counted by the fake; times are wall seconds. Run:

    .venv/bin/python bench/bench_azure_files.py [--files 2000] [--dirs 400] [--size 2048]

It prints one JSON line and writes it to bench/out/azure_files.json (--out to change).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fake lives under tests/

from azure.storage.fileshare import ShareFileClient  # noqa: E402
from tests.fakes.azure_files import fake_file_service  # noqa: E402
from tests.gitrepo import Repo  # noqa: E402

from gitops_sync.adapters.azure_files import AzureFilesStore  # noqa: E402
from gitops_sync.adapters.git_source import GitSource  # noqa: E402
from gitops_sync.sync import sync_workspace  # noqa: E402

OUT = ROOT / "bench" / "out" / "azure_files.json"


def one_sync(source: GitSource, conn: str, share: str, requests: list) -> dict[str, float | int]:
    """Sync main with a fresh store; what it sent and how long it took."""
    requests.clear()
    store = AzureFilesStore.from_connection_string(conn, share)
    started = time.perf_counter()
    result = sync_workspace(source, "main", store)
    seconds = time.perf_counter() - started
    kinds = Counter((method, op) for method, op, _ in requests)
    return {
        "seconds": round(seconds, 2),
        "requests": len(requests),
        "listings": kinds[("GET", "list")],
        "downloads": kinds[("GET", "")],
        "bytes_written": result.bytes_written,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--dirs", type=int, default=400)
    ap.add_argument("--size", type=int, default=2048, help="bytes per file")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rng = random.Random(args.files)
    with tempfile.TemporaryDirectory(prefix="bench-azure-files-") as tmp:
        repo = Repo(Path(tmp) / "repo")
        for i in range(args.files):
            repo.write(f"d{i % args.dirs:03d}/f{i}.txt", rng.randbytes(args.size))
        repo.commit("bench tree")
        source = GitSource(str(repo.path), cache_dir=Path(tmp) / "cache")
        source.resolve("refs/heads/main")  # the fetch into the cache is not the store's cost
        with fake_file_service() as service:
            conn, share = service.connection_string, "bench"
            first = one_sync(source, conn, share, service.requests)
            second = one_sync(source, conn, share, service.requests)
            manifest = ShareFileClient.from_connection_string(
                conn, share, ".gitops-sync/manifest.json"
            )
            manifest.delete_file()
            no_manifest = one_sync(source, conn, share, service.requests)
    result = {
        "bench": "azure_files",
        "files": args.files,
        "dirs": args.dirs,
        "file_bytes": args.size,
        "first_sync": first,
        "same_commit_again": second,
        "manifest_deleted": no_manifest,
    }
    line = json.dumps(result)
    print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
