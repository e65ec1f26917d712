"""``bench/timeline_report.py`` on a made-up timeline: it cuts a slow delivery into its
segments and names the causes that overlap it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "bench" / "timeline_report.py"
MS = 1_000_000


def write(path: Path, rows: list[list]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_slow_delivery_is_cut_into_segments_and_its_causes_named(tmp_path: Path):
    t = 1_000 * MS
    # 101 fast deliveries (10 ms) and one of 300 ms whose second storage call waited out a
    # retry while Azurite's loop was blocked and a Node scavenge ran.
    bench = [[f"p{i}", "new", 202, t + i * 20 * MS, t + i * 20 * MS, t + i * 20 * MS + 10 * MS]
             for i in range(101)]  # fmt: skip
    due = t + 3_000 * MS
    bench.append(["p999", "new", 202, due, due + 1 * MS, due + 300 * MS])
    server = [
        [due + 2 * MS, "handler", "p999", ""],
        [due + 3 * MS, "body", "p999", ""],
        [due + 4 * MS, "intake_start", "p999", ""],
        [due + 5 * MS, "call_start", "p999", "POST markers"],
        [due + 6 * MS, "call_end", "p999", "POST markers"],
        [due + 7 * MS, "call_start", "p999", "POST messages"],
        [due + 8 * MS, "retry", "p999", "ServiceResponseError: no answer"],
        [due + 290 * MS, "call_end", "p999", "POST messages"],
        [due + 295 * MS, "intake_end", "p999", ""],
        [due + 296 * MS, "answer", "p999", "202"],
    ]
    node = [
        [due + 10 * MS, "node_lag", "", str(250 * MS)],
        [due + 50 * MS, "node_gc", "", f"minor {20 * MS}"],
    ]
    write(tmp_path / "bench.jsonl", bench)
    write(tmp_path / "server.jsonl", server)
    write(tmp_path / "node.jsonl", node)
    write(tmp_path / "machine.jsonl", [])
    done = subprocess.run([sys.executable, str(REPORT), str(tmp_path)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert 0 == done.returncode, done.stderr
    out = done.stdout
    assert "102 deliveries, median 10.0 ms; 1 over 100 ms" in out
    assert "storage retries 1" in out
    segments = {line.split()[0]: line for line in out.splitlines() if "largest segment" in line}
    assert "the largest segment of    1 (100%)" in segments["storage"]  # 1 + 283 ms of calls
    assert "the largest segment of    0" in segments["generator"]
    causes = dict(
        (line[:25].strip(), line[25:].split()[0])
        for line in out.split("(not exclusive):", 1)[1].splitlines()
        if line.startswith("  ")
    )
    assert causes["node loop blocked"] == "1" and causes["storage retry"] == "1"
    assert causes["node gc"] == "0" and causes["server gc"] == "0"  # 20 ms of a 290 ms excess
