"""A sync's progress on a terminal (stderr), drawn by rich; imported only on a terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import TaskID


class RichProgress:
    """Files and bytes written, on a terminal (stderr), via rich; short syncs draw nothing."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("syncing"),
            BarColumn(),
            TextColumn("{task.fields[done]}/{task.fields[files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: TaskID | None = None
        self._done = 0

    def start(self, files: int, total_bytes: int) -> None:
        if files < 200 and total_bytes < 20 << 20:
            return
        self._bar.start()
        self._task = self._bar.add_task("sync", total=total_bytes or 1, done=0, files=files)

    def advance(self, files: int, nbytes: int) -> None:
        if self._task is not None:
            self._done += files
            self._bar.update(self._task, advance=nbytes, done=self._done)

    def finish(self) -> None:
        if self._task is not None:
            self._bar.stop()
