"""Latent priors whose every draw is reproducible from ``(seed, sample index)`` alone.

Index space is cut into blocks of ``BLOCK`` consecutive indices. Block ``b`` is drawn from
``numpy.random.Generator(PCG64(SeedSequence([seed, b])))``, so regenerating any sample, anchor or
mode needs only the seed and its index, never stored latents, and results do not depend on how
indices are batched. The anchors ``A`` use indices from ``ANCHOR_OFFSET`` on and the collection
``C`` uses ``0 .. n-1``: the two sets are disjoint by construction (``A ∩ C = ∅``, Eq. 8).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from gancheck.errors import GancheckError

BLOCK = 1024
ANCHOR_OFFSET = 1 << 40
PRIORS = ("normal", "uniform", "truncnormal")


def anchor_indices(n_anchors: int) -> np.ndarray:
    return ANCHOR_OFFSET + np.arange(n_anchors, dtype=np.int64)


def block_rng(seed: int, block: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(block)])))


@dataclass(frozen=True)
class LatentPrior:
    """The distribution latents are drawn from.

    kind: ``normal`` (standard normal), ``uniform`` (on [-bound, bound]) or ``truncnormal``
    (standard normal resampled until every entry lies in [-bound, bound]).
    shape: the latent shape without the batch dimension, e.g. ``(512,)`` or ``(100, 1, 1)``.
    """

    shape: tuple[int, ...]
    kind: str = "normal"
    bound: float = 2.0

    def __post_init__(self):
        if self.kind not in PRIORS:
            raise GancheckError(f"unknown latent prior {self.kind!r}; choose one of {', '.join(PRIORS)}")
        if self.kind != "normal" and not self.bound > 0:
            raise GancheckError(f"--truncation must be positive for the {self.kind} prior, got {self.bound}")

    @property
    def dim(self) -> int:
        return int(np.prod(self.shape))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LatentPrior":
        return cls(shape=tuple(int(s) for s in d["shape"]), kind=d.get("kind", "normal"), bound=float(d.get("bound", 2.0)))

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` float64 draws (count, dim) from ``rng`` (truncnormal: entries out of bounds are
        redrawn, in C order, until none is left)."""
        if self.kind == "uniform":
            return rng.uniform(-self.bound, self.bound, size=(count, self.dim))
        z = rng.standard_normal((count, self.dim))
        if self.kind == "truncnormal":
            bad = np.abs(z) > self.bound
            while bad.any():
                z[bad] = rng.standard_normal(int(bad.sum()))
                bad = np.abs(z) > self.bound
        return z

    def draw_block(self, seed: int, block: int) -> np.ndarray:
        """All ``BLOCK`` latents of one block, float64 (BLOCK, dim)."""
        return self.draw(block_rng(seed, block), BLOCK)

    def sample(self, seed: int, indices) -> np.ndarray:
        """Latents for the given sample indices, float32 with shape (len(indices), *shape)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), self.dim), dtype=np.float32)
        blocks = idx // BLOCK
        for b in np.unique(blocks):
            sel = blocks == b
            out[sel] = self.draw_block(seed, int(b))[idx[sel] - b * BLOCK]
        return out.reshape((len(idx), *self.shape))
