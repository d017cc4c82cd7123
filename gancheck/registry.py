"""One registry helper for every plug-in kind (generator sources, descriptors, calibrators): a class
decorator that files a class under a name, and lookups by name."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes of one plug-in kind by name; ``register(name)`` also sets ``cls.<attribute> = name``."""

    def __init__(self, kind: str, attribute: str = "name"):
        self.kind = kind
        self.attribute = attribute
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(cls: T) -> T:
            setattr(cls, self.attribute, name)
            self._classes[name] = cls
            return cls

        return deco

    def get(self, name: str) -> T | None:
        return self._classes.get(name)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: str) -> bool:
        return name in self._classes

    def __getitem__(self, name: str) -> T:
        return self._classes[name]

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._classes.values()))
