"""``gitops-sync worker``: the queue worker alone, with the Functions queue trigger's rules.

Leases messages from ``SYNC_QUEUE``, runs each sync, and runs the periodic
reconcile every ``SYNC_RECONCILE_INTERVAL_SECONDS``; SIGTERM finishes in-flight work.
"""

from __future__ import annotations

import click

from ..settings import Settings
from .serve_cmd import run_stack, say


@click.command()
@click.option(
    "--concurrency", default=2, show_default=True, help="Messages handled at once (at most)."
)
@click.option(
    "--lease-seconds",
    default=30,
    show_default=True,
    help="How long a received message stays hidden; renewed while it runs, so a dead"
    " worker's message reappears after this.",
)
@click.option(
    "--grace-seconds",
    default=30.0,
    show_default=True,
    help="On SIGTERM, how long in-flight messages may take to finish.",
)
def worker(concurrency: int, lease_seconds: int, grace_seconds: float) -> None:
    """Run the queue worker: sync jobs from the queue into the workspace."""
    settings = Settings.from_env()

    def ready(stack: object) -> None:
        say(f"gitops-sync: worker polling queue {settings.queue} (concurrency {concurrency})")

    run_stack(
        settings,
        ready,
        http=False,
        worker=True,
        azurite=False,
        concurrency=concurrency,
        lease_s=lease_seconds,
        grace_s=grace_seconds,
    )
