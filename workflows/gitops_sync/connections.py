"""Connections (repository -> branch, workspace, secret) and each one's recorded push order.

A connection holds the NAME of the app setting with its webhook secret (a Key
Vault reference in Azure), never the secret. The env variables describe the
``default`` connection, the single-repository shortcut.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .adapters.tables import Tables
from .core.errors import UsageError
from .settings import Settings

DEFAULT_ID = "default"
_PK = "connection"
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

SettingLookup = Callable[[str], "str | None"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def valid_repository(name: str) -> bool:
    """True for an ``owner/name`` GitHub could send (checked before any lookup by it)."""
    return len(name) <= 200 and _REPOSITORY.match(name) is not None


def slug(repository: str) -> str:
    """A connection id from ``owner/name``: lower case, safe as a table key and folder."""
    out = re.sub(r"[^a-z0-9]+", "-", repository.lower()).strip("-")
    return out[:63].rstrip("-") or "repo"


@dataclass(frozen=True, slots=True)
class Connection:
    id: str
    repository: str  # owner/name as GitHub sends it in repository.full_name
    branch: str
    repo_url: str
    secret_setting: str | None = None
    token_setting: str | None = None
    workspace: str | None = None  # a folder under WORKSPACE_ROOT; None: the root itself
    share: str | None = None  # an Azure Files share instead of a folder
    # resolved from app settings when loaded; never stored, never printed
    secret: str | None = field(default=None, repr=False, compare=False)
    token: str | None = field(default=None, repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        """A JSON-safe view without secret values (setting names only)."""
        return {
            "id": self.id,
            "repository": self.repository,
            "branch": self.branch,
            "repo_url": self.repo_url,
            "secret_setting": self.secret_setting,
            "token_setting": self.token_setting,
            "workspace": f"share:{self.share}" if self.share else (_folder(self) or "."),
            "secret_configured": bool(self.secret),
        }

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": _PK,
            "RowKey": self.id,
            "repository": self.repository,
            "repository_key": self.repository.casefold(),
            "branch": self.branch,
            "repo_url": self.repo_url,
            "secret_setting": self.secret_setting or "",
            "token_setting": self.token_setting or "",
            "workspace": self.workspace or "",
            "share": self.share or "",
            "updated_at": now_iso(),
        }


#: what a user sets on a connection (``connections add`` and ``PUT /api/connections/{id}``)
EDITABLE = ("repository", "secret_setting", "branch", "repo_url", "token_setting", "workspace",
            "share")  # fmt: skip


def new_connection(
    conn_id: str | None,
    repository: str,
    secret_setting: str,
    *,
    branch: str | None = None,
    repo_url: str | None = None,
    token_setting: str | None = None,
    workspace: str | None = None,
    share: str | None = None,
) -> Connection:
    """A connection as the user described it, with the defaults filled in (checked by
    ``ConnectionStore.add``): id from the repository, branch ``main``, the GitHub URL,
    and a folder named after the id unless a share is given."""
    if workspace and share:
        raise UsageError("give a workspace or a share, not both")
    conn_id = conn_id or slug(repository)
    return Connection(
        id=conn_id,
        repository=repository,
        branch=branch or "main",
        repo_url=repo_url or f"https://github.com/{repository}.git",
        secret_setting=secret_setting,
        token_setting=token_setting or None,
        workspace=None if share else (workspace or conn_id),
        share=share or None,
    )


def validate(conn: Connection) -> None:
    """Raise ``UsageError`` naming the first field that breaks its rule."""
    if not _ID.match(conn.id):
        raise UsageError(f"connection id {conn.id!r}: use a-z, 0-9 and '-', 1-63 characters")
    if not _REPOSITORY.match(conn.repository):
        raise UsageError(f"repository {conn.repository!r}: expected owner/name")
    for name in (conn.secret_setting, conn.token_setting):
        if name is not None and not _SETTING_NAME.match(name):
            raise UsageError(f"{name!r} is not an app setting name (the NAME, not the value)")
    if not conn.branch or conn.branch.startswith(("-", "refs/")) or ".." in conn.branch:
        raise UsageError(f"branch {conn.branch!r}: give a branch name such as main")
    if conn.workspace is not None:
        parts = conn.workspace.split("/")
        if conn.workspace.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise UsageError(f"workspace {conn.workspace!r}: a relative folder under the root")
        if parts[0] == ".gitops-sync":
            raise UsageError("workspace: .gitops-sync is reserved")


def _folder(conn: Connection) -> str | None:
    """The folder under WORKSPACE_ROOT a connection syncs into ("" = the root itself)."""
    if conn.share:
        return None
    return "" if conn.id == DEFAULT_ID else (conn.workspace or conn.id)


def workspace_clash(conn: Connection, others: list[Connection]) -> str | None:
    """Why ``conn``'s workspace would overlap another's, or None.

    A sync deletes whatever its commit does not hold, so one workspace nested in
    another (the env connection's is WORKSPACE_ROOT itself) would be wiped by it.
    """
    mine = _folder(conn)
    for other in others:
        if conn.share and conn.share == other.share:
            return f"share {conn.share} is already the workspace of {other.id!r}"
        theirs = _folder(other)
        if mine is None or theirs is None:
            continue
        if mine == theirs or (mine + "/").startswith(theirs + "/") or not theirs or not mine:
            return (
                f"workspace {mine or '(WORKSPACE_ROOT)'} would overlap {other.id!r}'s"
                f" ({theirs or 'WORKSPACE_ROOT'}): give one of them its own --share"
                + (" or unset SYNC_REPOSITORY" if DEFAULT_ID in (conn.id, other.id) else "")
            )
        if (theirs + "/").startswith(mine + "/"):
            return f"workspace {mine} would contain {other.id!r}'s ({theirs})"
    return None


class ConnectionStore:
    """The default (env) connection plus those kept in Table Storage."""

    def __init__(self, tables: Tables, settings: Settings, lookup: SettingLookup) -> None:
        self.tables = tables
        self.settings = settings
        self.lookup = lookup

    def default(self) -> Connection | None:
        s = self.settings
        if not s.repository:
            return None
        return Connection(
            id=DEFAULT_ID,
            repository=s.repository,
            branch=s.branch,
            repo_url=s.repo_url or f"https://github.com/{s.repository}.git",
            secret_setting="GITHUB_WEBHOOK_SECRET",  # noqa: S106 (a setting's name)
            token_setting="GIT_TOKEN",  # noqa: S106 (a setting's name)
            secret=s.webhook_secret,
            token=s.git_token,
        )

    def _from_entity(self, e: dict[str, Any]) -> Connection:
        secret_name = e.get("secret_setting") or None
        token_name = e.get("token_setting") or None
        return Connection(
            id=str(e["RowKey"]),
            repository=str(e["repository"]),
            branch=str(e["branch"]),
            repo_url=str(e["repo_url"]),
            secret_setting=secret_name,
            token_setting=token_name,
            workspace=e.get("workspace") or None,
            share=e.get("share") or None,
            secret=self.lookup(secret_name) if secret_name else None,
            token=self.lookup(token_name) if token_name else None,
        )

    def stored(self) -> Iterator[Connection]:
        for e in self.tables.query("connections", "PartitionKey eq @pk", pk=_PK):
            yield self._from_entity(e)

    def all(self) -> list[Connection]:
        found = [c for c in (self.default(),) if c is not None]
        return found + sorted(self.stored(), key=lambda c: c.id)

    def get(self, conn_id: str) -> Connection | None:
        if conn_id == DEFAULT_ID:
            return self.default()
        got = self.tables.get("connections", _PK, conn_id) if _ID.match(conn_id) else None
        return self._from_entity(got[0]) if got else None

    def for_repository(self, full_name: str) -> Connection | None:
        """The connection of ``repository.full_name`` (GitHub names are case-insensitive)."""
        default = self.default()
        if default is not None and default.repository.casefold() == full_name.casefold():
            return default
        for e in self.tables.query(
            "connections",
            "PartitionKey eq @pk and repository_key eq @key",
            pk=_PK,
            key=full_name.casefold(),
        ):
            return self._from_entity(e)
        return None

    def add(self, conn: Connection) -> None:
        validate(conn)
        if conn.id == DEFAULT_ID:
            raise UsageError("'default' is the env connection (SYNC_REPOSITORY); choose another id")
        default = self.default()
        if default and default.repository.casefold() == conn.repository.casefold():
            raise UsageError(f"{conn.repository} is already the env connection (SYNC_REPOSITORY)")
        other = self.for_repository(conn.repository)
        if other is not None and other.id != conn.id:
            raise UsageError(f"{conn.repository} is already connected as {other.id!r}")
        problem = workspace_clash(conn, [c for c in self.all() if c.id != conn.id])
        if problem:
            raise UsageError(problem)
        self.tables.replace("connections", conn.to_entity())

    def remove(self, conn_id: str) -> bool:
        if self.get(conn_id) is None or conn_id == DEFAULT_ID:
            return False
        self.tables.delete("connections", _PK, conn_id)
        return True


@dataclass(frozen=True, slots=True)
class Head:
    """What the worker last synced for a connection (push order is the job ids')."""

    synced_commit: str | None = None


class HeadStore:
    """Per-connection sync state; only the worker writes it, so no delivery contends."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    def read(self, conn_id: str) -> Head:
        got = self.tables.get("state", conn_id, "head")
        if got is None:
            return Head()
        e = got[0]
        return Head(e.get("synced_commit") or None)

    def mark_synced(self, conn_id: str, commit: str) -> None:
        # A merge touches only this property, so it never undoes a concurrent advance().
        self.tables.merge(
            "state", {"PartitionKey": conn_id, "RowKey": "head", "synced_commit": commit}
        )
