"""What an audit measured (:class:`AuditResult`) and the report's figures computed from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from gancheck.maths import mccs, population_stats, worst_mode
from gancheck.run.config import AuditConfig


@dataclass
class AuditResult:
    """Everything an audit measured; :mod:`gancheck.run.directory` turns it into files."""

    config: AuditConfig
    theta: float
    radius: float
    anchor_index: np.ndarray  # (m,) sample indices of the anchors used
    anchor_vectors: np.ndarray  # (m, D)
    m: np.ndarray  # (m,) Eq. 6
    scores: np.ndarray  # (m,) Eq. 7
    neighbors: np.ndarray  # (m,) N_r
    n_samples: int  # |C| actually used
    modes: list[int]  # anchor positions of the distinct modes, strongest first
    nearest: dict  # anchor position -> (sample indices, distances), nearest first
    radii: np.ndarray  # (R,) radii of the radial counts
    radial: np.ndarray  # (m, R) N_radius per anchor
    convergence: list  # dicts of n, mccs_mean, mccs_std, worst_mccs, worst_neighbor_fraction
    no_face: dict = field(default_factory=dict)
    skipped_nan: int = 0
    no_face_samples: list = field(default_factory=list)  # (sample index, image) pairs


def convergence_grid(n: int) -> list[int]:
    """Collection sizes 10^2, 10^2.25, ... below n at which the statistics are recorded (Fig. 2)."""
    return sorted({int(round(10 ** e)) for e in np.arange(2.0, np.log10(max(n, 1)), 0.25)} - {n})


def convergence_row(n: int, m: np.ndarray, neighbors: np.ndarray, form: str) -> dict:
    scores = mccs(m, form)
    mu, sigma = population_stats(scores)
    w = worst_mode(neighbors, scores)
    return {"n": int(n), "mccs_mean": mu, "mccs_std": sigma, "worst_mccs": float(scores[w]), "worst_neighbor_fraction": float(neighbors[w] / n)}


def summary(result: AuditResult) -> dict:
    """The report's figures (the keys other tools read), from an :class:`AuditResult`."""
    mu, sigma = population_stats(result.scores)
    w = worst_mode(result.neighbors, result.scores)
    n = result.n_samples

    def mode(i: int, rank: int) -> dict:
        return {"rank": rank, "sample_index": int(result.anchor_index[i]), "neighbors": int(result.neighbors[i]),
                "neighbor_fraction": float(result.neighbors[i] / n), "mccs": _finite(result.scores[i]), "m": float(result.m[i])}

    worst = mode(w, 1)
    worst.pop("rank")
    return {
        "n_samples": n,
        "n_anchors": int(len(result.anchor_index)),
        "theta": result.theta,
        "radius": result.radius,
        "mccs_form": result.config.mccs_form,
        "mccs_formula": "1/(1-ln m)" if result.config.mccs_form == "paper" else "1/(-log10 m)",
        "protocol": result.config.protocol,
        "seed": result.config.seed,
        "mccs": {"mean": _finite(mu), "std": _finite(sigma), "min": _finite(np.min(result.scores)),
                 "median": _finite(np.median(result.scores)), "max": _finite(np.max(result.scores))},
        "worst_mode": worst,
        "modes": [mode(i, r + 1) for r, i in enumerate(result.modes)],
        "no_face": result.no_face,
        "skipped_nan": result.skipped_nan,
        "config": asdict(result.config),
    }


def _finite(x) -> float | None:
    """JSON has no infinity: the reference MCCS form is infinite at m = 1; that is written as null."""
    x = float(x)
    return x if np.isfinite(x) else None
