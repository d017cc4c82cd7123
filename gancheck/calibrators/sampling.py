"""Calibrated latents: the prior, thinned by an acceptance probability, reproducible from ``(seed, index)``.

Every calibrator in this package is a rejection sampler on the generator's own prior: a candidate
``z ~ prior`` is kept with probability ``a(z)`` in [0, 1], so the calibrated density is
``prior(z) * a(z) / E_prior[a]``; where ``a`` is constant the prior is unchanged. Only ``a``
differs between methods.

The random stream (docs/calibrator-format.md, "Sampling"): indices are cut into blocks of
``STREAM_BLOCK``; block ``b`` draws from ``Generator(PCG64(SeedSequence([seed, b, STREAM_TAG])))``.
Round ``r = 0, 1, ...`` draws ``STREAM_BLOCK`` candidates from the prior, then ``STREAM_BLOCK``
uniforms; the index at position ``j`` of the block takes the candidate of the first round whose
uniform is below ``a``. A latent therefore depends only on (seed, index), never on batching, and
the stream is independent of the prior's own blocks (which seed with two words, not three).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from gancheck.errors import GancheckError
from gancheck.sources.latents import LatentPrior

STREAM_BLOCK = 256
STREAM_TAG = 0xCA11
MAX_ROUNDS = 1000

Acceptance = Callable[[np.ndarray], np.ndarray]


def stream_rng(seed: int, block: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(block), STREAM_TAG])))


class CalibratedSampler:
    """``sample(seed, indices)`` like :class:`LatentPrior`, with each prior draw kept with
    probability ``acceptance(z)`` (z float64 (k, dim) -> (k,) in [0, 1]).

    ``drawn`` and ``kept`` count candidates examined and latents returned, so
    ``acceptance_rate`` is the draws paid per kept sample (1.0 for the plain prior).
    """

    def __init__(self, prior: LatentPrior, acceptance: Acceptance, shape: tuple[int, ...] | None = None):
        self.prior = prior
        self.acceptance = acceptance
        self.shape = tuple(shape) if shape is not None else prior.shape
        self.drawn = 0
        self.kept = 0

    @property
    def acceptance_rate(self) -> float:
        """Candidates drawn per latent returned so far (nan before the first draw)."""
        return self.drawn / self.kept if self.kept else float("nan")

    def sample(self, seed: int, indices) -> np.ndarray:
        """float32 latents (len(indices), *shape)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), self.prior.dim), dtype=np.float32)
        blocks = idx // STREAM_BLOCK
        for b in np.unique(blocks):
            sel = np.flatnonzero(blocks == b)
            out[sel] = self._block(int(seed), int(b), idx[sel] - b * STREAM_BLOCK)
        return out.reshape((len(idx), *self.shape))

    def _block(self, seed: int, block: int, pos: np.ndarray) -> np.ndarray:
        rng = stream_rng(seed, block)
        result = np.empty((len(pos), self.prior.dim))
        pending = np.arange(len(pos))
        for _ in range(MAX_ROUNDS):
            # The whole round is drawn whatever is requested, so each position's candidates are fixed.
            z = self.prior.draw(rng, STREAM_BLOCK)
            u = rng.random(STREAM_BLOCK)
            cand = z[pos[pending]]
            a = np.asarray(self.acceptance(cand), dtype=np.float64)
            self.drawn += len(pending)
            ok = u[pos[pending]] < a
            result[pending[ok]] = cand[ok]
            pending = pending[~ok]
            if len(pending) == 0:
                self.kept += len(pos)
                return result
        raise GancheckError(f"the calibrator accepted none of {MAX_ROUNDS} candidates for some sample of block {block}; "
                            "it rejects almost every latent: rebuild it with gancheck calibrate (e.g. a smaller --max-draws)")
