"""Base class and registry of identity descriptors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np

from gancheck.errors import GancheckError

_REGISTRY: dict[str, type["Embedder"]] = {}


def register(name: str) -> Callable[[type["Embedder"]], type["Embedder"]]:
    """Class decorator: make an :class:`Embedder` subclass loadable as ``name`` (or ``name:ARG``)."""

    def deco(cls: type[Embedder]) -> type[Embedder]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    return sorted(_REGISTRY)


def load_embedder(spec: str, **options) -> "Embedder":
    """Build a descriptor from ``NAME`` or ``NAME:ARG`` (e.g. ``pixel``, ``onnx:model.onnx``).

    ``options`` are keyword arguments of that descriptor's constructor; ``None`` values are dropped
    so that CLI flags left unset keep the descriptor's defaults.
    """
    name, _, arg = spec.partition(":")
    if name not in _REGISTRY:
        raise GancheckError(
            f"unknown embedder {name!r}; choose one of: {', '.join(available())} "
            "(an ONNX descriptor is given as onnx:PATH)"
        )
    options = {k: v for k, v in options.items() if v is not None}
    cls = _REGISTRY[name]
    return cls(arg, **options) if arg else cls(**options)


class Embedder(ABC):
    """An identity descriptor ``F_id``.

    Subclasses set ``default_theta`` and ``default_radius`` (normalised angular distances of Eq. 4,
    in [0, 1]) and implement :meth:`embed`.
    """

    name: str = ""
    default_theta: float = 0.3
    default_radius: float = 0.25
    #: Where ``default_theta``/``default_radius`` come from, quoted in manifests and docs.
    threshold_source: str = ""

    @abstractmethod
    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embed a batch.

        images: float32 array (N, H, W, 3), RGB, values in [0, 1].
        Returns ``(vectors, found)``: float32 (N, D) L2-normalised rows, and a bool (N,) mask that
        is False where the descriptor could not describe the image (e.g. no face was found; the
        row's content is then meaningless). Descriptors that describe every image return all True.
        """

    def describe(self) -> dict:
        """Settings recorded in the run manifest (JSON-serialisable)."""
        return {"name": self.name}


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)
