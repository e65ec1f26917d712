"""What a sync found of the deployable functions: its report, and what the manifest records.

Apart from ``functions`` (which parses, validates and hashes ``function.toml``
files) so that a sync of a tree without functions loads none of that.
"""

from __future__ import annotations

from collections.abc import Mapping

from .value import FrozenValue, Value

TYPE_CHECKING = False  # typing's, without loading typing (the sync's start-up); mypy reads it True

if TYPE_CHECKING:
    from typing import Any

    from .function_toml import FunctionSpec
    from .functions import Member
    from .model import SourceFile

FUNCTIONS_DIR = "functions"
FUNCTION_TOML = "function.toml"


def find_function_tomls(desired: Mapping[str, SourceFile]) -> list[str]:
    """Paths of ``functions/<dir>/function.toml`` among the synced files, sorted."""
    prefix, suffix = FUNCTIONS_DIR + "/", "/" + FUNCTION_TOML
    return sorted(
        p for p in desired if p.startswith(prefix) and p.endswith(suffix) and p.count("/") == 2
    )


class RecordedFunction(FrozenValue):
    __slots__ = ("directory", "hash")
    hash: str
    directory: str

    def __init__(self, hash: str, directory: str) -> None:
        self.hash = hash
        self.directory = directory


class FunctionReport(Value):
    __slots__ = ("changed", "hashes", "invalid", "members", "removed", "specs", "unchanged")

    def __init__(
        self,
        changed: list[str] | None = None,
        unchanged: list[str] | None = None,
        invalid: list[dict[str, str]] | None = None,
        removed: list[str] | None = None,
        hashes: dict[str, str] | None = None,
        specs: dict[str, FunctionSpec] | None = None,
        members: dict[str, list[Member]] | None = None,
    ) -> None:
        self.changed: list[str] = [] if changed is None else changed
        self.unchanged: list[str] = [] if unchanged is None else unchanged
        self.invalid: list[dict[str, str]] = [] if invalid is None else invalid
        self.removed: list[str] = [] if removed is None else removed
        self.hashes: dict[str, str] = {} if hashes is None else hashes
        self.specs: dict[str, FunctionSpec] = {} if specs is None else specs
        self.members: dict[str, list[Member]] = {} if members is None else members

    def recorded(self) -> dict[str, RecordedFunction]:
        return {n: RecordedFunction(h, self.specs[n].directory) for n, h in self.hashes.items()}

    def as_json(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "unchanged": self.unchanged,
            "invalid": self.invalid,
            "removed": self.removed,
        }
