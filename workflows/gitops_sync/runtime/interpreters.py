"""Which Python runtimes this host can run: ``python3.X`` on PATH, or the server's own interpreter.

A found name is probed once (a pyenv shim can exist for a version that is not installed), and the
probe's real ``sys.executable`` is used, so a worker starts without a shim in between.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from typing import Any

from ..core.functions import SUPPORTED_RUNTIMES

_PROBE = "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])"


@functools.cache
def find_interpreter(runtime: str) -> str | None:
    """The executable that runs ``runtime`` (e.g. ``python3.11``) here, or None."""
    if runtime not in SUPPORTED_RUNTIMES:
        return None
    wanted = runtime.removeprefix("python")
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == wanted and sys.executable:
        return sys.executable
    found = shutil.which(runtime)
    if found is None:
        return None
    try:
        probe = subprocess.run(
            [found, "-I", "-S", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = probe.stdout.split()
    if probe.returncode != 0 or len(lines) != 2 or lines[1] != wanted:
        return None
    return lines[0] or found


def available_runtimes() -> list[dict[str, Any]]:
    """``[{"runtime", "available", "executable"}]`` for every identifier function.toml accepts."""
    rows = []
    for runtime in SUPPORTED_RUNTIMES:
        exe = find_interpreter(runtime)
        rows.append({"runtime": runtime, "available": exe is not None, "executable": exe})
    return rows
