"""``gitops-sync serve``: the HTTP API alone on 127.0.0.1:PORT (storage from the settings).

Also the shared runner of the long-running commands (``serve``, ``worker``, ``dev``):
log lines on stderr, the "listening" lines on stdout, one line for any failure.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ..settings import Settings

if TYPE_CHECKING:
    from ..local.stack import Stack


def setup_logging() -> None:
    """Log lines of the ``gitops_sync`` logger on stderr (the library configures none)."""
    level = os.environ.get("GITOPS_SYNC_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("gitops_sync")
    logger.handlers[:] = [handler]
    logger.setLevel(getattr(logging, level, logging.INFO))
    logger.propagate = False


def say(line: str = "") -> None:
    """One line on stdout, flushed at once (scripts and tests wait for these)."""
    click.echo(line)
    sys.stdout.flush()


def run_stack(settings: Settings, on_ready: Callable[..., None], **options: object) -> None:
    from ..local.stack import Stack, StackOptions

    setup_logging()
    stack = Stack(settings, StackOptions(**options), on_ready=on_ready)  # type: ignore[arg-type]
    stack.run()
    say("gitops-sync: stopped")


#: webhook intake processes of ``serve`` (see ``--intake-processes``): none by default,
#: threads of the serving process (with the intake's lean storage path a delivery costs
#: less CPU there than the hop to another process does)
INTAKE_PROCESSES = 0


@click.command()
@click.option("--port", default=7071, show_default=True, help="Port on 127.0.0.1 (0: any free).")
@click.option(
    "--intake-processes",
    type=click.IntRange(0, 32),
    default=INTAKE_PROCESSES,
    show_default=True,
    help="Worker processes that acknowledge webhook deliveries (0: threads of this one).",
)
def serve(port: int, intake_processes: int) -> None:
    """Run the HTTP API (webhook, jobs, health, workspace) on 127.0.0.1:PORT."""
    from ..http.webhook import POOL

    settings = Settings.from_env()

    def ready(stack: Stack) -> None:
        if intake_processes:
            # Started once the port is ours; until they are up, threads take deliveries.
            POOL.use_processes(intake_processes, stack.ctx, setup_logging)
        url = stack.url
        say(f"gitops-sync: listening on {url}")
        say(f"  webhook: POST {url}/api/github/webhook")

    try:
        run_stack(settings, ready, http=True, worker=False, azurite=False, port=port)
    finally:
        POOL.shutdown()
