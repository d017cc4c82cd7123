"""Algorithm 2 with a region test that works in high dimension.

For each dense mode ``I_m`` the paper accepts latents inside a region of latent space with
probability ``p = N_r0(I_r) / N_r0(I_m)`` and all others always; its region is the convex hull of
the latents whose images lie within ``r0`` of ``I_m``. The hull of ~100 points in 512 dimensions has
measure zero, so a literal hull test never fires (SPEC section 3). The region here is learned from
both sides of the boundary: a ridge-regularised logistic classifier (scikit-learn) on the features ``(z, ||z||^2)``,
so the region ``{z : w.z + q ||z||^2 + b >= 0}`` can be a half-space, a ball or a ball's complement
(the smooth-manifold assumption of the paper, made testable). It is trained on 3/5 of the run's
samples, its ridge penalty and threshold maximise F1 on another 1/5, and its precision and recall
are measured on the last 1/5, which neither step saw.

``--region hull`` offers the paper's literal region, the exact convex hull (as facet inequalities),
for latents small enough for a hull to have volume.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_recall_curve, precision_score, recall_score

from gancheck.calibrators.base import Calibrator, modes_acceptance, register
from gancheck.calibrators.regions import (DEFAULT_MAX_DRAWS, ENSEMBLE, FAMILIES, Decision, Ensemble, PerMode, Screen, fit_family,
                                          labelled_sets, mean_average_precision, mode_probabilities, region_onnx, screened_region, split_of)
from gancheck.errors import GancheckError

#: ridge penalties tried; the one with the best validation F1 is kept (the latent size and the
#: number of dense samples decide how much shrinkage the region needs)
RIDGES = (1000.0, 100.0, 10.0, 1.0)
MAX_TRAIN = 100_000
MIN_MODE_SAMPLES = 20
#: exact convex hulls (scipy's Qhull) only where they have volume and few enough facets
MAX_HULL_DIM = 6
HULL_TOLERANCE = 1e-9
#: the region models whose decision is a stored ONNX graph (gancheck.calibrators.regions)
GRAPHS = (*FAMILIES, "ensemble")
REGIONS = ("auto", *GRAPHS, "linear", "hull")
LEARNED = ("auto", *GRAPHS)


def region_features(z: np.ndarray) -> np.ndarray:
    """(k, dim + 1): the latent and its squared norm."""
    z = np.asarray(z, dtype=np.float64)
    return np.concatenate([z, (z * z).sum(axis=1, keepdims=True)], axis=1)


def region_scores(z: np.ndarray, weights: np.ndarray, quadratic: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(k, M) ``w_m . z + q_m ||z||^2 + b_m``; z lies in mode m's region where this is >= 0."""
    z = np.asarray(z, dtype=np.float64)
    return z @ weights.T + (z * z).sum(axis=1, keepdims=True) * quadratic[None, :] + bias[None, :]


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1.0, start: LogisticRegression | None = None) -> LogisticRegression:
    """Class-balanced, ridge-penalised logistic regression (scikit-learn): minimises
    ``sum_i s_i log(1 + exp(-(2 y_i - 1)(x_i.beta + c))) + ridge/2 |beta|^2`` with ``s_i`` weighting
    both classes equally (the dense class is often rare); the intercept is not shrunk. ``start``: the
    model fitted at a neighbouring ridge, refitted from its solution (warm start)."""
    model = start if start is not None else LogisticRegression(class_weight="balanced", warm_start=True, tol=1e-8, max_iter=1000)
    model.set_params(C=1.0 / ridge)
    return model.fit(x, np.asarray(y, dtype=bool))


def best_f1_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The score threshold (predict dense where score >= t) with the best F1 on (scores, y), placed
    halfway to the next lower score so that it does not sit on a sample."""
    precision, recall, thresholds = precision_recall_curve(y, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
    t = float(thresholds[int(np.argmax(f1))])
    lower = scores[scores < t]
    return t if not len(lower) else float(0.5 * (t + lower.max()))


def precision_recall(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    return (float(precision_score(truth, predicted, zero_division=1.0)), float(recall_score(truth, predicted, zero_division=1.0)))


def fit_region(z: np.ndarray, y: np.ndarray, split: np.ndarray, ridges: tuple[float, ...] = RIDGES) -> tuple[np.ndarray, float, float, dict]:
    """Mode region ``(w, q, b, figures)``: score = w.z + q ||z||^2 + b >= 0 inside, threshold folded
    into ``b``. The ridge and the threshold are chosen on the validation split; figures: precision
    and recall on the held-out split, region share of all samples, the ridge chosen."""
    feats = region_features(z)
    y = np.asarray(y, dtype=bool)
    train = np.flatnonzero(split == 0)
    if len(train) > MAX_TRAIN:  # an even thinning bounds the fit's cost and keeps both classes' shares
        train = train[np.linspace(0, len(train) - 1, MAX_TRAIN).astype(np.int64)]
    mu, sd = feats[train].mean(axis=0), feats[train].std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    val, test = split == 1, split == 2
    best, model = None, None
    x_train = (feats[train] - mu) / sd
    for ridge in ridges:
        model = fit_logistic(x_train, y[train], ridge, start=model)
        beta, c = model.coef_[0].astype(np.float64), float(model.intercept_[0])
        w_all = beta / sd  # back to raw features: score = w_all . feats + b
        b = c - float((beta * mu / sd).sum())
        scores = feats @ w_all + b
        threshold = best_f1_threshold(scores[val], y[val])
        f1 = float(f1_score(y[val], scores[val] >= threshold, zero_division=1.0))
        if best is None or f1 > best[0]:
            best = (f1, ridge, w_all, b, threshold, scores)
    f1, ridge, w_all, b, threshold, scores = best
    inside = scores >= threshold
    precision, recall = precision_recall(inside[test], y[test])
    figures = {"precision": precision, "recall": recall, "held_out": int(test.sum()), "held_out_in_mode": int(y[test].sum()),
               "region_share": float(inside.mean()), "train": int(len(train)), "ridge": ridge, "validation_f1": f1}
    return w_all[:-1], float(w_all[-1]), b - threshold, figures


def hull_facets(points: np.ndarray) -> np.ndarray:
    """(F, dim + 1) facet inequalities ``n.z + c <= 0`` of the points' convex hull (scipy Qhull)."""
    try:
        from scipy.spatial import ConvexHull
    except ImportError:
        raise GancheckError("the exact hull region needs scipy to build it: pip install scipy") from None
    return ConvexHull(np.asarray(points, dtype=np.float64)).equations


def in_hull(z: np.ndarray, facets: np.ndarray) -> np.ndarray:
    """(k,) whether each latent satisfies every facet inequality (boundary counts as inside)."""
    z = np.asarray(z, dtype=np.float64)
    return np.max(z @ facets[:, :-1].T + facets[:, -1][None, :], axis=1) <= HULL_TOLERANCE


def learned_screen(data, region: str) -> Screen:
    """The ``auto`` region's scorer (or one family's, or the ensemble's): per mode, the families
    fitted on the training set (the mode against everything else), the candidate (a family, or the
    ensemble of ``ENSEMBLE``) with the best mean validation average precision kept."""
    families = FAMILIES if region == "auto" else ENSEMBLE if region == "ensemble" else (region,)
    x, near, val, _ = labelled_sets(data)
    M = near.shape[1]
    if not near.any(axis=0).all():
        raise GancheckError("some dense mode has no training sample inside r0; raise --budget or audit with a larger --n")
    fitted = {family: [fit_family(family, x, near[:, m].astype(np.int64), data.seed) for m in range(M)] for family in families}
    candidates = {} if region == "ensemble" else {family: PerMode(models) for family, models in fitted.items()}
    if region in ("auto", "ensemble"):
        candidates["ensemble"] = PerMode([Ensemble([fitted[f][m] for f in ENSEMBLE]) for m in range(M)])
    tried = {name: mean_average_precision(mode_probabilities(m, data.latents[val], M), data.near[val]) for name, m in candidates.items()}
    family = max(tried, key=tried.get)
    model = candidates[family]
    params = {"region": family, "per_mode": "one binary model per mode: the mode against every other latent",
              "selected_from": list(candidates), "selection": "mean validation average precision",
              "validation_average_precision": tried,
              "trained_on": {"run": int((split_of(data.indices) == 0).sum()), "budget": int(len(data.extra_latents))},
              "split": "run sample index mod 5: 0-2 train (with the budget's samples), 3 family and threshold, 4 held out"}
    return Screen(lambda z: mode_probabilities(model, z, M), lambda: region_onnx(model, data.prior.dim), params, probabilities=True)


def check_mode_counts(data, region: str) -> None:
    """Refuse modes too small to learn a region from, or so large there is none to learn."""
    counts = data.mode_counts
    # with a learned region the embedder budget adds training samples near the mode
    usable = counts + data.extra_near.sum(axis=0) if region in LEARNED else counts
    few = [int(m["sample_index"]) for m, c in zip(data.modes, usable) if c < MIN_MODE_SAMPLES]
    if few:
        raise GancheckError(f"dense mode {few[0]} has fewer than {MIN_MODE_SAMPLES} images within r0 in the run; the is method cannot "
                            "learn its region from so few: audit with a larger --n, raise --r0, or use --method rejection")
    most = [int(m["sample_index"]) for m, c in zip(data.modes, counts) if c > data.n - MIN_MODE_SAMPLES]
    if most:
        raise GancheckError(f"dense mode {most[0]} holds nearly every image of the run within r0; there is no region to learn: lower --r0")


@register("is")
class ImportanceCalibrator(Calibrator):
    """Algorithm 2: latents in a dense mode's region are kept with probability p_m."""

    tensors = ()

    @classmethod
    def learns_from_budget(cls, region: str | None = None, **_) -> bool:
        return (region or "auto") in LEARNED

    @classmethod
    def fit(cls, data, region: str | None = None, max_draws: float | None = None, max_frechet: float | None = None, **_) -> tuple[dict, dict, dict]:
        region = region or "auto"
        if region not in REGIONS:
            raise GancheckError(f"--region must be one of {', '.join(REGIONS)} for the is method, got {region!r}")
        max_draws = DEFAULT_MAX_DRAWS if max_draws is None else float(max_draws)
        if not max_draws > 1.0:
            raise GancheckError(f"--max-draws must be above 1 (draws per kept sample), got {max_draws}")
        check_mode_counts(data, region)
        if region in LEARNED:
            return screened_region(data, learned_screen(data, region), max_draws, max_frechet)
        dim = data.prior.dim
        split = split_of(data.indices)
        weights, quadratic, bias, per_mode = np.zeros((len(data.modes), dim)), np.zeros(len(data.modes)), np.zeros(len(data.modes)), []
        for m in range(len(data.modes)):
            weights[m], quadratic[m], bias[m], figures = fit_region(data.latents, data.near[:, m], split)
            per_mode.append(figures)
        tensors = {"region_weights": weights, "region_quadratic": quadratic, "region_bias": bias}
        params = {"region": "linear", "ridges_tried": list(RIDGES), "split": "sample index mod 5: 0-2 train, 3 ridge and threshold, 4 held out"}
        if region == "hull":
            if dim > MAX_HULL_DIM:
                raise GancheckError(f"--region hull needs a latent of at most {MAX_HULL_DIM} values (an exact hull has no volume in "
                                    f"{dim} dimensions, SPEC section 3); use --region linear")
            params["region"] = "hull"
            linear, per_mode = per_mode, []
            for m in range(len(data.modes)):
                # The literal Alg. 2 region: the hull of the training split's dense latents.
                tensors[f"hull_facets_{m}"] = hull_facets(data.latents[data.near[:, m] & (split == 0)])
                inside = in_hull(data.latents, tensors[f"hull_facets_{m}"])
                test = split == 2
                precision, recall = precision_recall(inside[test], data.near[test, m])
                per_mode.append({"precision": precision, "recall": recall, "held_out": int(test.sum()),
                                 "held_out_in_mode": int(data.near[test, m].sum()), "region_share": float(inside.mean()),
                                 "facets": int(len(tensors[f"hull_facets_{m}"]))})
            # The linear region is fitted and stored too, so the two can be compared.
            return params, tensors, {"regions": per_mode, "linear_regions": linear}
        return params, tensors, {"regions": per_mode}

    @classmethod
    def fit_acceptance(cls, data, tensors: dict, params: dict) -> np.ndarray:
        if "decision_onnx" in tensors:
            return Decision(tensors["decision_onnx"]).keep(data.latents)
        return region_acceptance(data.latents, tensors, params.get("region", "linear"), data.mode_acceptance)

    def validate(self) -> None:
        m, dim = len(self.mode_acceptance), self.prior.dim
        if self.header["params"].get("region") in GRAPHS:
            if "decision_onnx" not in self.t or self.t["decision_onnx"].dtype != np.uint8:
                raise self.damaged("its learned region has no decision_onnx graph")
            self._decision = Decision(self.t["decision_onnx"])
            return
        if any(k not in self.t for k in ("region_weights", "region_quadratic", "region_bias")):
            raise self.damaged("region_weights, region_quadratic or region_bias is missing")
        if self.t["region_weights"].shape != (m, dim) or self.t["region_quadratic"].shape != (m,) or self.t["region_bias"].shape != (m,):
            raise self.damaged(f"region tensors do not fit {m} modes of a {dim}-value latent")
        if self.header["params"].get("region", "linear") not in REGIONS:
            raise self.damaged(f"unknown region kind {self.header['params'].get('region')!r}")
        if self.header["params"].get("region") == "hull":
            for i in range(m):
                h = self.t.get(f"hull_facets_{i}")
                if h is None or h.ndim != 2 or h.shape[1] != dim + 1:
                    raise self.damaged(f"hull_facets_{i} is missing or not (F, {dim + 1})")

    def acceptance(self, z: np.ndarray) -> np.ndarray:
        if self.header["params"].get("region") in GRAPHS:
            return self._decision.keep(z)
        return region_acceptance(z, self.t, self.header["params"].get("region", "linear"), self.mode_acceptance)


def region_acceptance(z: np.ndarray, tensors: dict, region: str, mode_acceptance: np.ndarray) -> np.ndarray:
    """(k,) a(z): the smallest p_m among the mode regions z lies in, else 1."""
    if region == "hull":
        inside = np.stack([in_hull(z, tensors[f"hull_facets_{m}"]) for m in range(len(mode_acceptance))], axis=1)
    else:
        inside = region_scores(z, tensors["region_weights"], tensors["region_quadratic"], tensors["region_bias"]) >= 0
    return modes_acceptance(inside, mode_acceptance)
