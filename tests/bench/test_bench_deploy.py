"""The deploy benchmark's result file: a tiny real run has the shape the README's figures use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_deploy.py"
COMMITTED = ROOT / "bench" / "results" / "deploy.json"
TIMING = {"wall_s", "cpu_s"}


def shape_problems(doc: dict[str, Any]) -> list[str]:
    """What is missing or inconsistent in a result document (empty when it is well formed)."""
    problems = []
    d, p = doc.get("deploy", {}), doc.get("package", {})
    for part, keys in (
        (d, {"functions", "repeat", "changed_function", "changed_package_bytes", "one_changed",
             "all", "bytes_exact", "time_ratio", "cpu_ratio", "time_goal"}),
        (d.get("one_changed", {}), TIMING | {"azurite_cpu_s", "requests", "bytes_uploaded",
                                             "listing_bytes_added", "deployed", "runs_wall_s"}),
        (d.get("all", {}), TIMING | {"azurite_cpu_s", "requests", "bytes_uploaded",
                                     "listing_bytes_added", "deployed", "runs_wall_s"}),
        (p, {"input_bytes", "files", "repeat", "ours", "zip", "ratio", "cpu_ratio", "goal",
             "identical", "builds_compared"}),
        (p.get("ours", {}), TIMING | {"bytes", "runs_wall_s"}),
        (p.get("zip", {}), TIMING | {"bytes", "runs_wall_s"}),
    ):  # fmt: skip
        problems += [f"missing {k}" for k in sorted(keys - part.keys())]
    if problems:
        return problems
    one, full = d["one_changed"], d["all"]
    checks = {
        "one function deployed": one["deployed"] == 1,
        "every function deployed": full["deployed"] == d["functions"],
        "runs as many as rounds": len(one["runs_wall_s"])
        == len(full["runs_wall_s"])
        == d["repeat"],
        "bytes exact": d["bytes_exact"]
        and one["bytes_uploaded"] == one["listing_bytes_added"] == d["changed_package_bytes"],
        "full upload counted both ways": full["bytes_uploaded"] == full["listing_bytes_added"] > 0,
        "fewer requests for one": 0 < one["requests"] < full["requests"],
        "time ratio is one/all": abs(d["time_ratio"] - one["wall_s"] / full["wall_s"]) < 1e-3,
        "builds identical": p["identical"] is True and p["builds_compared"] == p["repeat"] + 1,
        "package ratio is ours/zip": abs(p["ratio"] - p["ours"]["wall_s"] / p["zip"]["wall_s"])
        < 1e-3,
        "both packages hold the input": p["ours"]["bytes"] > 0 and p["zip"]["bytes"] > 0,
    }
    return [name for name, ok in checks.items() if not ok]


@pytest.mark.slow
def test_a_tiny_run_writes_a_complete_consistent_result_file(tmp_path):
    """3 functions, 1 round, 0.2 MB: the file has every figure, bytes exact, builds identical."""
    out = tmp_path / "deploy.json"
    args = ["--functions", "3", "--repeat", "1", "--package-mb", "0.2", "--package-repeat", "2"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert [] == shape_problems(doc)
    assert (3, 1, 2) == (
        doc["deploy"]["functions"],
        doc["deploy"]["repeat"],
        doc["package"]["repeat"],
    )
    assert "bytes uploaded" in done.stdout and "ratio ours/zip" in done.stdout


def test_the_committed_result_file_is_complete_and_consistent():
    """bench/results/deploy.json (the README's figures) has every figure, and they agree."""
    assert [] == shape_problems(json.loads(COMMITTED.read_text()))
