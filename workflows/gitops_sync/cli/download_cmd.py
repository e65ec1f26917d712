"""``gitops-sync download``: fetch the workspace ZIP from a running server, safely.

The ZIP streams into a temporary file beside the target, is checked
(``testzip``), and only then takes the target's name: never a half-written FILE.zip.
``-o -`` streams it to stdout instead (unchecked: a broken transfer exits 1).
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
from ._client import Server, connect, fail_for, server_options
from ._format import human_bytes


class DownloadError(GitopsSyncError):
    """The download failed; nothing was written under the target name."""


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


def _receive(server: Server, connection: str | None, out: IO[bytes], bar: _Bar) -> tuple[int, str]:
    """Stream the archive into ``out``; returns (bytes, commit). Raises DownloadError."""
    import httpx

    params = {"connection": connection} if connection else {}
    shown = redact(f"{server.url}/api/workspace/archive")
    received = 0
    try:
        with server.stream("GET", "/api/workspace/archive", params=params) as resp:
            if resp.status_code != 200:
                resp.read()
                try:
                    fail_for(resp, "workspace archive")
                except GitopsSyncError as exc:
                    raise DownloadError(f"nothing downloaded: {exc}") from exc
            commit = resp.headers.get("etag", "").strip('"')
            for chunk in resp.iter_raw(1 << 20):
                out.write(chunk)
                received += len(chunk)
                bar.advance(len(chunk))
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
@click.option(
    "-o", "--output", required=True, help="Where to write the ZIP (e.g. ws.zip; - for stdout)."
)
@server_options
@click.option("--connection", default=None, help="A connected repository's id (default: the one).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def download(
    output: str, url: str | None, key: str | None, connection: str | None, force: bool
) -> None:
    """Download the workspace as a ZIP, checked, never half-written."""
    if not output.strip():
        raise UsageError("--output is empty")
    server = connect(url, key)
    if output == "-":
        _to_stdout(server, connection)
        return
    target = Path(output)
    if target.is_dir():
        raise UsageError(f"{output} is a directory; name a file, e.g. {output}/workspace.zip")
    if target.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to overwrite it")
    if not target.parent.is_dir():
        raise UsageError(f"directory {target.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    bar = _Bar(sys.stderr.isatty())
    try:
        with os.fdopen(fd, "wb") as out:
            size, commit = _receive(server, connection, out, bar)
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


def _to_stdout(server: Server, connection: str | None) -> None:
    """Stream the ZIP to stdout (refused on a terminal); the summary goes to stderr."""
    if sys.stdout.isatty():
        raise UsageError("refusing to write a ZIP to a terminal: redirect stdout or use -o FILE")
    out = sys.stdout.buffer
    size, commit = _receive(server, connection, out, _Bar(False))
    out.flush()
    short = f", commit {commit[:12]}" if commit else ""
    click.echo(f"downloaded {human_bytes(size)} to stdout{short}", err=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
