"""The CLI's way to a running server: ``--url``/``--key``, their fallbacks, one error wording.

Every command that talks to a server uses ``@server_options`` and ``connect()``:
the flag, else ``GITOPS_SYNC_URL``/``GITOPS_SYNC_API_KEY``, else the ``gitops-sync
dev`` running from this folder or a parent, else ``DEFAULT_URL``. A malformed URL is
a usage error (exit 2); an unreachable server or a refused key is a failure (exit 1).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..core.errors import GitopsSyncError, UsageError
from ..core.redact import redact

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:7071"
URL_ENV = "GITOPS_SYNC_URL"
KEY_ENV = "GITOPS_SYNC_API_KEY"
F = TypeVar("F", bound=Callable[..., Any])


class ServerError(GitopsSyncError):
    """The server could not be reached, refused the key, or answered an error (exit 1)."""


def server_options(fn: F) -> F:
    """Add ``--url`` and ``--key`` to a click command (passed on as ``url`` and ``key``)."""
    fn = click.option(
        "--key",
        default=None,
        help=f"API key (default: ${KEY_ENV}, else the running `gitops-sync dev`'s).",
    )(fn)
    fn = click.option(
        "--url",
        default=None,
        help=f"Server base URL (default: ${URL_ENV}, else where `gitops-sync dev` listens,"
        f" else {DEFAULT_URL}).",
    )(fn)
    return fn


def check_url(url: str) -> str:
    """``url`` without a trailing slash; ``UsageError`` unless it is an http(s) URL with a host."""
    import httpx

    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UsageError(f"--url {redact(url)!r} is not a URL ({exc})") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"--url {redact(url)!r} is not an http(s) URL, e.g. {DEFAULT_URL}")
    return str(parsed).rstrip("/")


@dataclass(frozen=True)
class Server:
    """A server to talk to: its base URL and the API key (``None``: send none)."""

    url: str
    key: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"x-functions-key": self.key} if self.key else {}

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request; ``ServerError`` in the common wording when nothing answers."""
        import httpx

        headers = {**self.headers, **kw.pop("headers", {})}
        kw.setdefault("timeout", 30)
        try:
            return httpx.request(method, self.url + path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from exc

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kw: Any) -> Iterator[httpx.Response]:
        """A streamed request (the caller reads the body); errors as in ``request``."""
        import httpx

        headers = {**self.headers, **kw.pop("headers", {})}
        timeout = kw.pop("timeout", httpx.Timeout(30.0, read=300.0))
        try:
            with (
                httpx.Client(timeout=timeout) as client,
                client.stream(method, self.url + path, headers=headers, **kw) as resp,
            ):
                yield resp
        except httpx.ConnectError as exc:
            raise unreachable(self.url, exc) from exc

    def get_json(self, path: str, what: str = "that", **params: Any) -> Any:
        """GET ``path`` and its JSON answer; ``ServerError`` for any error answer."""
        resp = self.request("GET", path, params=params)
        fail_for(resp, what)
        try:
            return resp.json()
        except ValueError as exc:
            raise ServerError(f"{self.url} answered {resp.status_code} without JSON") from exc


def reason(exc: Exception) -> str:
    """A short reason for a transport error ("connection refused", "timed out", ...)."""
    import httpx

    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return redact(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__


def unreachable(url: str, exc: Exception) -> GitopsSyncError:
    """The one wording of "no server there" (a malformed URL is a usage error instead)."""
    import httpx

    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return UsageError(f"--url {redact(url)!r} is not a usable URL ({exc})")
    return ServerError(f"cannot reach {redact(url)}: {reason(exc)}; is `gitops-sync dev` running?")


def fail_for(resp: httpx.Response, what: str = "that") -> None:
    """Raise ``ServerError`` for an error answer, saying what to do about a refused key."""
    if resp.status_code < 400:
        return
    detail = ""
    with contextlib.suppress(ValueError, AttributeError):
        detail = str(json.loads(resp.content).get("error") or "")
    if resp.status_code == 401:
        raise ServerError(
            f"the server refused the key (401): pass --key or set {KEY_ENV}"
            " (a `gitops-sync dev` here supplies its own)"
        )
    if resp.status_code == 404:
        raise ServerError(f"no such {what} (404){': ' + detail if detail else ''}")
    raise ServerError(f"the server answered {resp.status_code}{': ' + detail if detail else ''}")


def running_dev() -> dict[str, Any]:
    """The state of a ``gitops-sync dev`` running from this folder or a parent, or ``{}``."""
    from ..local import devstate

    return devstate.find_state(running=True)


def connect(url: str | None, key: str | None) -> Server:
    """The server of ``--url``/``--key``, else the environment, else a running dev, else
    ``DEFAULT_URL``. The key falls back the same way; a dev's key goes only to that dev."""
    import os

    dev = running_dev()
    chosen = check_url(str(url or os.environ.get(URL_ENV) or dev.get("url") or DEFAULT_URL))
    key = key or os.environ.get(KEY_ENV)
    if not key and dev.get("url") and check_url(str(dev["url"])) == chosen:
        key = dev.get("api_key")
    return Server(chosen, key or None)


STORAGE_SETTINGS = ("AzureWebJobsStorage", "AzureWebJobsStorage__accountName")


def server_or_storage(url: str | None, key: str | None) -> Server | None:
    """For commands that can also read Table Storage directly (``jobs``, ``connections``):
    the server of ``--url``/``GITOPS_SYNC_URL``; else None when ``AzureWebJobsStorage`` is
    set (read the tables); else a running ``gitops-sync dev``, else ``DEFAULT_URL``."""
    import os

    if url or os.environ.get(URL_ENV):
        return connect(url, key)
    if any(os.environ.get(name) for name in STORAGE_SETTINGS):
        return None
    return connect(None, key)
