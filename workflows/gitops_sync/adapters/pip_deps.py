"""A function's ``requirements.txt``, installed with pip into a folder (wheels only).

``pip install --target`` for the Python the function's runtime names, with
``--only-binary=:all:`` (no build step runs on the deploy host) and
``--no-compile`` (``.pyc`` files embed timestamps). Installs are cached by the
requirements' text and the runtime, so a redeploy of the same requirements
runs pip once. pip's own settings (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, ...)
apply as usual.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import GitopsSyncError

PIP_TIMEOUT_S = 600


class RequirementsError(GitopsSyncError):
    """The requirements cannot be installed: pip's reason, in one line."""

    permanent = True


@dataclass(frozen=True, slots=True)
class InstalledDeps:
    """A folder of installed distributions, and what pip resolved."""

    root: Path
    distributions: list[dict[str, str]]  # name, version, sha256 of the wheel


def _platform_args(runtime: str) -> list[str]:
    version = runtime.removeprefix("python")
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return []  # this interpreter: pip's own tags are exactly right
    machine = platform.machine() or "x86_64"
    digits = version.replace(".", "")
    return [
        "--python-version", version, "--implementation", "cp", "--abi", f"cp{digits}",
        "--platform", f"manylinux2014_{machine}", "--platform", f"manylinux_2_28_{machine}",
        "--platform", "any",
    ]  # fmt: skip


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("ERROR:"):
            return ln.removeprefix("ERROR:").strip()
    return lines[-1] if lines else "pip failed without a message"


class PipInstaller:
    """Installs requirements into a cache folder keyed by (requirements, runtime)."""

    def __init__(self, cache_dir: Path, python: str | None = None) -> None:
        self.cache_dir = cache_dir
        self.python = python or sys.executable

    def install(self, requirements: bytes, runtime: str) -> InstalledDeps:
        key = hashlib.sha256(runtime.encode() + b"\0" + requirements).hexdigest()[:32]
        done = self.cache_dir / key
        report = done / "report.json"
        if report.is_file():
            return InstalledDeps(done / "site", json.loads(report.read_text()))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.cache_dir))
        try:
            dists = self._run_pip(requirements, runtime, work)
            (work / "report.json").write_text(json.dumps(dists))
            try:
                os.rename(work, done)
            except OSError:  # another builder finished first: use theirs
                shutil.rmtree(work, ignore_errors=True)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return InstalledDeps(done / "site", json.loads(report.read_text()))

    def _run_pip(self, requirements: bytes, runtime: str, work: Path) -> list[dict[str, str]]:
        req_file = work / "requirements.txt"
        req_file.write_bytes(requirements)
        cmd = [
            self.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-input", "--only-binary=:all:", "--no-compile", "--target", str(work / "site"),
            "--report", str(work / "pip-report.json"), "-r", str(req_file),
            *_platform_args(runtime),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PIP_NO_WARN_SCRIPT_LOCATION"] = "1"
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=env, timeout=PIP_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RequirementsError(f"pip did not finish within {PIP_TIMEOUT_S} s") from exc
        if proc.returncode != 0:
            raise RequirementsError(_first_error(proc.stderr))
        (work / "site").mkdir(exist_ok=True)  # an empty requirements file installs nothing
        return _resolved(work / "pip-report.json")


def _resolved(report_path: Path) -> list[dict[str, str]]:
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return []
    found = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        hashes = item.get("download_info", {}).get("archive_info", {}).get("hashes", {})
        found.append(
            {
                "name": str(meta.get("name", "")),
                "version": str(meta.get("version", "")),
                "sha256": str(hashes.get("sha256", "")),
            }
        )
    return sorted(found, key=lambda d: d["name"].lower())
