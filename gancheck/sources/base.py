"""The image source every audit reads from (a latent generator or a folder of its images), and the
registry of source kinds.

Which source reads a generator spec is decided by the table in :mod:`gancheck.sources.claims`. A
third-party source subclasses :class:`Source` (or :class:`LatentSource`), states its claim in
:meth:`Source.accepts`, and is declared by an entry point in the group ``gancheck.sources``, named
after its kind: ``npz = "my_package.source:NpzSource"``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from gancheck.errors import GancheckError
from gancheck.images import OutputFormat
from gancheck.registry import Registry
from gancheck.sources.latents import ANCHOR_OFFSET, LatentPrior, anchor_indices
from gancheck.defaults import BATCH_SIZE


class Source(ABC):
    """Where images come from. Sample indices ``0..n-1`` form the collection C; anchors A use
    other indices (disjoint by construction)."""

    kind: str = ""
    #: constructor keyword options this kind takes; any other option given is refused
    options: tuple[str, ...] = ()
    latent_prior: LatentPrior | None = None
    #: set by the pipeline: NaN images come back as NaN (skipped and counted) instead of an error
    allow_nan: bool = False
    #: (height, width) of the images, once known (after :meth:`prepare`)
    image_shape: tuple[int, int] | None = None

    @classmethod
    def accepts(cls, spec: str) -> bool:
        """True when this third-party source reads ``spec`` (e.g. ``spec.startswith("npz:")``). It is
        asked only when no built-in rule of :data:`gancheck.sources.claims.CLAIMS` claims the spec;
        built-in sources are claimed by that table and keep this False."""
        return False

    @abstractmethod
    def images(self, indices: np.ndarray) -> np.ndarray:
        """float32 (N, H, W, 3) images in [0, 1] for the given sample indices."""

    def prepare(self, seed: int) -> None:
        """Fix anything that must not depend on batching (output format), before the first batch."""
        self.seed = int(seed)

    def use_run_dir(self, run_dir) -> None:
        """Where the run is written; a source may keep files there (a response cache)."""

    def anchor_indices(self, n: int) -> np.ndarray:
        return anchor_indices(n)

    def collection_indices(self, n: int, n_anchors: int = 0) -> range | np.ndarray:
        """C's sample indices: ``range(n)``, never materialised whole (its memory would grow with n);
        each shard makes its own array (:meth:`gancheck.engine.pipeline.ShardMeasurer.shard`)."""
        return range(int(n))

    def describe(self) -> dict:
        return {"kind": self.kind}


class LatentSource(Source):
    """A generator ``z -> image`` with latents drawn from ``sampler`` (the prior, or a calibrator:
    anything with ``sample(seed, indices)``)."""

    def __init__(self, layout: str = "auto", value_range: str = "auto", batch_size: int = BATCH_SIZE):
        self.format = OutputFormat(layout, value_range)
        self.batch_size = int(batch_size)
        self.sampler = None
        self.seed = 0

    @abstractmethod
    def generate(self, z: np.ndarray):
        """Raw generator output for a latent batch (any array-like)."""

    def latents(self, indices: np.ndarray) -> np.ndarray:
        sampler = self.sampler or self.latent_prior
        return sampler.sample(self.seed, indices)

    def prepare(self, seed: int) -> None:
        super().prepare(seed)
        # The probe uses fixed anchor indices, so detection is the same for every batch size.
        self.current_indices = np.arange(ANCHOR_OFFSET, ANCHOR_OFFSET + 8)  # for inputs drawn per sample
        probe = self.latents(self.current_indices)
        try:
            raw = self.generate(probe)
        except (GancheckError, MemoryError):
            raise
        except Exception as exc:  # the generator's own failure: name it in one line
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise GancheckError(f"the generator failed on its first batch of {len(probe)} latents of shape {probe.shape[1:]} "
                                f"({type(exc).__name__}: {first}); check that it takes a latent batch (see --latent-shape) and returns images") from None
        self.format = self.format.resolve(check_count(raw, len(probe)), allow_nan=self.allow_nan)
        shape = tuple(int(k) for k in raw.shape)
        self.image_shape = shape[2:4] if self.format.layout == "nchw" else shape[1:3]

    def images(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        out = []
        for start in range(0, len(indices), self.batch_size):
            part = indices[start : start + self.batch_size]
            self.current_indices = part  # for inputs drawn per sample (gancheck.sources.conditions)
            raw = check_count(self.generate(self.latents(part)), len(part))
            out.append(self.format.convert(raw, first_index=int(part[0]), allow_nan=self.allow_nan))
        return np.concatenate(out) if out else np.zeros((0, 1, 1, 3), np.float32)

    def describe(self) -> dict:
        return {"kind": self.kind, "latent_prior": self.latent_prior.to_dict(), "output": self.format.to_dict()}


SOURCES: Registry = Registry("generator source", group="gancheck.sources", base=Source, attribute="kind")
register = SOURCES.register


def check_count(raw, n: int):
    """``raw`` when it holds one image per latent; a one-line error otherwise."""
    try:
        count = len(raw)
    except TypeError:
        count = None
    if count != n:
        got = "no batch" if count is None else f"{count} images"
        raise GancheckError(f"the generator returned {got} for a batch of {n} latents; it must return one image per latent, "
                            "batch axis first")
    return raw
