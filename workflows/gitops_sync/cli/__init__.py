"""The ``gitops-sync`` command line: click, imported only when a command needs it.

``gitops-sync sync`` with well-formed options runs without importing click (it
starts on every push; ``cli/sync_run.py``); anything else, ``sync --help`` or a
malformed ``sync`` included, goes through the click application (``cli/_app.py``),
so help, usage errors and exit codes are click's. Every failure a user can cause
ends as one line on stderr and a non-zero exit code, never a traceback (set
``GITOPS_SYNC_DEBUG=1`` to see one).
"""

from __future__ import annotations

import os
import sys

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


def __getattr__(name: str) -> object:
    if name == "cli":  # the click group, for whoever inspects the commands
        from ._app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(f"gitops-sync: error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def _exit_now() -> None:
    """End the process as a normal exit would, without the interpreter's teardown.

    What a normal exit does that matters is done: the ``atexit`` functions run and
    the standard streams are flushed (every file the sync writes is closed where it
    is written). What is skipped is the freeing of every module and object, about a
    tenth of a sync's own CPU (callgrind: 17M of 155M instructions for a no-op)."""
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> object:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if args[:1] == ["sync"]:
            from . import sync_run

            options = sync_run.parse_args(args[1:])
            if options is not None:
                sync_run.run(options)
                if argv is None:  # the process is ours: end it without a teardown
                    _exit_now()
                return None
        from ._app import run_click

        return run_click(args)
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
