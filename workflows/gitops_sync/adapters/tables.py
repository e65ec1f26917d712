"""Azure Table Storage (azure-data-tables): entities with atomic insert-if-absent and ETags.

SDK errors are translated here: "already exists" and "ETag mismatch" become a
``False`` return (the caller lost a race, which is an answer, not a failure);
anything else becomes ``StorageError`` (transient).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from ..core.errors import StorageError
from ..core.redact import redact

T = TypeVar("T")
Entity = dict[str, Any]

# The tables gitops-sync keeps, by role; the prefix keeps test runs and stacks apart.
TABLE_ROLES = ("jobs", "markers", "state", "connections")


def _fail(exc: AzureError, what: str) -> StorageError:
    message = getattr(exc, "message", None) or str(exc)
    first = redact(str(message)).splitlines()[0] if message else type(exc).__name__
    return StorageError(f"table storage: {what} failed: {first}")


class Tables:
    """The four tables of one deployment, created on first use."""

    def __init__(self, service: TableServiceClient, prefix: str = "gitopssync") -> None:
        if not prefix.isalnum() or not prefix[:1].isalpha():
            raise ValueError("table prefix must be alphanumeric and start with a letter")
        self.service = service
        self.prefix = prefix
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(cls, conn: str, prefix: str = "gitopssync") -> Tables:
        return cls(TableServiceClient.from_connection_string(conn), prefix)

    @classmethod
    def from_account(cls, account: str, credential: Any, prefix: str = "gitopssync") -> Tables:
        endpoint = f"https://{account}.table.core.windows.net"
        return cls(TableServiceClient(endpoint, credential=credential), prefix)

    def table_name(self, role: str) -> str:
        return f"{self.prefix}{role}"

    def client(self, role: str) -> TableClient:
        found = self._clients.get(role)
        if found is not None:
            return found
        with self._lock:
            if role not in self._clients:
                name = self.table_name(role)
                try:
                    self.service.create_table_if_not_exists(name)
                except AzureError as exc:
                    raise _fail(exc, f"creating table {name}") from exc
                self._clients[role] = self.service.get_table_client(name)
            return self._clients[role]

    def ping(self) -> None:
        """Raise ``StorageError`` unless the table service answers."""
        try:
            # One quick try: a health probe must answer, not wait out the retry policy.
            pages = self.service.list_tables(
                results_per_page=1, retry_total=0, connection_timeout=5, read_timeout=5
            ).by_page()
            next(iter(pages), None)
        except AzureError as exc:
            raise _fail(exc, "reaching the table service") from exc

    # --------------------------------------------------------------- entities
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            raise
        except AzureError as exc:
            raise _fail(exc, what) from exc

    def insert(self, role: str, entity: Entity) -> bool:
        """Create ``entity``; False if one with its keys exists (atomic insert-if-absent)."""
        table = self.client(role)
        try:
            self._call(f"inserting into {role}", lambda: table.create_entity(entity))
        except ResourceExistsError:
            return False
        return True

    def get(self, role: str, pk: str, rk: str) -> tuple[Entity, str] | None:
        """The entity and its ETag, or None when absent."""
        table = self.client(role)
        try:
            found = self._call(f"reading {role}", lambda: table.get_entity(pk, rk))
        except ResourceNotFoundError:
            return None
        return dict(found), str(found.metadata["etag"])

    def replace(self, role: str, entity: Entity, etag: str | None = None) -> bool:
        """Replace (or create, without ``etag``); with ``etag``, False if it changed meanwhile."""
        table = self.client(role)
        if etag is None:
            self._call(
                f"writing {role}", lambda: table.upsert_entity(entity, mode=UpdateMode.REPLACE)
            )
            return True
        try:
            self._call(
                f"updating {role}",
                lambda: table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                ),
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def merge(self, role: str, entity: Entity) -> None:
        """Merge properties into an existing-or-new entity (last writer wins per property)."""
        table = self.client(role)
        self._call(f"writing {role}", lambda: table.upsert_entity(entity, mode=UpdateMode.MERGE))

    def delete(self, role: str, pk: str, rk: str) -> None:
        """Delete; succeeds when already gone."""
        table = self.client(role)
        with contextlib.suppress(ResourceNotFoundError):
            self._call(f"deleting from {role}", lambda: table.delete_entity(pk, rk))

    def query(
        self, role: str, query_filter: str, page_size: int | None = None, **params: Any
    ) -> Iterator[Entity]:
        """Entities matching ``query_filter`` (``@name`` placeholders from ``params``)."""
        table = self.client(role)
        try:
            found = table.query_entities(
                query_filter, parameters=params or None, results_per_page=page_size
            )
            for entity in found:
                yield dict(entity)
        except AzureError as exc:
            raise _fail(exc, f"querying {role}") from exc
