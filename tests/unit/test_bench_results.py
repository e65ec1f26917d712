"""The benchmarks whose figures the README quotes run, and write results of a fixed shape.

Each runs small here (seconds, not minutes) as a real process; the figures themselves
come from the commands in the README.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, out: Path, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert 0 == done.returncode, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result == json.loads(done.stdout.strip().splitlines()[-1])  # printed = written
    return result


@pytest.mark.slow
def test_archive_bench_reports_medians_and_ratios_of_ours_over_the_reference(tmp_path: Path):
    """bench_archive.py writes each side's median wall and CPU seconds, and every ratio is
    ours / reference (lower is better), with the like-for-like zip -n among them."""
    r = _run("bench_archive.py", tmp_path / "r.json", "--size", "3M", "--rounds", "3",
             "--work", str(tmp_path), "--verify", "--clean")  # fmt: skip
    assert ("archive", "3M", 3) == (r["bench"], r["size"], r["rounds"])
    assert r["files"] > 0 and r["server_peak_rss_MiB"] >= r["server_idle_rss_MiB"] > 0
    for name in ("ours", "zip_n", "zip_6"):
        assert {"wall_s", "cpu_s", "MiB_per_s", "zip_MiB"} == set(r[name])
        assert r[name]["wall_s"] > 0
    for ref in ("zip_n", "zip_6"):
        for kind, key in (("wall", "wall_s"), ("cpu", "cpu_s")):
            if r[ref][key] == 0:  # a tiny run may take less CPU than /proc can count
                assert r[f"ratio_{kind}_vs_{ref}"] is None
                continue
            ours_over_ref = r["ours"][key] / r[ref][key]
            assert r[f"ratio_{kind}_vs_{ref}"] == pytest.approx(ours_over_ref, rel=0.01, abs=0.011)


def test_azure_files_bench_counts_the_requests_of_three_syncs(tmp_path: Path):
    """bench_azure_files.py reports three syncs: a first one (3 requests a file plus one a
    directory), one of the same commit (no file read but the manifest, nothing written),
    and one without the manifest (every file downloaded once, nothing written)."""
    r = _run("bench_azure_files.py", tmp_path / "r.json", "--files", "24", "--dirs", "4")
    assert ("azure_files", 24, 4) == (r["bench"], r["files"], r["dirs"])
    first, again, lost = r["first_sync"], r["same_commit_again"], r["manifest_deleted"]
    # files + manifest, 3 requests each; dirs + .gitops-sync + its tmp, one each
    assert 3 * (24 + 1) + 4 + 2 <= first["requests"]
    assert 24 * r["file_bytes"] == first["bytes_written"]
    assert (1, 0) == (again["downloads"], again["bytes_written"])
    assert again["requests"] < first["requests"] // 4
    assert (24 + 1, 0) == (lost["downloads"], lost["bytes_written"])


@pytest.mark.azurite
def test_storage_transport_bench_reports_each_path_and_the_ratios(tmp_path: Path):
    """bench_storage_transport.py: per path (SDK transport, LeanTransport, the lean path of
    storage_hot) the median CPU and wall ms per call over interleaved rounds, and the
    ratios of those medians."""
    r = _run("bench_storage_transport.py", tmp_path / "r.json", "--rounds", "2", "--calls", "5")
    assert ("storage_transport", 2, 15) == (r["bench"], r["rounds"], r["calls_per_round"])
    for name in ("sdk", "lean", "hot"):
        assert len(r[name]["rounds"]) == 2 and r[name]["wall_ms_per_call"] > 0
    for kind in ("cpu", "wall"):
        ratio = r["lean"][f"{kind}_ms_per_call"] / r["sdk"][f"{kind}_ms_per_call"]
        assert r[f"ratio_{kind}_lean_over_sdk"] == pytest.approx(ratio, abs=0.006)
        ratio = r["hot"][f"{kind}_ms_per_call"] / r["sdk"][f"{kind}_ms_per_call"]
        assert r[f"ratio_{kind}_hot_over_sdk"] == pytest.approx(ratio, abs=0.006)
