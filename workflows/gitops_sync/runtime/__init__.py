"""The function runtime (``DEPLOY_TARGET=builtin``): warm isolated worker processes per version.

See README "Function runtime" for the package layout, the import rule, limits and figures.
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
