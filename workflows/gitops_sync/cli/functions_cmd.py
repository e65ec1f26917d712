"""``gitops-sync functions list|show|versions|rollback|invoke``: deployed functions, via the API.

Every subcommand talks to a running server (``--url``/``--key``, else
``GITOPS_SYNC_URL``/``GITOPS_SYNC_API_KEY``, else a ``gitops-sync dev`` running
from this folder or a parent). Tables for people, ``--json`` for scripts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..core.errors import GitopsSyncError, UsageError

URL_HELP = "The server's base URL (default: GITOPS_SYNC_URL, then a running `gitops-sync dev`)."
KEY_HELP = "The API key (default: GITOPS_SYNC_API_KEY, then the running dev's key)."


class ApiError(GitopsSyncError):
    """The server answered with an error: its own message, one line."""


def _server(url: str | None, key: str | None) -> tuple[str, str | None]:
    url = url or os.environ.get("GITOPS_SYNC_URL") or None
    key = key or os.environ.get("GITOPS_SYNC_API_KEY") or None
    if not url:
        from ..local import devstate

        state = devstate.read_state()
        url = str(state["url"]) if state.get("url") else None
        key = key or state.get("api_key")
    if not url:
        raise UsageError(
            "no server: pass --url or set GITOPS_SYNC_URL (or start `gitops-sync dev` here)"
        )
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise UsageError(f"--url must be an http:// or https:// URL (got {url[:80]!r})")
    return url.rstrip("/"), key


def _call(
    url: str, key: str | None, method: str, path: str, *, body: bytes | None = None,
    params: dict[str, Any] | None = None,
) -> Any:  # fmt: skip
    import httpx

    headers = {"content-type": "application/json"} if body is not None else {}
    if key:
        headers["x-functions-key"] = key
    try:
        r = httpx.request(
            method, url + path, headers=headers, content=body, params=params, timeout=960
        )
    except httpx.InvalidURL as exc:
        raise UsageError(f"malformed URL {url[:80]!r}: {exc}") from exc
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise ApiError(f"cannot reach {url}: {reason}; is `gitops-sync dev` running?") from exc
    if r.status_code == 401:
        raise ApiError(f"{url} refused the key (401): pass --key or set GITOPS_SYNC_API_KEY")
    if r.status_code == 204:
        return None
    try:
        doc = r.json()
    except ValueError:
        doc = None
    if r.status_code >= 400:
        message = doc.get("error") if isinstance(doc, dict) else None
        raise ApiError(f"{message or r.reason_phrase} ({r.status_code})")
    return doc


def _options(f: Any) -> Any:
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)
    f = click.option("--key", default=None, help=KEY_HELP)(f)
    f = click.option("--url", default=None, help=URL_HELP)(f)
    return f


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _dump(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2))


@click.group()
def functions() -> None:
    """Deployed functions: list, show, versions, rollback, invoke (through a server's API)."""


@functions.command("list")
@_options
def list_functions(url: str | None, key: str | None, as_json: bool) -> None:
    """Every function: status, active version, pin, runtime."""
    docs = _call(*_server(url, key), "GET", "/api/functions")
    if as_json:
        _dump(docs)
        return
    if not docs:
        click.echo("no functions deployed")
        return
    rows = [
        [
            d["name"],
            d["status"],
            str(d.get("active_version") or "-"),
            "pinned" if d.get("pinned") else "",
            str(d.get("runtime") or ""),
            str(d.get("updated_at") or ""),
            (d.get("error") or "")[:80],
        ]
        for d in docs
    ]
    _table(rows, ["NAME", "STATUS", "VERSION", "PIN", "RUNTIME", "UPDATED", "ERROR"])


@functions.command("show")
@click.argument("name")
@_options
def show_function(name: str, url: str | None, key: str | None, as_json: bool) -> None:
    """One function: status, active version, pin, config (secret names only), workers."""
    doc = _call(*_server(url, key), "GET", f"/api/functions/{name}")
    if as_json:
        _dump(doc)
        return
    for field in ("name", "status", "active_version", "sha256", "runtime", "pinned",
                  "updated_at", "error"):  # fmt: skip
        if doc.get(field) not in (None, ""):
            click.echo(f"{field:15} {doc[field]}")
    if doc.get("pinned"):
        click.echo(f"{'':15} (rolled back: syncs leave it until its code changes in git)")
    config = doc.get("config") or {}
    for field in ("handler", "memory_mb", "timeout_seconds", "warm_workers", "max_concurrency",
                  "include", "secrets", "environment"):  # fmt: skip
        if config.get(field) not in (None, "", [], {}):
            click.echo(f"{field:15} {config[field]}")
    workers = doc.get("workers") or {}
    if workers:
        click.echo(f"{'workers':15} " + ", ".join(f"{k} {v}" for k, v in workers.items()))


@functions.command("versions")
@click.argument("name")
@_options
def list_versions(name: str, url: str | None, key: str | None, as_json: bool) -> None:
    """The kept versions of NAME, oldest first."""
    docs = _call(*_server(url, key), "GET", f"/api/functions/{name}/versions")
    if as_json:
        _dump(docs)
        return
    rows = [
        [
            str(v["version"]),
            "*" if v.get("active") else "",
            v["sha256"][:12],
            (v.get("commit") or "")[:12],
            str(v.get("created_at") or ""),
            str(v.get("size") or 0),
        ]
        for v in docs
    ]
    _table(rows, ["VERSION", "ACTIVE", "SHA256", "COMMIT", "CREATED", "BYTES"])


@functions.command("rollback")
@click.argument("name")
@click.option("--to", "version", type=click.IntRange(min=1), default=None,
              help="The version to activate (default: the one active before).")  # fmt: skip
@_options
def rollback(
    name: str, version: int | None, url: str | None, key: str | None, as_json: bool
) -> None:
    """Activate a kept version of NAME and pin it (syncs leave it until its code changes)."""
    body = json.dumps({"version": version}).encode() if version is not None else b""
    doc = _call(*_server(url, key), "POST", f"/api/functions/{name}/rollback", body=body)
    if as_json:
        _dump(doc)
    else:
        click.echo(f"{name}: version {doc.get('active_version')} active, pinned")


def _event(data: str | None) -> bytes:
    if data is None:
        return b"{}"
    if data.startswith("@"):
        path = Path(data[1:])
        try:
            raw = sys.stdin.buffer.read() if data == "@-" else path.read_bytes()
        except OSError as exc:
            raise UsageError(f"--data {data}: {exc.strerror or exc}") from exc
    else:
        raw = data.encode()
    try:
        json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"--data is not valid JSON: {exc}") from exc
    return raw


@functions.command("invoke")
@click.argument("name")
@click.option("--data", default=None, help="The event: JSON text, or @FILE (@- for stdin).")
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="Run this kept version instead of the active one.")  # fmt: skip
@_options
def invoke(
    name: str, data: str | None, version: int | None, url: str | None, key: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Run NAME's handler with the event; print what it returned."""
    params = {"version": version} if version is not None else None
    doc = _call(
        *_server(url, key), "POST", f"/api/functions/{name}/invoke", body=_event(data),
        params=params,
    )  # fmt: skip
    click.echo(json.dumps(doc, indent=2 if not as_json else None))
