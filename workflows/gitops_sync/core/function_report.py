"""What a sync found of the deployable functions: its report, and what the manifest records.

Apart from ``functions`` (which parses, validates and hashes ``function.toml``
files) so that a sync of a tree without functions loads none of that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


@dataclass(frozen=True, slots=True)
class RecordedFunction:
    hash: str
    directory: str


@dataclass(slots=True)
class FunctionReport:
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    invalid: list[dict[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)
    specs: dict[str, FunctionSpec] = field(default_factory=dict)
    members: dict[str, list[Member]] = field(default_factory=dict)

    def recorded(self) -> dict[str, RecordedFunction]:
        return {n: RecordedFunction(h, self.specs[n].directory) for n, h in self.hashes.items()}

    def as_json(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "unchanged": self.unchanged,
            "invalid": self.invalid,
            "removed": self.removed,
        }
