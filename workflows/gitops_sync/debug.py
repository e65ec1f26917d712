"""Attach a debugger to the Functions worker: debugpy on a port, only outside Azure.

``ENABLE_DEBUGGING=true`` (dev container only) opens the port; an open debug port in production is a
remote shell, so it is refused whenever App Service's ``WEBSITE_*`` variables say we run in Azure.
"""

from __future__ import annotations

import importlib
import logging

from .settings import DebugOptions

log = logging.getLogger("gitops_sync")

#: Listen on every interface of the container; docker-compose publishes the port on loopback only.
CONTAINER_HOST = "0.0.0.0"
_listening: tuple[str, int] | None = None


def start_debugger(options: DebugOptions, host: str = CONTAINER_HOST) -> str:
    """Open the debugpy port if the options ask for it; returns (and logs) what was done."""
    global _listening
    if not options.enabled:
        return "debugger off"
    if options.in_azure:
        message = (
            f"ENABLE_DEBUGGING is ignored: this app runs in Azure ({options.in_azure}), "
            "and an open debug port there is a remote shell"
        )
        log.warning("%s", message)
        return message
    if _listening is not None:  # the worker imports the app once, but be safe on a re-import
        return f"debugpy already listening on {_listening[0]}:{_listening[1]}"
    try:
        debugpy = importlib.import_module("debugpy")
    except ImportError:
        message = (
            "ENABLE_DEBUGGING is set but debugpy is not installed "
            "(docker-compose.dev.yml builds it into the dev image; pip install debugpy)"
        )
        log.warning("%s", message)
        return message
    try:
        debugpy.listen((host, options.port))
    except (OSError, RuntimeError) as exc:
        message = f"debugpy could not listen on {host}:{options.port}: {exc}"
        log.warning("%s", message)
        return message
    _listening = (host, options.port)
    log.warning("debugpy listening on %s:%d (ENABLE_DEBUGGING)", host, options.port)
    if options.wait:
        log.warning("DEBUGPY_WAIT: waiting for a debugger to attach before serving")
        debugpy.wait_for_client()
        return f"debugpy listening on {host}:{options.port}; a debugger attached"
    return f"debugpy listening on {host}:{options.port}"


def start_from_environment() -> str:
    """``start_debugger`` with the process's settings; a bad setting is logged, never raised."""
    try:
        options = DebugOptions.from_env()
    except ValueError as exc:
        log.warning("debugger not started: %s", exc)
        return f"debugger not started: {exc}"
    return start_debugger(options)
