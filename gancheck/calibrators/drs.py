"""Discriminator rejection sampling (Azadi et al., ICLR 2019; phase 3 of the Self-Diagnosing GAN).

For a discriminator D trained against the generator, its logit ``L(x) = log D(x) / (1 - D(x))``
estimates ``log p_data(x) / p_g(x)``; keeping a generated image with probability
``a(x) = min(1, exp(L(x) - M))`` turns ``p_g`` into ``p_data`` where D is right and ``M`` bounds
the logit. ``M`` is the largest logit of the fit samples (exact rejection sampling for them) unless
that would cost more than ``max_draws`` draws per kept sample; then it is lowered until the
expected cost is exactly ``max_draws`` (Azadi et al.'s gamma shift, chosen by cost). Like
``rejection``, the decision is on the generated image: sampling runs the generator and the
discriminator on every candidate, so the file names the discriminator (path and sha256).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gancheck.calibrators.base import Calibrator, register
from gancheck.calibrators.rejection import deciding_on_images
from gancheck.defaults import BATCH_SIZE
from gancheck.errors import GancheckError

DEFAULT_MAX_DRAWS = 3.0


def drs_acceptance(logits: np.ndarray, shift: float) -> np.ndarray:
    """a = min(1, exp(L - M)) for logits L and shift M."""
    return np.exp(np.minimum(np.asarray(logits, dtype=np.float64) - float(shift), 0.0))


def choose_shift(logits: np.ndarray, max_draws: float) -> float:
    """M: the largest logit, or the smaller value at which the mean acceptance is ``1 / max_draws``."""
    from scipy.optimize import brentq

    logits = np.asarray(logits, dtype=np.float64)
    if not max_draws >= 1:
        raise GancheckError(f"--max-draws must be at least 1 (draws per kept sample), got {max_draws}")
    top = float(logits.max())
    target = 1.0 / max_draws
    if drs_acceptance(logits, top).mean() >= target:
        return top
    return float(brentq(lambda m: drs_acceptance(logits, m).mean() - target, float(logits.min()) - 1.0, top, xtol=1e-10))


def load_discriminator(path: str | Path, input_range: str = "-1,1", output: str = "auto", device: str = "auto"):
    from embedders.scorer import ImageScorer

    return ImageScorer(path, input_range=input_range, output=output, device=device)


def generated_logits(source, indices: np.ndarray, scorer, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """The discriminator's logits of the source's images at sample ``indices``."""
    out = np.empty(len(indices))
    for s in range(0, len(indices), batch_size):
        out[s : s + batch_size] = scorer.logits(source.images(indices[s : s + batch_size]))
    return out


@register("drs")
class DRSCalibrator(Calibrator):
    """Keep a generated image with probability min(1, exp(L(x) - M))."""

    tensors = ()
    needs_generator = True

    @classmethod
    def fit(cls, data, discriminator: str | Path | None = None, max_draws: float | None = None, discriminator_range: str = "-1,1",
            discriminator_output: str = "auto", **_) -> tuple[dict, dict, dict]:
        if discriminator is None:
            raise GancheckError("--method drs needs --discriminator D.onnx: a discriminator trained against this generator")
        scorer = load_discriminator(discriminator, discriminator_range or "-1,1", discriminator_output or "auto")
        logits = generated_logits(data.source, np.asarray(data.indices, dtype=np.int64), scorer)
        max_draws = float(DEFAULT_MAX_DRAWS if max_draws is None else max_draws)
        shift = choose_shift(logits, max_draws)
        data.drs_logits = logits  # fit_acceptance reads them instead of generating every image again
        params = {"discriminator": scorer.describe(), "shift": shift, "max_draws": max_draws, "logit_max": float(logits.max()),
                  "limited_by": "max_draws" if shift < logits.max() else None, "needs_discriminator_at_sampling": True}
        quantiles = np.quantile(logits, [0.01, 0.5, 0.99])
        return params, {}, {"fit_logit_quantiles": {"q01": float(quantiles[0]), "q50": float(quantiles[1]), "q99": float(quantiles[2])}}

    @classmethod
    def fit_acceptance(cls, data, tensors: dict, params: dict) -> np.ndarray:
        logits = getattr(data, "drs_logits", None)
        if logits is None:
            d = params["discriminator"]
            logits = generated_logits(data.source, np.asarray(data.indices, dtype=np.int64), load_discriminator(d["path"], d["input_range"], d["output"]))
        return drs_acceptance(logits, params["shift"])

    def validate(self) -> None:
        d = self.header["params"].get("discriminator") or {}
        if not d.get("path") or "shift" not in self.header["params"]:
            raise self.damaged("it does not name the discriminator and the shift M that drs sampling needs")

    def runs_at_sampling(self) -> str:
        return f"the discriminator {self.header['params']['discriminator']['path']!r}"

    def _acceptance_for(self, source):
        from gancheck.files import file_sha256

        d, shift = self.header["params"]["discriminator"], float(self.header["params"]["shift"])
        path = Path(d["path"])
        if not path.is_file() or file_sha256(path) != d["sha256"]:
            raise GancheckError(f"calibrator {self.path} needs its discriminator {path} (sha256 {d['sha256'][:12]}...) at sampling time, "
                                "and that file is missing or changed; put it back or rebuild the calibrator with gancheck calibrate --method drs")
        scorer = load_discriminator(path, d["input_range"], d["output"])
        return deciding_on_images(self.prior, source, lambda images: drs_acceptance(scorer.logits(images), shift))
