"""Helpers for the deploy tests: repositories with functions, a local wheel, one-call builds."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from gitops_sync.adapters.git_source import GitSource
from gitops_sync.adapters.pip_deps import PipInstaller
from gitops_sync.core.packaging import Package
from gitops_sync.deploy.build import PackageBuilder, scan_functions
from tests.gitrepo import Repo

TOML = 'runtime = "python3.11"\nhandler = "main.handle"\n'


def handler_source(answer: str) -> str:
    return f"def handle(event, context):\n    return {{'answer': {answer!r}, 'event': event}}\n"


def add_function(repo: Repo, name: str, answer: str = "v1", extra_toml: str = "") -> None:
    repo.write(f"functions/{name}/function.toml", TOML + extra_toml)
    repo.write(f"functions/{name}/main.py", handler_source(answer))


def build_one(
    repo_path: Path, commit: str, name: str, pip_cache: Path, epoch: str | None = None
) -> Package:
    """Build function NAME of COMMIT exactly as a deployment does."""
    source = GitSource(str(repo_path))
    report = scan_functions(source, commit)
    assert name in report.specs, report.invalid
    builder = PackageBuilder(source, PipInstaller(pip_cache), source_date_epoch=epoch)
    package, _ = builder.build(
        report.specs[name], report.members[name], sha256=report.hashes[name], commit=commit
    )
    return package


def make_wheel(folder: Path, name: str = "tinydep", version: str = "1.0", value: int = 42) -> Path:
    """A real pure-Python wheel (PEP 427), written by hand so no build step or index is needed."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {value}\n".encode(),
        f"{dist}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n").encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record_lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(data)}")
    record_lines.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel
