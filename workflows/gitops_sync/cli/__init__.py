"""The ``gitops-sync`` command line (click). Subcommands load lazily to keep startup lean.

Every failure a user can cause ends as one line on stderr and a non-zero exit
code, never a traceback (set ``GITOPS_SYNC_DEBUG=1`` to see one).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from ..core.errors import GitopsSyncError, UsageError

# name -> "module:attribute" under gitops_sync.cli; each module owns its commands
COMMANDS = {
    "sync": "sync_cmd:sync",
    "serve": "serve_cmd:serve",
    "worker": "worker_cmd:worker",
    "dev": "dev_cmd:dev",
    "webhook": "webhook_cmd:webhook",
    "download": "download_cmd:download",
    "jobs": "jobs_cmd:jobs",
    "connections": "connections_cmd:connections",
    "functions": "functions_cmd:functions",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        cmd: click.Command = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gitops-sync", prog_name="gitops-sync")
def cli() -> None:
    """Event-driven GitOps sync: git push -> workspace, only what changed."""


def fail(message: str, code: int = 1) -> None:
    click.echo(f"gitops-sync: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="gitops-sync", standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.ClickException as exc:
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            click.echo(exc.ctx.get_usage(), err=True)
        fail(exc.format_message(), exc.exit_code)
    except UsageError as exc:
        fail(str(exc), 2)
    except GitopsSyncError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except Exception as exc:
        if os.environ.get("GITOPS_SYNC_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc} (GITOPS_SYNC_DEBUG=1 shows more)", 70)
    return None
