"""Benchmark: CPU per storage call, the SDK's default transport against LeanTransport
and against the intake's lean path (``adapters/storage_hot.py``, "hot").

One Azurite; the same adapter calls (``Tables.insert``, ``Tables.get``,
``JobQueue.send``: the intake's three kinds) through each, rounds
interleaved (sdk, lean, hot, sdk, lean, hot, ...), each round on fresh tables and queue.
Reports this process's CPU time and the wall time per call, medians over rounds,
and the lean/sdk ratio. Run:

    .venv/bin/python bench/bench_storage_transport.py [--rounds 5] [--calls 300] [--out F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from pathlib import Path

from azure.core.pipeline.transport import HttpTransport, RequestsTransport

from gitops_sync.adapters.azurite import Azurite
from gitops_sync.adapters.http_transport import LeanTransport
from gitops_sync.adapters.queues import JobQueue
from gitops_sync.adapters.tables import Tables

OUT = Path(__file__).resolve().parent / "out" / "storage_transport.json"
#: None: no transport given, so the adapters take the lean path of storage_hot
TRANSPORTS: dict[str, type[HttpTransport] | None] = {
    "sdk": RequestsTransport,
    "lean": LeanTransport,
    "hot": None,
}


def one_round(conn: str, make: type[HttpTransport] | None, calls: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call for ``calls`` x (insert, get, send)."""
    prefix, name = f"b{uuid.uuid4().hex[:12]}", f"b{uuid.uuid4().hex[:16]}"
    tables = Tables.from_connection_string(conn, prefix, transport=make() if make else None)
    queue = JobQueue.from_connection_string(conn, name, make() if make else None)
    assert (tables.hot is None) == (make is not None)
    tables.client("markers")
    queue.ensure()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(calls):
        row = {"PartitionKey": "p", "RowKey": f"c-{i:040d}", "job_id": uuid.uuid4().hex}
        assert tables.insert("markers", row)
        assert tables.get("markers", "p", row["RowKey"]) is not None
        queue.send(json.dumps({"job_id": row["job_id"]}))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    queue.close()
    n = 3 * calls
    return cpu * 1000 / n, wall * 1000 / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300, help="insert+get+send triples per round")
    ap.add_argument("--out", type=Path, default=OUT, help="where the JSON result goes")
    args = ap.parse_args()
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in TRANSPORTS}
    with Azurite() as azurite:
        one_round(azurite.connection_string, LeanTransport, 20)  # warm-up, not counted
        for _ in range(args.rounds):
            for name, make in TRANSPORTS.items():
                got[name].append(one_round(azurite.connection_string, make, args.calls))
    report: dict = {
        "bench": "storage_transport",
        "rounds": args.rounds,
        "calls_per_round": 3 * args.calls,
    }
    report |= {
        name: {
            "cpu_ms_per_call": round(statistics.median(c for c, _ in rows), 3),
            "wall_ms_per_call": round(statistics.median(w for _, w in rows), 3),
            "rounds": [[round(c, 3), round(w, 3)] for c, w in rows],
        }
        for name, rows in got.items()
    }
    sdk, lean, hot = report["sdk"], report["lean"], report["hot"]
    report["ratio_cpu_lean_over_sdk"] = round(lean["cpu_ms_per_call"] / sdk["cpu_ms_per_call"], 2)
    report["ratio_wall_lean_over_sdk"] = round(
        lean["wall_ms_per_call"] / sdk["wall_ms_per_call"], 2
    )
    report["ratio_cpu_hot_over_sdk"] = round(hot["cpu_ms_per_call"] / sdk["cpu_ms_per_call"], 2)
    report["ratio_cpu_hot_over_lean"] = round(hot["cpu_ms_per_call"] / lean["cpu_ms_per_call"], 2)
    report["ratio_wall_hot_over_sdk"] = round(hot["wall_ms_per_call"] / sdk["wall_ms_per_call"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'transport':<10} {'CPU ms/call':>12} {'wall ms/call':>13}  (medians, {args.rounds})")
    for name in TRANSPORTS:
        row = report[name]
        print(f"{name:<10} {row['cpu_ms_per_call']:>12} {row['wall_ms_per_call']:>13}")
    print(f"lean / sdk: CPU x{report['ratio_cpu_lean_over_sdk']},"
          f" wall x{report['ratio_wall_lean_over_sdk']}")  # fmt: skip
    print(f"hot / sdk: CPU x{report['ratio_cpu_hot_over_sdk']},"
          f" wall x{report['ratio_wall_hot_over_sdk']}; hot / lean: CPU"
          f" x{report['ratio_cpu_hot_over_lean']}")  # fmt: skip
    print(json.dumps(report))  # last line: the result, as written
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
