"""Rejection in descriptor space: the exact alternative the paper does not have.

Generate a candidate, embed it, and keep it with probability ``p_m`` when its image lies within
``r0`` of dense mode ``m`` (always otherwise). This thins exactly the images in the dense modes, with
no latent-region approximation, at the cost of running the generator and the embedder at
sampling time for every candidate: the file names the embedder, and sampling needs it installed.
"""

from __future__ import annotations

import json

import numpy as np

from gancheck.calibrators.base import Calibrator, modes_acceptance, register
from gancheck.calibrators.regions import described
from gancheck.errors import GancheckError
from gancheck.maths import pairwise_distance
from gancheck.sources.latents import ANCHOR_OFFSET
from gancheck.defaults import BATCH_SIZE


def keep_axis(vectors: np.ndarray, found: np.ndarray, no_face: str) -> np.ndarray:
    """Descriptor vectors as the audit compares them: with ``no_face == "keep"`` every image without
    a face is the same extra-axis point (see gancheck.engine.pipeline.ShardMeasurer.embedded)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if no_face != "keep":
        return vectors
    return np.concatenate([np.where(found[:, None], vectors, 0.0), (~found)[:, None]], axis=1).astype(np.float32)


def image_acceptance(vectors: np.ndarray, found: np.ndarray, mode_vectors: np.ndarray, r0: float,
                     mode_acceptance: np.ndarray, no_face: str) -> np.ndarray:
    """(k,) a for embedded candidates: the smallest p_m among modes within r0, else 1. An image the
    descriptor cannot describe is never near a mode unless no-face images are kept as one point."""
    v = keep_axis(vectors, found, no_face)
    near = pairwise_distance(v, mode_vectors) <= r0
    if no_face != "keep":
        near &= found[:, None]
    return modes_acceptance(near, mode_acceptance)


#: what identifies an embedder's descriptors in its description (not where it runs)
IDENTITY_KEYS = ("name", "size", "model_sha256", "align", "pack", "crop_size", "sha256")


@register("rejection")
class RejectionCalibrator(Calibrator):
    """Keep a generated image near dense mode m with probability p_m."""

    tensors = ()
    needs_generator = True

    @classmethod
    def fit(cls, data, **_) -> tuple[dict, dict, dict]:
        params = {"no_face": data.no_face, "needs_embedder_at_sampling": True}
        return params, {}, {}

    @classmethod
    def fit_acceptance(cls, data, tensors: dict, params: dict) -> np.ndarray:
        return modes_acceptance(data.near, data.mode_acceptance)

    def validate(self) -> None:
        if not self.embedder.get("spec"):
            raise self.damaged("it does not name the embedder that rejection sampling needs")

    def descriptor_calls_per_candidate(self, latents: np.ndarray) -> float:
        return 1.0

    def check_embedder(self, embedder) -> None:
        """Refuse an embedder that describes differently from the one the file was fitted with (its
        model's hash, input size, alignment): its distances to the modes' anchors would mean nothing."""
        want, have = self.embedder.get("describe") or {}, json.loads(json.dumps(embedder.describe()))
        for key in IDENTITY_KEYS:
            if key in want and want[key] != have.get(key):
                raise GancheckError(f"calibrator {self.path} was fitted with the embedder {self.embedder['spec']!r} whose {key} is {want[key]!r}, but "
                                    f"the one loaded here has {have.get(key)!r}; install the embedder it was fitted with, or re-run gancheck calibrate")

    def keep_described(self, latents: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        vectors, found = described(vectors, self.header["params"].get("no_face", "exclude"))
        return image_acceptance(vectors, found, self.t["mode_vectors"], float(self.header["r0"]), self.mode_acceptance,
                                self.header["params"].get("no_face", "exclude"))

    def _acceptance_for(self, source):
        from embedders import load_embedder

        d = self.embedder
        try:
            embedder = load_embedder(d["spec"], **(d.get("options") or {}))
        except GancheckError as exc:
            raise GancheckError(f"calibrator {self.path} rejects in descriptor space and needs the embedder {d['spec']!r} at sampling time, "
                                f"which failed to load: {exc}") from None
        self.check_embedder(embedder)
        r0, no_face, modes, p = float(self.header["r0"]), self.header["params"].get("no_face", "exclude"), self.t["mode_vectors"], self.mode_acceptance

        def decide(images: np.ndarray) -> np.ndarray:
            vectors, found = embedder.embed(images)
            return image_acceptance(vectors, np.asarray(found, bool), modes, r0, p, no_face)

        return deciding_on_images(self.prior, source, decide)


def deciding_on_images(prior, source, decide):
    """a(z) for a calibrator that decides on the generated image: each candidate latent is generated
    and converted as the audit does, in the source's batches, then ``decide(images) -> (k,)``."""
    # The output format is fixed now, from plain prior draws: the source resolves its own only after
    # its first latents, which this sampler must already decide on.
    probe = prior.sample(0, ANCHOR_OFFSET + np.arange(8)).reshape((8, *source.latent_prior.shape))
    fmt = source.format.resolve(source.generate(probe))
    shape = source.latent_prior.shape
    batch = max(1, int(getattr(source, "batch_size", BATCH_SIZE)))

    def acceptance(z: np.ndarray) -> np.ndarray:
        out = np.empty(len(z))
        for s in range(0, len(z), batch):
            part = np.asarray(z[s : s + batch], dtype=np.float32).reshape((-1, *shape))
            out[s : s + batch] = decide(fmt.convert(source.generate(part)))
        return out

    return acceptance
