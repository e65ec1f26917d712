"""``bench/bench_sync.py`` on a tiny tree: it runs end to end and writes its result file's shape."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_sync.py"
KEYS = {"full", "rsync", "rsync_checksum", "checkout", "noop"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_bench_sync_writes_ratios_as_ours_over_reference(tmp_path: Path) -> None:
    """Every comparison has medians, a ratio = ours / reference, a goal and a verdict."""
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--files", "40", "--dirs", "2", "--repeat", "2",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert 0 == proc.returncode, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert (40, 2, True, 0) == (
        doc["files"],
        doc["repeat"],
        doc["bytes_exact"],
        doc["noop_bytes_written"],
    )
    assert KEYS == set(doc["results"])
    for r in doc["results"].values():
        assert 2 == len(r["ours_wall_all"]) == len(r["ref_wall_all"])
        assert r["ratio"] == pytest.approx(r["ours_s"] / r["ref_s"], rel=0.01, abs=0.002)
        assert r["met"] == (r["ratio"] <= r["goal"])
        assert 0 < r["python_cpu_s"] <= r["ours_cpu_s"] + 0.05
