"""What an audit measured (:class:`AuditResult`) and its convergence rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gancheck.maths import mccs, population_stats, worst_mode
from gancheck.run.config import AuditConfig


@dataclass
class AuditResult:
    """Everything an audit measured, in memory: :func:`gancheck.analysis.report.measured_run` reads it
    as a run, :func:`gancheck.run.directory.write_run` writes it as tables."""

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
