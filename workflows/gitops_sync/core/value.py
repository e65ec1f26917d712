"""A base for the sync's small value types: plain slotted classes, not dataclasses.

The sync starts on every push, and ``dataclasses`` is the dearest import of its
start-up (it loads ``inspect``, ``ast`` and ``dis``), and each decorated class
costs more again as it is created (its methods are generated and compiled). The
value types on the sync's path therefore write their ``__init__`` by hand and
take equality and ``repr`` from here, as a dataclass would give them (over the
fields named in ``__slots__``), equal only to an instance of the very same class.
"""

from __future__ import annotations


class Value:
    """Equality and ``repr`` over ``__slots__``; unhashable (mutable), as a dataclass is."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{self.__class__.__qualname__}({fields})"


class FrozenValue(Value):
    """A ``Value`` that is never changed after it is built, so it is hashable (as a
    frozen dataclass is; nothing enforces the freezing: it would cost every build)."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]  # None in Value
        return hash(self._values())
