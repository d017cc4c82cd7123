"""The embedder base class and registry: an embedder turns an image into an identity descriptor.

A third-party embedder subclasses :class:`Embedder` and is declared by an entry point in the group
``gancheck.embedders`` (``meanrgb = "my_package.embedder:MeanRGB"``); ``--embedder meanrgb`` then
finds it, and it is imported only when asked for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import inspect

import numpy as np

from gancheck.errors import GancheckError
from gancheck.registry import Registry


def available() -> list[str]:
    """Names of every embedder, built-in or declared by an entry point (none is imported)."""
    return EMBEDDERS.names()


def load_embedder(spec: str, device: str = "auto", threads: int | None = None, model_dir: str | None = None, **options) -> "Embedder":
    """Build the embedder ``NAME`` or ``NAME:ARG`` (e.g. ``pixel``, ``onnx:model.onnx``, or a
    plug-in's name).

    ``options`` are keyword arguments of that embedder's constructor; ``None`` values are dropped
    so that CLI flags left unset keep the embedder's defaults. ``device``, ``threads`` and
    ``model_dir`` (GANCHECK_INSIGHTFACE_DIR may be set whatever embedder is asked for) go only to
    embedders whose constructor takes them; any other option must be the embedder's own.
    """
    name, _, arg = spec.partition(":")
    cls = EMBEDDERS.get(name)
    if cls is None:
        raise GancheckError(
            f"unknown embedder {name!r}; choose one of: {', '.join(available())} "
            "(any ONNX model is given as onnx:PATH; a package adds one through the entry point group gancheck.embedders)"
        )
    options = {k: v for k, v in options.items() if v is not None}
    params = inspect.signature(cls.__init__).parameters
    environment = {"device": device, "threads": threads, "model_dir": model_dir}
    options.update({k: v for k, v in environment.items() if k in params and v is not None})
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            takes = ", ".join(p for p in params if p not in ("self", "path")) or "none"
            raise GancheckError(f"embedder {cls.name!r} takes no option {', '.join(unknown)}; its options are: {takes}")
    return cls(arg, **options) if arg else cls(**options)


class Embedder(ABC):
    """An embedder: the identity network ``F_id`` of the paper, whose output is a descriptor.

    Subclasses set ``default_theta`` and ``default_radius`` (normalised angular distances of Eq. 4,
    in [0, 1]) and implement :meth:`embed`.
    """

    name: str = ""
    default_theta: float = 0.3
    default_radius: float = 0.25
    #: Where ``default_theta``/``default_radius`` come from, quoted in manifests and docs.
    threshold_source: str = ""
    #: Side in pixels of what the network sees per image (a face chip, a resized image), or None for the
    #: image itself: the working memory of one batch (:func:`gancheck.run.measure.working_memory`).
    input_side: int | None = None

    @abstractmethod
    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embed a batch.

        images: float32 array (N, H, W, 3), RGB, values in [0, 1].
        Returns ``(vectors, found)``: float32 (N, D) L2-normalised rows, and a bool (N,) mask that
        is False where the embedder could not describe the image (e.g. no face was found; the
        row's content is then meaningless). Descriptors that describe every image return all True.
        """

    def describe(self) -> dict:
        """Settings recorded in the run manifest (JSON-serialisable)."""
        return {"name": self.name}


EMBEDDERS: Registry = Registry("embedder", group="gancheck.embedders", base=Embedder)
register = EMBEDDERS.register


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)
