"""Function versions in Table Storage: one immutable row per version, one row per function.

Partition = function name. ``v0000000007`` rows are append-only; the
``function`` row holds status, the active version, the pin and the version
counter. A deployment inserts the version row and replaces the function row in
ONE entity-group transaction guarded by the function row's ETag, so two
writers never lose an update or share a number, and no version row exists
without the function row that counts it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError
from azure.data.tables import TableTransactionError, UpdateMode

from ..core.errors import StorageError
from .tables import Entity, Tables

ROLE = "functions"
FUNCTION_ROW = "function"
TARGET_PARTITION = "~targets"  # not a valid function name, so never a function's partition
ACTIVE, FAILED, REMOVED = "active", "failed", "removed"
MAX_ERROR_CHARS = 4000


def version_key(n: int) -> str:
    return f"v{n:010d}"


@dataclass(slots=True)
class FunctionRecord:
    name: str
    status: str = ACTIVE
    active_version: int = 0  # 0: none yet
    active_sha256: str = ""  # the active version's content hash
    previous_version: int = 0  # what a rollback with no version goes back to
    pinned: bool = False
    source_sha256: str = ""  # the content hash git had when this row last followed git
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    directory: str = ""
    connection: str = ""  # the connected repository this function comes from
    last_version: int = 0  # the counter: numbers are never reused
    updated_at: str = ""

    def entity(self) -> Entity:
        return {
            "PartitionKey": self.name,
            "RowKey": FUNCTION_ROW,
            "status": self.status,
            "active_version": self.active_version,
            "active_sha256": self.active_sha256,
            "previous_version": self.previous_version,
            "pinned": self.pinned,
            "source_sha256": self.source_sha256,
            "error": (self.error or "")[:MAX_ERROR_CHARS],
            "config": json.dumps(self.config, sort_keys=True),
            "directory": self.directory,
            "connection": self.connection,
            "last_version": self.last_version,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_entity(cls, e: Entity) -> FunctionRecord:
        return cls(
            name=str(e["PartitionKey"]),
            status=str(e.get("status", ACTIVE)),
            active_version=int(e.get("active_version", 0)),
            active_sha256=str(e.get("active_sha256", "")),
            previous_version=int(e.get("previous_version", 0)),
            pinned=bool(e.get("pinned", False)),
            source_sha256=str(e.get("source_sha256", "")),
            error=str(e.get("error") or "") or None,
            config=json.loads(e.get("config") or "{}"),
            directory=str(e.get("directory", "")),
            connection=str(e.get("connection", "")),
            last_version=int(e.get("last_version", 0)),
            updated_at=str(e.get("updated_at", "")),
        )


@dataclass(frozen=True, slots=True)
class VersionRecord:
    name: str
    version: int
    sha256: str  # content hash
    package_sha256: str  # sha256 of the ZIP bytes
    package: str  # blob name
    commit: str
    created_at: str
    size: int
    config: dict[str, Any]

    def entity(self) -> Entity:
        return {
            "PartitionKey": self.name,
            "RowKey": version_key(self.version),
            "version": self.version,
            "sha256": self.sha256,
            "package_sha256": self.package_sha256,
            "package": self.package,
            "commit": self.commit,
            "created_at": self.created_at,
            "size": self.size,
            "config": json.dumps(self.config, sort_keys=True),
        }

    @classmethod
    def from_entity(cls, e: Entity) -> VersionRecord:
        return cls(
            name=str(e["PartitionKey"]),
            version=int(e["version"]),
            sha256=str(e["sha256"]),
            package_sha256=str(e["package_sha256"]),
            package=str(e["package"]),
            commit=str(e.get("commit", "")),
            created_at=str(e.get("created_at", "")),
            size=int(e.get("size", 0)),
            config=json.loads(e.get("config") or "{}"),
        )


def _fail(exc: AzureError, what: str) -> StorageError:
    first = (getattr(exc, "message", None) or str(exc)).splitlines()[0]
    return StorageError(f"table storage: {what} failed: {first}")


class VersionStore:
    """Reads and ETag-guarded writes of function and version rows."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    def get_function(self, name: str) -> tuple[FunctionRecord, str] | None:
        found = self.tables.get(ROLE, name, FUNCTION_ROW)
        if found is None:
            return None
        return FunctionRecord.from_entity(found[0]), found[1]

    def function_rows(self) -> dict[str, tuple[FunctionRecord, str]]:
        """Every function row with its ETag, in one query (a deploy reads this once)."""
        rows = self.tables.query_with_etags(ROLE, "RowKey eq @rk", rk=FUNCTION_ROW)
        return {
            rec.name: (rec, etag)
            for rec, etag in ((FunctionRecord.from_entity(e), etag) for e, etag in rows)
        }

    def list_functions(self) -> list[FunctionRecord]:
        rows = self.tables.query(ROLE, "RowKey eq @rk", rk=FUNCTION_ROW)
        return sorted((FunctionRecord.from_entity(e) for e in rows), key=lambda r: r.name)

    def list_versions(self, name: str) -> list[VersionRecord]:
        rows = self.tables.query(
            ROLE, "PartitionKey eq @pk and RowKey ge 'v' and RowKey lt 'w'", pk=name
        )
        return sorted((VersionRecord.from_entity(e) for e in rows), key=lambda v: v.version)

    def get_version(self, name: str, version: int) -> VersionRecord | None:
        if version < 1:
            return None
        found = self.tables.get(ROLE, name, version_key(version))
        return VersionRecord.from_entity(found[0]) if found else None

    def save_function(self, record: FunctionRecord, etag: str | None) -> bool:
        """Write the function row; with ``etag``, False if someone else changed it first.

        Without ``etag`` the row must not exist yet (False if it does).
        """
        if etag is None:
            return self.tables.insert(ROLE, record.entity())
        return self.tables.replace(ROLE, record.entity(), etag)

    def add_version(self, record: FunctionRecord, etag: str | None, version: VersionRecord) -> bool:
        """Insert ``version`` and write ``record`` atomically; False if the row changed first."""
        fn_entity = record.entity()
        if etag is None:
            fn_op: tuple[Any, ...] = ("create", fn_entity)
        else:
            fn_op = (
                "update",
                fn_entity,
                {"mode": UpdateMode.REPLACE, "etag": etag,
                 "match_condition": MatchConditions.IfNotModified},
            )  # fmt: skip
        table = self.tables.client(ROLE)
        try:
            table.submit_transaction([("create", version.entity()), fn_op])
        except TableTransactionError as exc:
            if exc.status_code in (409, 412):
                return False  # lost the race: the caller reads again
            raise _fail(exc, f"recording {version.name} v{version.version}") from exc
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                return False
            raise _fail(exc, f"recording {version.name} v{version.version}") from exc
        except AzureError as exc:
            raise _fail(exc, f"recording {version.name} v{version.version}") from exc
        return True

    def delete_version(self, name: str, version: int) -> None:
        self.tables.delete(ROLE, name, version_key(version))

    def get_target_key(self, target: str) -> str | None:
        """The package key an activation target last ran, or None."""
        found = self.tables.get(ROLE, TARGET_PARTITION, target)
        return str(found[0].get("key") or "") or None if found else None

    def set_target_key(self, target: str, key: str) -> None:
        self.tables.replace(ROLE, {"PartitionKey": TARGET_PARTITION, "RowKey": target, "key": key})
