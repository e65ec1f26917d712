"""Azure Table Storage (azure-data-tables): entities with atomic insert-if-absent and ETags.

SDK errors are translated here: "already exists" and "ETag mismatch" become a
``False`` return (the caller lost a race, which is an answer, not a failure);
anything else becomes ``StorageError`` (transient). A table that vanished (a
storage reset, a new emulator) is created again on the first call that finds it
missing, once for all callers, and that call is retried.

With a shared key (a connection string) and no custom transport, ``insert`` and ``get``
(the webhook intake's calls) go through ``storage_hot.HotTables``, which raises the
same SDK exceptions; everything else uses the SDK client.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
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
from azure.core.pipeline.transport import HttpTransport
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from ..core.errors import StorageError
from ..core.redact import redact
from .http_transport import LeanTransport
from .storage_hot import HotTables

log = logging.getLogger("gitops_sync")
T = TypeVar("T")
Entity = dict[str, Any]

# The tables gitops-sync keeps, by role; the prefix keeps test runs and stacks apart.
TABLE_ROLES = ("jobs", "markers", "state", "connections")
#: the SDK's retries of one call (its default, 10 with back-off up to 2 min, would hold
#: a webhook answer far past GitHub's 10 s); callers retry at their own level
CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.2}
NO_CONTENT = "return-no-content"


def table_missing(exc: BaseException) -> bool:
    """True for the service's "table not found" (not a missing entity)."""
    code = getattr(exc, "error_code", None)  # a str enum: equal to its value
    return bool(code == "TableNotFound") or "TableNotFound" in str(exc)


def _fail(exc: AzureError, what: str) -> StorageError:
    message = getattr(exc, "message", None) or str(exc)
    first = redact(str(message)).splitlines()[0] if message else type(exc).__name__
    return StorageError(f"table storage: {what} failed: {first}")


class Tables:
    """The four tables of one deployment, created on first use."""

    def __init__(
        self, service: TableServiceClient, prefix: str = "gitopssync", hot: HotTables | None = None
    ) -> None:
        if not prefix.isalnum() or not prefix[:1].isalpha():
            raise ValueError("table prefix must be alphanumeric and start with a letter")
        self.service = service
        self.hot = hot  # the lean path of insert and get (see the module docstring)
        self.prefix = prefix
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(
        cls, conn: str, prefix: str = "gitopssync", transport: HttpTransport | None = None
    ) -> Tables:
        """``transport``: the HTTP transport (default: ``LeanTransport``, see http_transport;
        without one, ``insert`` and ``get`` take the lean path of ``storage_hot``)."""
        service = TableServiceClient.from_connection_string(
            conn, transport=transport or LeanTransport(), **CLIENT_OPTIONS
        )
        return cls(service, prefix, HotTables.for_service(service) if transport is None else None)

    @classmethod
    def from_account(cls, account: str, credential: Any, prefix: str = "gitopssync") -> Tables:
        endpoint = f"https://{account}.table.core.windows.net"
        service = TableServiceClient(
            endpoint, credential=credential, transport=LeanTransport(), **CLIENT_OPTIONS
        )
        return cls(service, prefix)

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

    def _recreate(self, role: str, seen: TableClient) -> None:
        """Create ``role``'s table again after a call found it missing (once: a caller
        that sees another already did it just retries)."""
        with self._lock:
            if self._clients.get(role) is not seen:
                return
            name = self.table_name(role)
            try:
                self.service.create_table_if_not_exists(name)
            except AzureError as exc:
                raise _fail(exc, f"creating table {name} again") from exc
            self._clients[role] = self.service.get_table_client(name)
        log.warning("table storage: table %s was missing; created it again", name)

    def check(self) -> None:
        """Raise ``StorageError`` unless the service answers and every table exists
        (a missing one is created again). One quick try: a health probe must answer."""
        quick = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 5}
        try:
            names = {
                t.name
                for t in self.service.query_tables(
                    "TableName ge @lo and TableName lt @hi",
                    parameters={"lo": self.prefix, "hi": self.prefix + "~"},
                    **quick,
                )
            }
        except AzureError as exc:
            raise _fail(exc, "reaching the table service") from exc
        for role in TABLE_ROLES:
            name = self.table_name(role)
            if name in names:
                continue
            try:
                self.service.create_table_if_not_exists(name, **quick)
            except AzureError as exc:
                raise _fail(exc, f"table {name} is missing; creating it") from exc
            log.warning("table storage: table %s was missing; created it", name)

    # --------------------------------------------------------------- entities
    def _call(self, role: str, what: str, fn: Callable[[TableClient], T]) -> T:
        """``fn(table)``, again once on a table created anew if it had vanished."""
        for attempt in (1, 2):
            table = self.client(role)
            try:
                return fn(table)
            except ResourceNotFoundError as exc:
                if not table_missing(exc):
                    raise  # an entity, not the table: the caller's answer
                if attempt == 2:
                    raise _fail(exc, what) from exc
                self._recreate(role, table)
            except (ResourceExistsError, ResourceModifiedError):
                raise
            except AzureError as exc:
                raise _fail(exc, what) from exc
        raise AssertionError("unreachable")

    def insert(self, role: str, entity: Entity) -> bool:
        """Create ``entity``; False if one with its keys exists (atomic insert-if-absent).

        ``Prefer: return-no-content``: the service's default echoes the entity back."""
        hot = self.hot
        try:
            self._call(
                role,
                f"inserting into {role}",
                (lambda t: hot.insert(t.table_name, entity))
                if hot is not None
                else (lambda t: t.create_entity(entity, response_preference=NO_CONTENT)),
            )
        except ResourceExistsError:
            return False
        return True

    def get(self, role: str, pk: str, rk: str) -> tuple[Entity, str] | None:
        """The entity and its ETag, or None when absent."""
        hot = self.hot
        fn: Callable[[TableClient], Any] = (
            (lambda t: hot.get(t.table_name, pk, rk))
            if hot is not None
            else (lambda t: t.get_entity(pk, rk))
        )
        try:
            found = self._call(role, f"reading {role}", fn)
        except ResourceNotFoundError:
            return None
        return dict(found), str(found.metadata["etag"])

    def replace(self, role: str, entity: Entity, etag: str | None = None) -> bool:
        """Replace (or create, without ``etag``); with ``etag``, False if it changed meanwhile."""
        if etag is None:
            self._call(
                role, f"writing {role}", lambda t: t.upsert_entity(entity, mode=UpdateMode.REPLACE)
            )
            return True
        try:
            self._call(
                role,
                f"updating {role}",
                lambda t: t.update_entity(
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
        self._call(
            role, f"writing {role}", lambda t: t.upsert_entity(entity, mode=UpdateMode.MERGE)
        )

    def delete(self, role: str, pk: str, rk: str) -> None:
        """Delete; succeeds when already gone."""
        with contextlib.suppress(ResourceNotFoundError):
            self._call(role, f"deleting from {role}", lambda t: t.delete_entity(pk, rk))

    def query(
        self, role: str, query_filter: str, page_size: int | None = None, **params: Any
    ) -> Iterator[Entity]:
        """Entities matching ``query_filter`` (``@name`` placeholders from ``params``)."""
        for entity, _etag in self.query_with_etags(role, query_filter, page_size, **params):
            yield entity

    def query_with_etags(
        self, role: str, query_filter: str, page_size: int | None = None, **params: Any
    ) -> Iterator[tuple[Entity, str]]:
        """``query``, with each entity's ETag (for a guarded write without reading it again)."""
        # The first page is fetched under _call, so a vanished table is recreated.
        pages = self._call(
            role,
            f"querying {role}",
            lambda t: _first_page(
                t.query_entities(
                    query_filter, parameters=params or None, results_per_page=page_size
                ).by_page()
            ),
        )
        try:
            for page in pages:
                for entity in page:
                    yield dict(entity), str(entity.metadata.get("etag", ""))
        except AzureError as exc:
            raise _fail(exc, f"querying {role}") from exc


def _first_page(pages: Iterator[Iterator[Any]]) -> Iterator[Iterator[Any]]:
    """``pages`` with its first page already fetched (errors surface here, not later)."""
    it = iter(pages)
    try:
        first = list(next(it))
    except StopIteration:
        return iter(())
    return itertools.chain([iter(first)], it)
