"""The function runtime (``DEPLOY_TARGET=builtin``): warm isolated worker processes per version.

See README "Function runtime" for the package layout, the import rule, limits and figures.
The deploy side's interface::

    rt = FunctionRuntime(cache_dir=..., load_package=lambda ref: zip_bytes,
                         lookup_setting=settings.get)  # idle_seconds=60, keep_previous_seconds=300
    rt.set_active(name, VersionRef(name, version, sha256, package_sha256, config))  # None: removed
    result = rt.invoke(name, body, version=None, invocation_id=None)  # InvokeResult(status, ...)
    rt.describe(name); rt.runtimes(); rt.prune_cache(name, kept_versions); rt.close()

``invoke`` is thread-safe and never raises; ``load_package`` may raise (the answer is 502).
"""

from .interpreters import available_runtimes, find_interpreter
from .model import MAX_BODY_BYTES, InvokeResult, VersionRef
from .runtime import FunctionRuntime

__all__ = [
    "MAX_BODY_BYTES",
    "FunctionRuntime",
    "InvokeResult",
    "VersionRef",
    "available_runtimes",
    "find_interpreter",
]
