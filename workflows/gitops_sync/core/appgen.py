"""The ``functionapp`` target's package: every active function version in one Function App ZIP.

Pure: function package ZIPs (bytes) in, app ZIP (bytes) out. Layout of the result:
``host.json``, ``function_app.py`` (see ``appgen_template``), ``gitops_sync_app.json`` (what
it registers), ``functions/<name>/`` (each function's root, with its ``_include/``), and
every function's ``_deps`` merged into ``.python_packages/lib/site-packages`` (where the
Functions host looks). The same dependency file with different bytes in two functions, or
one distribution at two versions, fails the build naming both functions and the package.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .appgen_template import FUNCTION_APP_PY
from .errors import GitopsSyncError
from .paths import safe_relative_path
from .zipwrite import ZipEntry, is_executable, write_zip

PACKAGE_ROUTE = "gitops-sync/package"  # served under the host's "api/" prefix
SITE_PACKAGES = ".python_packages/lib/site-packages"
APP_SPEC = "gitops_sync_app.json"
HOST_JSON = {"version": "2.0", "extensions": {"http": {"routePrefix": "api"}}}
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
# installer bookkeeping that may differ between two installs of the same wheel
_INSTALL_RECORDS = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})


class AppBuildError(GitopsSyncError, ValueError):
    """The active functions cannot make one app; the message names functions and cause."""

    permanent = True  # the repository must change


@dataclass(frozen=True, slots=True)
class AppFunction:
    name: str
    sha256: str
    handler: str
    route: str  # under the host's "api/" prefix
    function_name: str  # the Functions host's name for it


@dataclass(frozen=True, slots=True)
class AppPackage:
    key: str  # sha256 over the sorted (name, function sha256) pairs
    data: bytes  # the ZIP
    functions: tuple[AppFunction, ...]
    entries: tuple[str, ...]  # every path in the ZIP, sorted

    @property
    def blob_name(self) -> str:
        return f"apps/{self.key}.zip"


def app_key(pairs: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted (name, function sha256) pairs: the set of active versions."""
    h = hashlib.sha256()
    for name, sha in sorted(pairs):
        h.update(f"{name}\0{sha}\n".encode())
    return h.hexdigest()


def host_function_name(name: str) -> str:
    """The Functions host's name for a user function (letters, digits and '_' only)."""
    return "invoke_" + name.replace("-", "_")


def _dist_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503 normalisation


@dataclass(slots=True)
class _Unpacked:
    name: str
    sha256: str
    manifest: dict[str, Any]
    own: dict[str, tuple[bytes, bool]]  # path under the function root -> (bytes, executable)
    deps: dict[str, tuple[bytes, bool]]  # path under site-packages -> (bytes, executable)


def _read_function(name: str, sha: str, data: bytes) -> _Unpacked:
    def fail(why: str) -> AppBuildError:
        return AppBuildError(f"function '{name}': package {sha[:12]}: {why}")

    if not _NAME_RE.match(name):
        raise fail("not a valid function name")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in zf.infolist() if not i.is_dir()]
        files = {i.filename: (zf.read(i), is_executable(i)) for i in infos}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise fail(f"not a readable ZIP ({exc})") from exc
    for path in files:
        if safe_relative_path(path) != path:
            raise fail(f"unsafe entry name {path!r}")
    if "manifest.json" not in files:
        raise fail("no manifest.json")
    try:
        manifest = json.loads(files["manifest.json"][0])
    except ValueError as exc:
        raise fail(f"manifest.json is not JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != 1:
        raise fail("manifest.json is not format 1")
    if manifest.get("name") != name or manifest.get("sha256") != sha:
        raise fail(
            f"manifest.json names {manifest.get('name')!r} {str(manifest.get('sha256'))[:12]}"
        )
    config = manifest.get("config")
    if not isinstance(config, dict) or not _HANDLER_RE.match(str(config.get("handler", ""))):
        raise fail("manifest.json has no valid config.handler")
    own, deps = {}, {}
    for path, entry in files.items():
        if path.startswith("_deps/"):
            rel = path[len("_deps/") :]
            if "__pycache__/" not in path and not path.endswith(".pyc"):
                deps[rel] = entry  # bytecode is dropped: it embeds build-time mtimes
        else:
            own[path] = entry
    return _Unpacked(name, sha, manifest, own, deps)


def _owners(deps: Mapping[str, tuple[bytes, bool]]) -> dict[str, str]:
    """Path under site-packages -> the distribution whose RECORD lists it."""
    owner: dict[str, str] = {}
    for path, (data, _) in deps.items():
        top, _, leaf = path.partition("/")
        if leaf != "RECORD" or not top.endswith(".dist-info"):
            continue
        dist = top[: -len(".dist-info")].rsplit("-", 1)[0]
        for line in data.decode("utf-8", "replace").splitlines():
            listed = line.split(",", 1)[0]
            if listed:
                owner[listed] = dist
    return owner


def _check_requirements(functions: Sequence[_Unpacked]) -> None:
    seen: dict[str, tuple[str, str, str]] = {}  # dist key -> (name, version, function)
    for fn in functions:
        for req in fn.manifest.get("requirements") or []:
            if not isinstance(req, dict) or "name" not in req:
                continue
            key, version = _dist_key(str(req["name"])), str(req.get("version", ""))
            before = seen.setdefault(key, (str(req["name"]), version, fn.name))
            if before[1] != version:
                raise AppBuildError(
                    f"functions '{before[2]}' and '{fn.name}' need different versions of "
                    f"'{before[0]}' ({before[1]} and {version}): one Function App has one "
                    "site-packages; align the requirements or use DEPLOY_TARGET=builtin"
                )


def _merge_deps(functions: Sequence[_Unpacked]) -> dict[str, tuple[bytes, bool]]:
    merged: dict[str, tuple[bytes, bool]] = {}
    source: dict[str, str] = {}
    owners = {fn.name: _owners(fn.deps) for fn in functions}
    for fn in functions:
        for path, entry in sorted(fn.deps.items()):
            if path not in merged:
                merged[path], source[path] = entry, fn.name
                continue
            if merged[path][0] == entry[0] or path.rsplit("/", 1)[-1] in _INSTALL_RECORDS:
                continue
            first = source[path]
            dist = owners[first].get(path) or owners[fn.name].get(path) or path.split("/")[0]
            raise AppBuildError(
                f"functions '{first}' and '{fn.name}' bring different copies of "
                f"'{dist}' ({path}): one Function App has one site-packages; align the "
                "requirements or use DEPLOY_TARGET=builtin"
            )
    return merged


def _check_environment(functions: Sequence[_Unpacked]) -> None:
    seen: dict[str, tuple[str, str]] = {}
    for fn in functions:
        env = fn.manifest["config"].get("environment") or {}
        for key, value in sorted(env.items()):
            before = seen.setdefault(key, (str(value), fn.name))
            if before[0] != str(value):
                raise AppBuildError(
                    f"functions '{before[1]}' and '{fn.name}' set environment variable "
                    f"'{key}' to different values: one Function App has one environment"
                )


def build_app_package(
    functions: Sequence[tuple[str, str, bytes]],
    *,
    source_date_epoch: int | None = None,
    versions: Mapping[str, int] | None = None,
) -> AppPackage:
    """One Function App ZIP running every given (name, sha256, function package) version."""
    names = [name for name, _, _ in functions]
    if len(set(names)) != len(names):
        raise AppBuildError(f"a function is given twice: {sorted(names)}")
    unpacked = sorted((_read_function(*f) for f in functions), key=lambda u: u.name)
    _check_requirements(unpacked)
    _check_environment(unpacked)
    deps = _merge_deps(unpacked)

    described: list[AppFunction] = []
    spec_functions: list[dict[str, Any]] = []
    entries: list[ZipEntry] = []
    for fn in unpacked:
        config = fn.manifest["config"]
        described.append(
            AppFunction(
                fn.name,
                fn.sha256,
                config["handler"],
                f"functions/{fn.name}/invoke",
                host_function_name(fn.name),
            )
        )
        spec_functions.append(
            {
                "name": fn.name,
                "sha256": fn.sha256,
                "version": (versions or {}).get(fn.name),
                "memory_mb": config.get("memory_mb", 128),
                "commit": fn.manifest.get("commit"),
                "handler": config["handler"],
                "timeout_seconds": config.get("timeout_seconds", 30),
                "route": f"functions/{fn.name}/invoke",
                "function_name": host_function_name(fn.name),
                "environment": dict(sorted((config.get("environment") or {}).items())),
                "secrets": sorted(config.get("secrets") or []),
            }
        )
        entries += [ZipEntry(f"functions/{fn.name}/{p}", d, x) for p, (d, x) in fn.own.items()]
    entries += [ZipEntry(f"{SITE_PACKAGES}/{p}", d, x) for p, (d, x) in deps.items()]

    key = app_key((f.name, f.sha256) for f in described)
    spec = {"format": 1, "key": key, "functions": spec_functions}
    entries += [
        ZipEntry("host.json", _json_bytes(HOST_JSON)),
        ZipEntry("function_app.py", FUNCTION_APP_PY.encode()),
        ZipEntry(APP_SPEC, _json_bytes(spec)),
    ]
    data = write_zip(entries, source_date_epoch=source_date_epoch)
    return AppPackage(key, data, tuple(described), tuple(sorted(e.path for e in entries)))


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
