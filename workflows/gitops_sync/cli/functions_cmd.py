"""``gitops-sync functions list|show|versions|rollback|invoke``: deployed functions, via the API.

Every subcommand talks to a running server through ``cli._client`` (``--url``/``--key``,
their fallbacks, one error wording). Tables for people, ``--json`` for scripts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..core.errors import UsageError
from ._client import ServerError, connect, fail_for, server_options


def _call(
    url: str | None, key: str | None, method: str, path: str, *, what: str = "function",
    body: bytes | None = None, params: dict[str, Any] | None = None,
) -> Any:  # fmt: skip
    """One API call through the CLI's one server client; the answer's JSON (None for 204)."""
    server = connect(url, key)
    headers = {"content-type": "application/json"} if body is not None else {}
    # invoke may run as long as a function's timeout_seconds (900 s at most)
    resp = server.request(method, path, content=body, params=params, headers=headers, timeout=960)
    fail_for(resp, what)
    if resp.status_code == 204:
        return None
    try:
        return resp.json()
    except ValueError as exc:
        raise ServerError(f"{server.url} answered {resp.status_code} without JSON") from exc


def _options(f: Any) -> Any:
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)
    return server_options(f)


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
    docs = _call(url, key, "GET", "/api/functions")
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
    doc = _call(url, key, "GET", f"/api/functions/{name}")
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
    docs = _call(url, key, "GET", f"/api/functions/{name}/versions")
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
    doc = _call(url, key, "POST", f"/api/functions/{name}/rollback", body=body)
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
    doc = _call(url, key, "POST", f"/api/functions/{name}/invoke", body=_event(data), params=params)
    click.echo(json.dumps(doc, indent=2 if not as_json else None))
