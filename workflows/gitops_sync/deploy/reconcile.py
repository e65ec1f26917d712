"""The deploy use case: desired (git) -> observed (versions table) -> act, as Knative reconciles.

For each function the synced commit defines, its content hash is compared with
the active version's; only a different hash builds (or reuses) a package and
records a new version. A pinned function (rolled back by a person) is left
alone until its hash in git changes. Invalid functions fail alone and keep
serving their last good version; vanished ones become ``removed``. Storage
errors propagate (the job is retried); build errors fail only their function.
Order: upload, then one transaction (version row + function row), so a crash
anywhere leaves a state the next job completes exactly.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..adapters.git_source import GitSource
from ..adapters.packages import PackageBlobs, package_blob_name
from ..adapters.pip_deps import PipInstaller
from ..adapters.versions import (
    ACTIVE,
    FAILED,
    REMOVED,
    FunctionRecord,
    VersionRecord,
    VersionStore,
)
from ..core.errors import GitopsSyncError, StorageError
from ..core.functions import FunctionReport, FunctionSpec, Member
from .build import PackageBuilder

log = logging.getLogger("gitops_sync")
ETAG_RETRIES = 8


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Deployer:
    """What a deployment needs; built once per process by ``AppContext``."""

    versions: VersionStore
    blobs: PackageBlobs
    pip: PipInstaller
    versions_kept: int = 10
    #: why this host cannot run a runtime identifier, or None when it can
    runtime_problem: Callable[[str], str | None] = lambda _runtime: None
    #: told the name of every function whose active version changed
    on_change: Callable[[str], None] = lambda _name: None
    #: the functionapp target: activates the set of active versions elsewhere
    activate_app: Callable[[list[FunctionRecord]], str | None] | None = None
    source_date_epoch: str | None = None


@dataclass
class DeploySummary:
    deployed: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "deployed": self.deployed,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "removed": self.removed,
            "bytes_uploaded": self.bytes_uploaded,
        }


class _Retry(Exception):
    """The function row changed under us: read it again."""


def deploy_functions(
    d: Deployer, source: GitSource, commit: str, report: FunctionReport, connection: str = ""
) -> DeploySummary:
    """Make the versions table (and the runtime) match the functions of ``commit``.

    Only functions of ``connection`` (one connected repository) are touched: a
    name another connection already deploys fails here, and is never taken over.
    """
    summary = DeploySummary()
    builder = PackageBuilder(source, d.pip, source_date_epoch=d.source_date_epoch)
    rows = d.versions.function_rows()  # one query; a row is read again only after a lost race
    first_reads = {name: rows.get(name) for name in report.specs}  # None: no row yet
    for name in sorted(report.specs):
        spec, sha = report.specs[name], report.hashes[name]
        _with_retries(
            _deploy_one, d, builder, summary, spec, sha, commit, report, name, connection,
            first_reads,
        )  # fmt: skip
    invalid_dirs: dict[str, str] = {}
    for item in report.invalid:
        directory = item["path"].rsplit("/", 1)[0]
        invalid_dirs[directory] = item["error"]
    records = [r for r, _ in rows.values() if r.connection == connection]
    by_dir = {r.directory: r for r in records if r.directory}
    for directory, error in sorted(invalid_dirs.items()):
        rec = by_dir.get(directory)
        name = rec.name if rec else directory.rsplit("/", 1)[-1]
        if name in report.specs:
            continue  # the name now belongs to a valid function elsewhere
        _with_retries(_mark_failed, d, name, directory, error, None, connection)
        summary.failed.append({"name": name, "error": error})
    for rec in records:
        gone = rec.name not in report.specs and rec.directory not in invalid_dirs
        if gone and rec.status != REMOVED:
            _with_retries(_mark_removed, d, rec.name)
            summary.removed.append(rec.name)
    for item in summary.deployed:
        if int(item["version"]) > d.versions_kept:  # fewer numbers than that: nothing to prune
            prune_versions(d, item["name"])
    if d.activate_app is not None and (summary.deployed or summary.removed):
        _activate_app(d, summary)
    return summary


def _with_retries(step: Callable[..., None], *args: Any) -> None:
    for _ in range(ETAG_RETRIES):
        try:
            step(*args)
            return
        except _Retry:
            continue
    raise StorageError("the versions table kept changing under this deployment; retrying later")


def _deploy_one(
    d: Deployer,
    builder: PackageBuilder,
    summary: DeploySummary,
    spec: FunctionSpec,
    sha: str,
    commit: str,
    report: FunctionReport,
    name: str,
    connection: str,
    first_reads: dict[str, tuple[FunctionRecord, str] | None],
) -> None:
    # The row from the deploy's one query; after a lost race (_Retry), read afresh.
    found = first_reads.pop(name) if name in first_reads else d.versions.get_function(name)
    rec, etag = found if found else (FunctionRecord(name, connection=connection), None)
    if rec.connection != connection and rec.status != REMOVED:
        error = f"{spec.directory}: the name {name!r} is deployed from another connected repository"
        summary.failed.append({"name": name, "error": error})
        return
    if rec.pinned and rec.source_sha256 == sha:
        summary.unchanged.append(name)  # a person pinned it; git did not move since
        return
    if rec.active_version and rec.active_sha256 == sha and not rec.pinned:
        if rec.status != ACTIVE or rec.source_sha256 != sha or rec.directory != spec.directory:
            rec.status, rec.error, rec.source_sha256 = ACTIVE, None, sha
            rec.directory, rec.updated_at = spec.directory, now_iso()
            if not d.versions.save_function(rec, etag):
                raise _Retry
            d.on_change(name)
        summary.unchanged.append(name)
        return
    if rec.status == FAILED and rec.source_sha256 == sha and rec.error:
        summary.failed.append({"name": name, "error": rec.error})
        return  # the same content failed before: retried when it changes
    problem = d.runtime_problem(spec.runtime)
    try:
        if problem:
            raise _BuildFailed(f"{spec.directory}/function.toml: field 'runtime': {problem}")
        version = _package_version(d, builder, spec, sha, commit, report.members[name], summary)
    except _BuildFailed as exc:
        _mark_failed(d, name, spec.directory, str(exc), sha, connection, found)
        summary.failed.append({"name": name, "error": str(exc)})
        return
    number = rec.last_version + 1
    version = dataclasses.replace(version, version=number)
    new = FunctionRecord(
        name=name,
        status=ACTIVE,
        active_version=number,
        active_sha256=sha,
        previous_version=rec.active_version or rec.previous_version,
        pinned=False,
        source_sha256=sha,
        error=None,
        config=spec.normalised(),
        directory=spec.directory,
        connection=connection,
        last_version=number,
        updated_at=now_iso(),
    )
    if not d.versions.add_version(new, etag, version):
        raise _Retry
    log.info("deployed %s version %d (%s)", name, number, sha[:12])
    summary.deployed.append({"name": name, "version": number})
    d.on_change(name)


class _BuildFailed(GitopsSyncError):
    permanent = True


def _package_version(
    d: Deployer,
    builder: PackageBuilder,
    spec: FunctionSpec,
    sha: str,
    commit: str,
    members: list[Member],
    summary: DeploySummary,
) -> VersionRecord:
    """The stored package for ``sha`` (built and uploaded only when it is not stored yet)."""
    blob = package_blob_name(spec.name, sha)
    stored = d.blobs.stored_sha256(blob)
    size = 0
    if stored is None:
        try:
            package, _reqs = builder.build(spec, members, sha256=sha, commit=commit)
        except StorageError:
            raise
        except (GitopsSyncError, ValueError) as exc:  # ValueError: a name a ZIP cannot hold
            raise _BuildFailed(f"{spec.directory}: {exc}") from exc
        if d.blobs.upload(blob, package.data, known_absent=True):
            summary.bytes_uploaded += package.size
            stored = package.package_sha256
        else:  # another worker stored the same content first: use what is stored
            stored = d.blobs.stored_sha256(blob) or package.package_sha256
        size = package.size
    else:
        size = next((v.size for v in d.versions.list_versions(spec.name) if v.sha256 == sha), 0)
        if not size:
            size = len(d.blobs.download(blob, stored))
    return VersionRecord(
        name=spec.name,
        version=0,
        sha256=sha,
        package_sha256=stored,
        package=blob,
        commit=commit,
        created_at=now_iso(),
        size=size,
        config=spec.normalised(),
    )


def _mark_failed(
    d: Deployer,
    name: str,
    directory: str,
    error: str,
    sha: str | None,
    connection: str,
    found: tuple[FunctionRecord, str] | None = None,
) -> None:
    found = d.versions.get_function(name) if found is None else found
    rec, etag = found if found else (FunctionRecord(name, connection=connection), None)
    if rec.connection != connection and rec.status != REMOVED:
        return  # another repository's function of that name: not ours to mark
    if rec.active_version and rec.status != REMOVED:
        error = f"{error} (still serving version {rec.active_version})"
    if rec.status == FAILED and rec.error == error and (sha is None or rec.source_sha256 == sha):
        return
    rec.status, rec.error, rec.updated_at = FAILED, error, now_iso()
    rec.directory, rec.connection = directory, connection
    if sha is not None:
        rec.source_sha256 = sha
    if not d.versions.save_function(rec, etag):
        raise _Retry
    log.warning("function %s failed: %s", name, error)


def _mark_removed(d: Deployer, name: str) -> None:
    found = d.versions.get_function(name)
    if found is None or found[0].status == REMOVED:
        return
    rec, etag = found
    rec.status, rec.pinned, rec.error, rec.updated_at = REMOVED, False, None, now_iso()
    if not d.versions.save_function(rec, etag):
        raise _Retry
    log.info("function %s removed (its directory is gone); history kept", name)
    d.on_change(name)


def prune_versions(d: Deployer, name: str) -> list[int]:
    """Keep the newest ``versions_kept``; never the active one or the one a rollback goes to."""
    found = d.versions.get_function(name)
    if found is None:
        return []
    rec = found[0]
    versions = d.versions.list_versions(name)
    keep_newest = {v.version for v in versions[-d.versions_kept :]}
    protected = {rec.active_version, rec.previous_version}
    doomed = [v for v in versions if v.version not in keep_newest | protected]
    for v in doomed:
        d.versions.delete_version(name, v.version)
    still = {v.package for v in versions if v not in doomed}
    for blob in sorted({v.package for v in doomed} - still):
        d.blobs.delete(blob)
    return [v.version for v in doomed]


def _activate_app(d: Deployer, summary: DeploySummary) -> None:
    assert d.activate_app is not None
    active = [r for r in d.versions.list_functions() if r.status != REMOVED and r.active_version]
    error = d.activate_app(active)
    if error is None:
        return
    # The new versions never went live there: put the previous ones back, say why.
    for item in list(summary.deployed):
        name = item["name"]
        found = d.versions.get_function(name)
        if found is None:
            continue
        rec, etag = found
        rec.active_version, rec.previous_version = rec.previous_version, rec.active_version
        prev = d.versions.get_version(name, rec.active_version)
        rec.active_sha256 = prev.sha256 if prev else ""
        rec.status, rec.error = FAILED, f"activation on the function app failed: {error}"
        rec.updated_at = now_iso()
        d.versions.save_function(rec, etag)
        summary.failed.append({"name": name, "error": rec.error})
        summary.deployed.remove(item)
