"""``gitops-sync download``: fetch the workspace ZIP from a running server, safely.

The ZIP streams into a temporary file beside the target, is checked
(``testzip``), and only then takes the target's name: never a half-written FILE.zip.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any

import click

from ..core.errors import GitopsSyncError, UsageError
from ..core.redact import redact
from ._format import human_bytes

DEFAULT_URL = "http://127.0.0.1:7071"
KEY_ENV = "GITOPS_SYNC_API_KEY"
URL_ENV = "GITOPS_SYNC_URL"


class DownloadError(GitopsSyncError):
    """The download failed; nothing was written under the target name."""


def _fail_status(status: int, body: bytes, url: str) -> DownloadError:
    detail = ""
    with contextlib.suppress(ValueError, AttributeError):
        import json

        detail = str(json.loads(body).get("error") or "")
    if status == 401:
        return DownloadError(f"the server refused the key (401): pass --key or set {KEY_ENV}")
    if status == 404:
        return DownloadError(f"nothing to download (404): {detail or 'not found'} at {url}")
    return DownloadError(f"the server answered {status}{': ' + detail if detail else ''}")


class _Bar:
    """Bytes received and speed on a terminal (stderr), via rich; silent elsewhere."""

    def __init__(self, enabled: bool) -> None:
        self._progress: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import DownloadColumn, Progress, SpinnerColumn, TransferSpeedColumn

        self._progress = Progress(
            SpinnerColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("download", total=None)

    def advance(self, nbytes: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, nbytes)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _receive(
    url: str, key: str | None, connection: str | None, out: IO[bytes], bar: _Bar
) -> tuple[int, str]:
    """Stream the archive into ``out``; returns (bytes, commit). Raises DownloadError."""
    import httpx

    headers = {"x-functions-key": key} if key else {}
    params = {"connection": connection} if connection else {}
    target = f"{url.rstrip('/')}/api/workspace/archive"
    shown = redact(target)
    received = 0
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(30.0, read=300.0)) as client,
            client.stream("GET", target, headers=headers, params=params) as resp,
        ):
            if resp.status_code != 200:
                raise _fail_status(resp.status_code, resp.read()[:4096], shown)
            commit = resp.headers.get("etag", "").strip('"')
            for chunk in resp.iter_raw(1 << 20):
                out.write(chunk)
                received += len(chunk)
                bar.advance(len(chunk))
    except httpx.ConnectError as exc:
        raise DownloadError(f"cannot connect to {shown} ({_reason(exc)})") from exc
    except httpx.TimeoutException as exc:
        raise DownloadError(f"{shown} did not answer in time") from exc
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise DownloadError(
            f"the transfer broke off after {received} bytes (a sync may have landed meanwhile;"
            " run the download again)"
        ) from exc
    except httpx.HTTPError as exc:
        raise DownloadError(f"download from {shown} failed: {type(exc).__name__}") from exc
    return received, commit


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    return redact(text.splitlines()[0]) if text else type(exc).__name__


def _check_zip(path: str) -> int:
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            count = len(zf.infolist())
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DownloadError(f"the download is not a valid ZIP ({exc})") from exc
    if bad is not None:
        raise DownloadError(f"the download is corrupt (first bad entry: {bad})")
    return count


@click.command()
@click.option("-o", "--output", required=True, help="Where to write the ZIP (e.g. ws.zip).")
@click.option(
    "--url",
    default=None,
    help=f"The server (default: $GITOPS_SYNC_URL, where `dev` listens, or {DEFAULT_URL}).",
)
@click.option("--key", default=None, help=f"API key (default: ${KEY_ENV}, or dev's key).")
@click.option("--connection", default=None, help="A connected repository's id (default: the one).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def download(
    output: str, url: str | None, key: str | None, connection: str | None, force: bool
) -> None:
    """Download the workspace as a ZIP, checked, never half-written."""
    if not output.strip():
        raise UsageError("--output is empty")
    target = Path(output)
    if target.is_dir():
        raise UsageError(f"{output} is a directory; name a file, e.g. {output}/workspace.zip")
    if target.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to overwrite it")
    if not target.parent.is_dir():
        raise UsageError(f"directory {target.parent} does not exist")
    from ..local import devstate

    state = devstate.read_state()  # a running `gitops-sync dev` says where it is
    url = url or os.environ.get(URL_ENV) or state.get("url") or DEFAULT_URL
    key = key or os.environ.get(KEY_ENV) or state.get("api_key") or None

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    bar = _Bar(sys.stderr.isatty())
    try:
        with os.fdopen(fd, "wb") as out:
            size, commit = _receive(url, key, connection, out, bar)
            out.flush()
            os.fsync(out.fileno())
        bar.stop()
        count = _check_zip(tmp)
        os.chmod(tmp, 0o644 & ~_umask())
        if force:
            os.replace(tmp, target)
        else:
            # link() refuses an existing name: a file that appeared meanwhile is kept.
            try:
                os.link(tmp, target)
            except FileExistsError as exc:
                raise UsageError(f"{output} exists; pass --force to overwrite it") from exc
            except OSError:  # a filesystem without hard links
                if target.exists():
                    raise UsageError(f"{output} exists; pass --force to overwrite it") from None
                os.replace(tmp, target)
    finally:
        bar.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    short = f", commit {commit[:12]}" if commit else ""
    click.echo(f"downloaded {output}: {count} files, {human_bytes(size)}{short}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
