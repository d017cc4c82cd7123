"""Algorithm 1, made sound: reweight the prior by K-means cell.

The paper samples from ``sum_k w_k N(mu_k, Sigma)`` with ``w_k = 1 / (dense-mode count of cluster
k)``. As printed this divides by zero for every cluster without a dense-mode image, and no choice of
a shared ``Sigma`` makes the equal-weight mixture equal the prior (SPEC section 3). Here the mixture
components are the prior itself restricted to each K-means (Voronoi) cell, ``prior|cell_k``; with
cell masses ``pi_k`` the prior is exactly ``sum_k pi_k prior|cell_k``. Calibration multiplies cell k's
mass by ``a_k`` in (0, 1] and is sampled by keeping a prior draw in cell k with probability ``a_k``:
equal ``a_k`` reproduce the prior exactly, and clusters with no dense image keep ``a_k = 1``.

The weights are the reweighting of cells closest to the prior (smallest KL divergence) that brings
the expected dense-mode share down to a target: an exponential tilt ``a_k = exp(-lam (f_k - min f))``
of the clusters' dense fractions ``f_k`` (the paper's inverse count points the same way). ``lam`` is
at most the smallest value that reaches the target share (an ordinary identity's) and at most what
keeps the expected cost at ``max_draws`` prior draws per kept sample: cells mix dense and ordinary
latents, so reaching the target can cost more than it is worth. Within that range ``lam`` is the
value that lowers the dense share most on samples the cells' fractions were not estimated from;
where no tilt helps there (the fractions are noise), ``lam = 0`` and the prior is left alone.
"""

from __future__ import annotations

import numpy as np

from gancheck.calibrators.base import Calibrator, modes_acceptance, register
from gancheck.calibrators.regions import (DEFAULT_MAX_DRAWS as REGION_MAX_DRAWS, MIXTURE_CANDIDATES, Decision, Screen, fit_mixture,
                                          labelled_sets, mean_average_precision, mixture_onnx, mixture_scores, prior_mixture, screened_region,
                                          split_of)
from gancheck.errors import GancheckError

LAMBDA_MAX = 1e4
DEFAULT_MAX_DRAWS = 3.0
#: default clusters: one per this many fit samples (enough to estimate each cell's dense fraction)
SAMPLES_PER_CLUSTER = 20
MAX_CLUSTERS = 4096
#: lambda values checked on held-out samples: 0 and lam_max * 2^-j, j < LAMBDA_GRID
LAMBDA_GRID = 16


def nearest_cell(z: np.ndarray, centroids: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """(k,) index of the nearest centroid by squared Euclidean distance (ties: the lowest index)."""
    z = np.asarray(z, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    c_sq = (c * c).sum(axis=1)
    out = np.empty(len(z), dtype=np.int64)
    for s in range(0, len(z), chunk):
        part = z[s : s + chunk]
        # ||z - c||^2 = ||z||^2 - 2 z.c + ||c||^2; the first term is the same for every centroid.
        out[s : s + chunk] = np.argmin(c_sq[None, :] - 2.0 * part @ c.T, axis=1)
    return out


def kmeans(latents: np.ndarray, k: int, seed: int) -> np.ndarray:
    """FAISS K-means centroids (k, dim) float64 of the latents (n, dim)."""
    import faiss

    x = np.ascontiguousarray(latents, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], int(k), niter=25, seed=int(seed) % (2**31), verbose=False, min_points_per_centroid=1)
    km.train(x)
    return km.centroids.astype(np.float64)


def cell_fractions(cell: np.ndarray, dense: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster: its share of the samples (prior mass ``pi_k``) and its dense-mode fraction
    ``f_k``. An empty cell has no evidence of dense images: fraction 0, the prior's weight."""
    size = np.bincount(cell, minlength=k).astype(np.float64)
    in_mode = np.bincount(cell, weights=np.asarray(dense, dtype=np.float64), minlength=k)
    return size / max(len(cell), 1), np.where(size > 0, in_mode / np.maximum(size, 1), 0.0)


def held_out_share(accept: np.ndarray, dense: np.ndarray) -> float:
    """Dense share of samples kept with probabilities ``accept`` (per sample)."""
    return float((accept * dense).sum() / accept.sum())


def tilt(fraction: np.ndarray, lam: float) -> np.ndarray:
    """Cell acceptance ``a_k = exp(-lam (f_k - min f))``, in (0, 1] with max 1."""
    f = np.asarray(fraction, dtype=np.float64)
    return np.exp(-lam * (f - f.min()))


def dense_share(mass: np.ndarray, fraction: np.ndarray, accept: np.ndarray) -> float:
    """Expected share of dense-mode images once cell k's mass ``pi_k`` is scaled by ``a_k``."""
    w = mass * accept
    return float((w * fraction).sum() / w.sum())


def expected_draws(mass: np.ndarray, accept: np.ndarray) -> float:
    """Prior draws per kept sample: 1 / E_prior[a]."""
    return float(1.0 / (mass * accept).sum())


def solve_tilt(mass: np.ndarray, fraction: np.ndarray, target_share: float, max_draws: float) -> tuple[float, str]:
    """``(lam, limited_by)``: the smallest lam whose share is at most ``target_share``, capped at the
    largest lam whose expected draws stay within ``max_draws``. Share falls and draws rise with lam."""
    share = lambda lam: dense_share(mass, fraction, tilt(fraction, lam))  # noqa: E731
    draws = lambda lam: expected_draws(mass, tilt(fraction, lam))  # noqa: E731
    if share(0.0) <= target_share:
        return 0.0, "target"
    # The largest lam within the cost cap (draws(0) = 1 <= max_draws).
    lam_cap = LAMBDA_MAX if draws(LAMBDA_MAX) <= max_draws else _bracket(lambda lam: draws(lam) <= max_draws, 0.0, LAMBDA_MAX)[0]
    if share(lam_cap) > target_share:
        return lam_cap, "max_draws"
    # Reachable within the cap: the smallest lam that reaches the target.
    return _bracket(lambda lam: share(lam) > target_share, 0.0, lam_cap)[1], "target"


def _bracket(pred, lo: float, hi: float, steps: int = 100) -> tuple[float, float]:
    """Bisection for a predicate true at ``lo`` and false at ``hi``: the final ``(lo, hi)``, true and
    false sides of the boundary."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if pred(mid) else (lo, mid)
    return lo, hi


KINDS = ("mixture", "cells")
#: prior-drawn training latents a mode's mixture is fitted on, if it has this many (else its perturbations too)
MIN_MODE_DRAWS = 10


def mixture_training_sets(data) -> tuple[list[np.ndarray], np.ndarray]:
    """``(per-mode latents, off-mode latents)`` the mixtures are fitted on: prior draws only (the
    run's training split and the budget's guided draws). The budget's perturbations follow their
    parents, not the prior: on the DCGAN (|C| = 1e4) they lowered the fresh draw's average precision
    from 0.21 to 0.17 and the excess removed at the Fréchet limit from 51% to 45%. A mode with
    fewer than ``MIN_MODE_DRAWS`` prior draws inside keeps its perturbations, which beats no region."""
    x, near, _, _ = labelled_sets(data, prior_draws_only=True)
    x_all, near_all, _, _ = labelled_sets(data)
    points = [x[near[:, m]] if near[:, m].sum() >= MIN_MODE_DRAWS else x_all[near_all[:, m]] for m in range(near.shape[1])]
    few = [int(mode["sample_index"]) for mode, p in zip(data.modes, points) if len(p) < 2]
    if few:
        raise GancheckError(f"dense mode {few[0]} has fewer than 2 training latents within r0 to fit its mixture on; "
                            "raise --budget, audit with a larger --n, or use --method rejection")
    return points, x[~near.any(axis=1)]


def mixture_screen(data) -> Screen:
    """Per mode, a Gaussian mixture of its latents (:func:`mixture_training_sets`) against the
    off-mode latents' mixture or against the prior's own density; the number of components, the
    covariance (diagonal, or full for one component) and the denominator are chosen by mean
    validation average precision of the log density ratio."""
    points, off = mixture_training_sets(data)
    split = split_of(data.indices)
    val = split == 1
    tried, best = {}, None
    for k, covariance in MIXTURE_CANDIDATES:
        inside = [fit_mixture(p, k, data.seed, covariance) for p in points]
        for against, outside in (("off-mode mixture", fit_mixture(off, k, data.seed, covariance)), ("prior", prior_mixture(data.prior))):
            name = f"{k} {covariance} against {against}"
            tried[name] = mean_average_precision(mixture_scores(data.latents[val], inside, outside), data.near[val])
            if best is None or tried[name] > tried[best[0]]:
                best = (name, k, covariance, against, inside, outside)
    _, k, covariance, against, inside, outside = best
    tensors = {}
    for name, mix in [("off", outside)] + [(str(m), mix) for m, mix in enumerate(inside)]:
        tensors.update({f"mixture_{name}_{key}": np.asarray(v, np.float64) for key, v in mix.items()})
    params = {"kind": "mixture", "components": int(k), "covariance": covariance, "against": against, "validation_average_precision": tried,
              "trained_on": {"run": int((split == 0).sum()), "budget_prior_draws": int(data.extra_from_prior.sum())},
              "score": f"log density ratio of the mode's {k}-component {covariance}-covariance Gaussian mixture over the {against}'s density"}
    return Screen(lambda z: mixture_scores(z, inside, outside), lambda: mixture_onnx(inside, outside, data.prior.dim), params, tensors,
                  probabilities=False)


def stored_mixtures(t: dict, modes: int) -> tuple[list[dict], dict]:
    """The mixtures of a calibrator file's tensors: (per-mode mixtures, off-mode mixture)."""
    get = lambda name: {k: t[f"mixture_{name}_{k}"] for k in ("means", "precisions", "log_norm")}  # noqa: E731
    return [get(str(m)) for m in range(modes)], get("off")


@register("gmm")
class GmmCalibrator(Calibrator):
    """Algorithm 1: the prior reweighted by Gaussian mixtures of the modes' latents (``mixture``,
    the default), or per K-means cell (``cells``)."""

    tensors = ()

    @classmethod
    def learns_from_budget(cls, region: str | None = None, clusters: int | None = None, **_) -> bool:
        return (region or ("cells" if clusters else "mixture")) == "mixture"

    @classmethod
    def fit(cls, data, clusters: int | None = None, max_draws: float | None = None, region: str | None = None, max_frechet: float | None = None,
            **_) -> tuple[dict, dict, dict]:
        kind = region or ("cells" if clusters else "mixture")
        if kind not in KINDS:
            raise GancheckError(f"--region must be one of {', '.join(KINDS)} for the gmm method, got {kind!r}")
        if kind == "mixture":
            max_draws = REGION_MAX_DRAWS if max_draws is None else float(max_draws)
            if not max_draws > 1.0:
                raise GancheckError(f"--max-draws must be above 1 (draws per kept sample), got {max_draws}")
            return screened_region(data, mixture_screen(data), max_draws, max_frechet)
        max_draws = DEFAULT_MAX_DRAWS if max_draws is None else max_draws
        n = data.n
        k = int(clusters) if clusters else int(np.clip(n // SAMPLES_PER_CLUSTER, 2, MAX_CLUSTERS))
        if not 2 <= k <= n:
            raise GancheckError(f"--clusters must lie between 2 and the run's {n} samples, got {k}")
        if not max_draws >= 1.0:
            raise GancheckError(f"--max-draws must be at least 1 (draws per kept sample), got {max_draws}")
        centroids = kmeans(data.latents, k, data.seed)  # unsupervised: no dense label is used here
        cell = nearest_cell(data.latents, centroids)
        dense = data.dense
        mass, fraction = cell_fractions(cell, dense, k)
        target = data.reference_count / n
        lam_max, limited_by = solve_tilt(mass, fraction, target, max_draws)
        # Dense fractions of ~20 samples per cell are noisy, and tilting by noise costs draws for
        # nothing. lam is therefore checked on samples the fractions were not estimated from: cells'
        # fractions from the index mod 5 in {0, 1, 2} samples, dense share measured on the others.
        fit_part = data.indices % 5 < 3
        _, fraction_part = cell_fractions(cell[fit_part], dense[fit_part], k)
        grid = np.concatenate([[0.0], lam_max * 2.0 ** -np.arange(LAMBDA_GRID - 1, -1, -1)])
        held_out = [held_out_share(tilt(fraction_part, lam)[cell[~fit_part]], dense[~fit_part]) for lam in grid]
        best = int(np.argmin(held_out))  # the first minimum: the smallest lam that does best
        lam = float(grid[best])
        if lam < lam_max:
            limited_by = "held_out_share" if lam > 0 else "no_held_out_gain"
        accept = tilt(fraction, lam)
        params = {"kind": "cells", "clusters": k, "lambda": lam, "max_draws": float(max_draws), "target_share": target, "limited_by": limited_by}
        tensors = {"centroids": centroids, "cell_acceptance": accept, "cell_mass": mass, "cell_dense_fraction": fraction}
        figures = {"clusters_with_dense_images": int((fraction > 0).sum()), "clusters_downweighted": int((accept < 0.99).sum()),
                   "lambda_cap": lam_max, "held_out_share_at_lambda_0": float(held_out[0]), "held_out_share": float(held_out[best])}
        return params, tensors, figures

    @classmethod
    def fit_acceptance(cls, data, tensors: dict, params: dict) -> np.ndarray:
        if "decision_onnx" in tensors:
            return Decision(tensors["decision_onnx"]).keep(data.latents)
        return tensors["cell_acceptance"][nearest_cell(data.latents, tensors["centroids"])]

    @property
    def kind(self) -> str:
        return self.header["params"].get("kind", "cells")

    def validate(self) -> None:
        if self.kind == "mixture":
            return self._validate_mixture()
        if any(k not in self.t for k in ("centroids", "cell_acceptance", "cell_mass", "cell_dense_fraction")):
            raise self.damaged("a cells calibrator needs centroids, cell_acceptance, cell_mass and cell_dense_fraction")
        c, a = self.t["centroids"], self.t["cell_acceptance"]
        if c.ndim != 2 or c.shape[1] != self.prior.dim or a.shape != (len(c),) or self.t["cell_mass"].shape != a.shape:
            raise self.damaged(f"gmm tensors have shapes centroids {c.shape}, cell_acceptance {a.shape} for a {self.prior.dim}-value latent")
        if not (np.all((a > 0) & (a <= 1))):
            raise self.damaged("a cell acceptance lies outside (0, 1]")

    def _validate_mixture(self) -> None:
        m, dim = len(self.mode_acceptance), self.prior.dim
        try:
            inside, outside = stored_mixtures(self.t, m)
        except KeyError as exc:
            raise self.damaged(f"mixture tensor {exc.args[0]} is missing") from None
        for mix in inside + [outside]:
            if mix["means"].ndim != 2 or mix["means"].shape[1] != dim:
                raise self.damaged(f"a mixture's means are {mix['means'].shape}, not (K, {dim})")
            if mix["precisions"].shape not in (mix["means"].shape, mix["means"].shape + (dim,)):
                raise self.damaged(f"a mixture's precisions are {mix['precisions'].shape}, not (K, {dim}) or (K, {dim}, {dim})")
        if self.t.get("region_thresholds") is None or self.t["region_thresholds"].shape != (m,):
            raise self.damaged(f"region_thresholds is missing or not ({m},)")

    def acceptance(self, z: np.ndarray) -> np.ndarray:
        if self.kind == "mixture":
            # Evaluated from the tensors in float64 on the float32 latent the generator sees; the file's
            # decision_onnx graph computes the same.
            inside, outside = stored_mixtures(self.t, len(self.mode_acceptance))
            scores = mixture_scores(np.asarray(z, np.float32).astype(np.float64), inside, outside)
            return modes_acceptance(scores >= self.t["region_thresholds"][None, :], self.mode_acceptance)
        return self.t["cell_acceptance"][nearest_cell(z, self.t["centroids"])]
