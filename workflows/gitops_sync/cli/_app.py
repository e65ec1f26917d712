"""The click application behind every ``gitops-sync`` command (``sync`` also has a lean path).

Subcommands load lazily: a command's module is imported only when it runs.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from . import COMMANDS, fail


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        cmd: click.Command = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gitops-sync", prog_name="gitops-sync")
def cli() -> None:
    """Event-driven GitOps sync: git push -> workspace, only what changed."""


def run_click(argv: list[str] | None) -> Any:
    """Run ARGV through click; its own errors end as one line (and the usage) on stderr."""
    try:
        return cli.main(args=argv, prog_name="gitops-sync", standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.ClickException as exc:
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            click.echo(exc.ctx.get_usage(), err=True)
        fail(exc.format_message(), exc.exit_code)
    return None
