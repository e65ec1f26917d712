"""The unpacked-package cache: verify a version's ZIP, unpack it once, read-only; prune old ones.

Layout: ``<cache>/<name>/<version>-<sha12>/``. A package is unpacked into a temporary folder next to
its final place and renamed, so a half-unpacked package is never seen, even by another process.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from .model import VersionRef, WorkerStartError


class PackageRejected(ValueError):
    """The package's bytes or entries are not acceptable (hash mismatch, unsafe path, link)."""


class PackageCache:
    """Verified read-only unpacked packages in one folder; safe across threads and processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[tuple[str, int, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def path_for(self, ref: VersionRef) -> Path:
        return self.root / ref.name / f"{ref.version}-{ref.sha256[:12]}"

    def ensure(self, ref: VersionRef, load: Callable[[VersionRef], bytes]) -> Path:
        """The unpacked folder of ``ref``, loading and verifying its package first if needed."""
        dest = self.path_for(ref)
        if dest.is_dir():
            return dest
        with self._guard:
            lock = self._locks.setdefault(ref.key, threading.Lock())
        with lock:
            if dest.is_dir():
                return dest
            try:
                data = load(ref)
            except Exception as exc:
                raise WorkerStartError(
                    502, f"package of {ref.name} v{ref.version} could not be loaded: {exc}"
                ) from exc
            try:
                self._unpack(ref, data, dest)
            except (PackageRejected, zipfile.BadZipFile) as exc:
                raise WorkerStartError(
                    502, f"package of {ref.name} v{ref.version} refused: {exc}"
                ) from exc
        return dest

    def _unpack(self, ref: VersionRef, data: bytes, dest: Path) -> None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != ref.package_sha256:
            raise PackageRejected(f"sha256 {actual} does not match {ref.package_sha256}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                _extract_safely(zf, tmp)
                _check_manifest(zf, ref)
            _make_read_only(tmp)
            try:
                tmp.rename(dest)
            except OSError:
                if not dest.is_dir():  # not "another process won the race"
                    raise
                remove_tree(tmp)
        except BaseException:
            if tmp.exists():
                remove_tree(tmp)
            raise

    def prune(self, name: str, kept_versions: set[int]) -> list[Path]:
        """Deletes unpacked versions of ``name`` not in ``kept_versions``; returns them."""
        folder = self.root / name
        removed: list[Path] = []
        if not folder.is_dir():
            return removed
        for child in folder.iterdir():
            version, _, _ = child.name.partition("-")
            if child.name.startswith(".") or not version.isdigit():
                continue
            if int(version) not in kept_versions:
                remove_tree(child)
                removed.append(child)
        return removed


def _extract_safely(zf: zipfile.ZipFile, into: Path) -> None:
    for info in zf.infolist():
        name = info.filename
        path = PurePosixPath(name)
        if (
            not name
            or "\\" in name
            or path.is_absolute()
            or ".." in path.parts
            or (len(name) > 1 and name[1] == ":")
        ):
            raise PackageRejected(f"unsafe entry path {name!r}")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise PackageRejected(f"entry {name!r} is a link")
        target = into.joinpath(*path.parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "xb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
        os.chmod(target, 0o555 if mode & 0o111 else 0o444)


def _check_manifest(zf: zipfile.ZipFile, ref: VersionRef) -> None:
    try:
        manifest = json.loads(zf.read("manifest.json"))
    except KeyError:
        raise PackageRejected("manifest.json is missing") from None
    except ValueError as exc:
        raise PackageRejected(f"manifest.json is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("sha256") != ref.sha256:
        raise PackageRejected(f"manifest.json does not name content sha256 {ref.sha256}")


def _make_read_only(root: Path) -> None:
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        os.chmod(dirpath, 0o555)  # noqa: S103 - read-only, not permissive


def remove_tree(path: Path) -> None:
    """Delete a read-only tree (folders are made writable first)."""
    for dirpath, _dirs, _files in os.walk(path):
        os.chmod(dirpath, 0o700)
    shutil.rmtree(path, ignore_errors=True)
