"""The settings of one audit, validated at the boundary."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gancheck.errors import GancheckError
from gancheck.maths import MCCS_FORMS
from gancheck.options import default
from gancheck.sources.latents import ANCHOR_OFFSET

NO_FACE_POLICIES = ("exclude", "keep")
NAN_POLICIES = ("stop", "skip")
EXECUTORS = ("local", "ray")
#: independent: anchors drawn apart from C (Eq. 8, A and C disjoint); reference: the published code's
#: protocol, anchors are the first samples of C and each anchor's m counts the anchor itself.
PROTOCOLS = ("independent", "reference")
RADIAL_BINS = 16


@dataclass
class AuditConfig:
    """Settings of one audit's measurement (their defaults and help: :data:`gancheck.options.AUDIT_OPTIONS`).
    ``theta``/``radius`` default to the embedder's own."""

    n: int = default('n')
    anchors: int = default('anchors')
    seed: int = default('seed')
    theta: float | None = default('theta')
    radius: float | None = default('radius')
    mccs_form: str = default('mccs_form')
    protocol: str = default('protocol')
    batch_size: int = default('batch_size')
    chunk_size: int = default('chunk_size')
    backend: str = default('backend')
    top_k: int = default('top_k')
    neighbors_k: int = default('neighbors_k')
    no_face: str = default('no_face')
    save_embeddings: bool = default('save_embeddings')
    shard_size: int = default('shard_size')
    on_nan: str = default('on_nan')
    retries: int = default('retries')
    executor: str = default('executor')
    workers: int = default('workers')
    ray_address: str | None = default('ray_address')
    timeout: float = default('timeout')

    def validate(self) -> None:
        for name in ("n", "anchors", "seed", "batch_size", "chunk_size", "shard_size", "workers", "retries", "top_k", "neighbors_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer())):
                raise GancheckError(f"--{name.replace('_', '-')} must be a whole number, got {value!r}")
        for name in ("theta", "radius", "timeout"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float, np.number)) and np.isfinite(value) and value >= 0):
                raise GancheckError(f"--{name} must be a finite number not below 0, got {value!r}")
        for name in ("theta", "radius"):
            if getattr(self, name) is not None and getattr(self, name) > 1:
                raise GancheckError(f"--{name} is a normalised angular distance (Eq. 4) in [0, 1], got {getattr(self, name)!r}")
        if self.top_k < 1 or self.neighbors_k < 0 or self.seed < 0:
            raise GancheckError(f"--top-k must be at least 1, --seed not negative (got top_k={self.top_k}, seed={self.seed})")
        if self.n < 1 or self.anchors < 2:
            raise GancheckError(f"--n must be at least 1 and --anchors at least 2 (got n={self.n}, anchors={self.anchors})")
        if self.mccs_form not in MCCS_FORMS:
            raise GancheckError(f"--mccs-form must be one of {', '.join(MCCS_FORMS)}, got {self.mccs_form!r}")
        if self.protocol not in PROTOCOLS:
            raise GancheckError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.n > ANCHOR_OFFSET:
            raise GancheckError(f"--n {self.n:,} would reach the anchors' sample indices (from 2^40 = {ANCHOR_OFFSET:,}): the collection "
                                "and the anchors must not overlap (Eq. 8); audit at most 10^12 samples per run")
        if self.protocol == "reference" and self.anchors > self.n:
            raise GancheckError(f"--protocol reference draws the anchors from C: --anchors ({self.anchors}) must not exceed --n ({self.n})")
        if self.no_face not in NO_FACE_POLICIES:
            raise GancheckError(f"--no-face must be one of {', '.join(NO_FACE_POLICIES)}, got {self.no_face!r}")
        if self.on_nan not in NAN_POLICIES:
            raise GancheckError(f"--on-nan must be one of {', '.join(NAN_POLICIES)}, got {self.on_nan!r}")
        if self.executor not in EXECUTORS:
            raise GancheckError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if min(self.batch_size, self.chunk_size, self.shard_size, self.workers) < 1 or self.retries < 0:
            raise GancheckError("--batch-size, --chunk-size, --shard-size and --workers must be positive, --retries not negative")
