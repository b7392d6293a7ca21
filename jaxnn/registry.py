"""Name -> object tables for config strings ("relu", "adam", "Dense", ...).

One small registry per kind, so an unknown name fails with a line that lists the
names that would have worked.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


def _canonical(name: str) -> str:
    return name.lower().replace("-", "_")


class Registry(Generic[T]):
    """Case-insensitive table from names to objects of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._display: dict[str, str] = {}

    def register(self, name: str, item: T | None = None, *, aliases: Iterable[str] = ()):
        """Register `item` under `name` (and `aliases`); usable as a decorator."""

        def add(obj):
            for n in (name, *aliases):
                key = _canonical(n)
                if key in self._items and self._items[key] is not obj:
                    raise ValueError(f"{self.kind} name {n!r} is already registered")
                self._items[key] = obj
                self._display.setdefault(key, n)
            return obj

        return add(item) if item is not None else add

    def get(self, name: str) -> T:
        """Look `name` up; an unknown name raises ValueError listing the known ones."""
        if not isinstance(name, str):
            raise ValueError(f"{self.kind} must be a name (str), got {name!r}")
        try:
            return self._items[_canonical(name)]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._display[k] for k in self._items)

    def __contains__(self, name: str) -> bool:
        return isinstance(name, str) and _canonical(name) in self._items


def resolve(registry: Registry[Callable], spec):
    """A name goes through `registry`; a callable is returned as it is."""
    if callable(spec):
        return spec
    return registry.get(spec)
