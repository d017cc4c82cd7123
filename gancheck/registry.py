"""One registry for every plug-in kind: generator sources, embedders and calibrators.

Built-in plug-ins are filed in-process by the class decorator ``register(name)``. A third-party
package adds one without editing gancheck: it declares a Python entry point in the kind's group
(``gancheck.sources``, ``gancheck.embedders`` or ``gancheck.calibrators``) whose name is the
plug-in's name and whose value is its class, e.g. in the package's pyproject.toml::

    [project.entry-points."gancheck.embedders"]
    meanrgb = "my_package.embedder:MeanRGB"

Entry points are listed on the first lookup and a plug-in is imported only when it is looked up, so
``import gancheck`` stays fast and a broken plug-in stops only the runs that ask for it, with one line
that names its distribution, its entry point and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable, Generic, Iterator, TypeVar

from gancheck.errors import GancheckError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

T = TypeVar("T", bound=type)


class Registry(Mapping, Generic[T]):
    """Classes of one plug-in kind by name: those registered in this process and those declared by
    entry points in ``group``. ``registry[name]`` imports a plug-in on first use; ``name in registry``,
    iteration and :meth:`names` never import anything. A plug-in's class gets ``cls.<attribute> = name``."""

    def __init__(self, kind: str, group: str, base: type, attribute: str = "name"):
        self.kind = kind
        self.group = group
        self.base = base
        self.attribute = attribute
        self._classes: dict[str, T] = {}
        self._loaded: dict[str, T] = {}
        self._broken: dict[str, GancheckError] = {}
        self._declared: dict[str, list[EntryPoint]] | None = None

    # -- in-process registration -----------------------------------------------------------------

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: file the class under ``name`` (how built-in plug-ins register)."""

        def deco(cls: T) -> T:
            setattr(cls, self.attribute, name)
            self._classes[name] = cls
            return cls

        return deco

    def in_process(self, name: str) -> T:
        """The class registered under ``name`` in this process (no entry point is consulted)."""
        return self._classes[name]

    # -- entry points ----------------------------------------------------------------------------

    def declared(self) -> dict[str, list[EntryPoint]]:
        """Entry points of ``group`` by name (listed once, none imported)."""
        if self._declared is None:
            from importlib.metadata import entry_points  # ~35 ms: only when a lookup needs it

            found: dict[str, list[EntryPoint]] = {}
            for ep in entry_points(group=self.group):
                same = found.setdefault(ep.name, [])
                if all(other.value != ep.value for other in same):  # one distribution seen on two paths
                    same.append(ep)
            self._declared = found
        return self._declared

    def refresh(self) -> None:
        """Forget the entry points listed so far (after a package was installed in this process)."""
        self._declared = None
        self._loaded.clear()
        self._broken.clear()

    def third_party(self) -> list[str]:
        """Names declared by entry points, in sorted order."""
        return sorted(self.declared())

    def origin(self, name: str) -> str:
        """Where the plug-in ``name`` comes from, in words (for error messages)."""
        eps = self.declared().get(name)
        if eps and name not in self._classes:
            return _where(eps[0], self.group)
        cls = self._classes.get(name)
        return f"registered in this process by {cls.__module__}" if cls is not None else "unknown"

    def _load(self, name: str) -> T:
        if name in self._broken:
            raise self._broken[name]
        try:
            self._loaded[name] = self._import(name)
        except GancheckError as exc:
            self._broken[name] = exc
            raise
        return self._loaded[name]

    def _import(self, name: str) -> T:
        eps = self.declared()[name]
        if len(eps) > 1:
            raise GancheckError(f"two distributions declare the {self.kind} {name!r}: {_where(eps[0], self.group)} and "
                                f"{_where(eps[1], self.group)}; uninstall one of them (pip uninstall {_dist(eps[1])})")
        ep, dist = eps[0], _dist(eps[0])
        own = self._classes.get(name)
        if own is not None and _target(own) != ep.value:
            raise GancheckError(f"{_where(ep, self.group)} takes the name of gancheck's own {self.kind} {name!r}; rename the "
                                f"entry point in that package, or uninstall it (pip uninstall {dist})")
        try:
            obj = ep.load()
        except Exception as exc:  # ImportError, AttributeError, or the plug-in's own module failing
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise GancheckError(f"cannot load the {self.kind} {name!r} from {_where(ep, self.group)} ({type(exc).__name__}: {first}); "
                                f"fix or reinstall {dist}, or uninstall it (pip uninstall {dist})") from None
        if not (isinstance(obj, type) and issubclass(obj, self.base)):
            base = f"{self.base.__module__}.{self.base.__qualname__}"
            raise GancheckError(f"the {self.kind} {name!r} from {_where(ep, self.group)} is not a subclass of {base}; point the entry "
                                f"point at such a class, or uninstall {dist} (pip uninstall {dist})")
        setattr(obj, self.attribute, name)
        return obj

    # -- lookups ---------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> T:
        """The class named ``name``; KeyError when none is, GancheckError (one line) when its plug-in
        is broken or takes a name gancheck's own plug-ins have."""
        if name in self._loaded:
            return self._loaded[name]
        if name in self._classes:
            eps = self.declared().get(name, [])
            if any(ep.value != _target(self._classes[name]) for ep in eps):
                return self._load(name)  # raises: a third-party name that collides with a built-in
            return self._classes[name]
        if name in self.declared():
            return self._load(name)
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self.declared()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    # A registry is one object, not a value: comparing two must not import every plug-in.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def names(self) -> list[str]:
        """Every name, registered in this process or declared by an entry point, sorted."""
        return sorted(set(self._classes) | set(self.declared()))


def _target(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _dist(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "the package that declares it"


def _where(ep: EntryPoint, group: str) -> str:
    point = f"entry point '{ep.name} = {ep.value}' in group {group}"
    dist = getattr(ep, "dist", None)
    return f"distribution {dist.name} ({point})" if dist is not None else f"the {point}"
