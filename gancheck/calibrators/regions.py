"""Learned latent regions of the dense modes, and their decision as a small ONNX graph.

A region model scores a latent ``z`` for each calibrated mode ``m``; ``z`` lies in mode m's region
where ``score_m(z) >= t_m``, and a calibrator keeps it there with probability ``p_m`` (the smallest
over the regions it lies in, 1 elsewhere). Two kinds of scorer:

- ``is`` (Alg. 2): per mode, a binary classifier of the mode against every other latent (dense modes
  can overlap: a sample within r0 of two anchors counts for both), chosen among several
  scikit-learn families by held-out average precision: logistic regression (a linear cut),
  histogram gradient-boosted trees, a small MLP, k nearest neighbours, and the product of the first
  three (``ensemble``). Rare mode labels are weighted up (``class_weight="balanced"`` or equivalent
  sample weights). ``score_m`` is the mode's class probability. The fitted model is converted to ONNX by
  skl2onnx: the calibrator file stores that graph (open format, no pickle) and sampling evaluates
  it with onnxruntime.
- ``gmm`` (Alg. 1): per mode, a Gaussian mixture fitted to the mode's latents (diagonal, or one
  Gaussian with a full Ledoit-Wolf covariance) against either one fitted to the off-mode latents or
  the prior's own density, whichever ranks validation samples better: ``score_m`` is their log
  density ratio. Both mixtures are fitted on prior draws
  only (the run's training split and the budget's guided draws, not its perturbations).

Thresholds are chosen on the run's own samples that no model trained on (:func:`held_apart`): every
region thins the same share of the off-mode samples, as large as the two limits allow: the off-mode
descriptors may move by at most ``MAX_FRECHET_SHIFT`` of the proof's Fréchet noise floor, and the
sampler may cost at most ``max_draws`` prior draws per kept sample. The limit is the proof's own
quality figure, predicted, so no fixed share of thinned samples is assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, precision_score, recall_score

from gancheck.errors import GancheckError
from gancheck.maths import frechet_from_moments, sqrt_psd, weighted_moments

FAMILIES = ("logistic", "boosting", "mlp", "knn")
#: the families whose product (normalised geometric mean of class probabilities) is the ``ensemble``
#: candidate: on the DCGAN's fresh draw (266 in-mode samples of 1e4) it ranked as well as the best
#: family (average precision 0.21 against 0.22 for the MLP, 0.18 logistic, 0.11 boosting), and
#: it does not depend on which family a validation split of ~40 in-mode samples happens to favour
ENSEMBLE = ("logistic", "mlp", "boosting")
#: the off-mode Fréchet distance a region's thinning may add, predicted on samples the model never
#: trained on, as a share of the proof's noise floor: the proof's ratio is then about 1 + this
MAX_FRECHET_SHIFT = 0.35
#: random reorderings of the keep weights that measure the shift estimate's own sampling noise
PERMUTATIONS = 4
#: off-mode thinning shares tried, smallest first (every mode's region thins the same share); steps
#: of 1.6%: with 40 steps (17% each) the chosen share used only 0.26-0.32 of a 0.35 Fréchet limit
THINNING = np.geomspace(1e-3, 0.5, 400)
DEFAULT_MAX_DRAWS = 1.5
#: how the Fréchet limit is shared among several modes' regions: "equal" (the same off-mode share)
#: or "precision" (by each region's validation average precision, :func:`precision_weights`). On the
#: DCGAN's five modes (benchmarks/bench_cascade.py --modes 5, expected on the fresh draw) precision
#: gave is 37.4% [33.7, 41.3] against 38.7% [34.7, 42.7] equal, gmm 38.1% against 37.8%: no gain
ALLOCATION = "equal"
#: the gmm candidates: (components, covariance). A full covariance is fitted for one component only,
#: shrunk by Ledoit-Wolf: ~1000 latents of a mode cannot fit 5,050 values in 100 dimensions
#: unshrunk (fresh average precision 0.07), and a diagonal one misses the mode's tilted axes (on the
#: DCGAN's five modes, 30,000 prior draws: 0.142 diagonal, 0.165 Ledoit-Wolf)
MIXTURE_CANDIDATES = ((1, "diagonal"), (2, "diagonal"), (4, "diagonal"), (8, "diagonal"), (1, "full"))
KNN_NEIGHBORS = 15
OPSET = 18
INPUT = "z"
OUTPUT = "keep_probability"
#: a cascade's decision graph also outputs the per-mode scores and whether to describe the image
SCORES = "screen_scores"
DESCRIBE = "describe"


def split_of(indices: np.ndarray) -> np.ndarray:
    """0 train, 1 threshold (validation), 2 held-out test, by sample index mod 5 (3 : 1 : 1)."""
    r = np.asarray(indices) % 5
    return np.where(r < 3, 0, np.where(r == 3, 1, 2))


def labelled_sets(data, prior_draws_only: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, near_train, validation, test)`` of a FitData: the run's training split plus the
    embedder budget's samples (``data.extra_*``; with ``prior_draws_only`` only its plain prior
    draws, not its perturbations) to train on; validation and test are masks over the run's own
    samples, plain prior draws the model never trains on."""
    split = split_of(data.indices)
    extra = data.extra_from_prior if prior_draws_only else np.ones(len(data.extra_near), bool)
    x = np.concatenate([data.latents[split == 0], data.extra_latents.reshape(-1, data.latents.shape[1])[extra]])
    near = np.concatenate([data.near[split == 0], data.extra_near[extra]])
    return x, near, split == 1, split == 2


# -- the scikit-learn families -------------------------------------------------------------------


def make_model(family: str, seed: int):
    """An unfitted scikit-learn classifier of ``family`` (deterministic given ``seed``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if family == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", C=0.1, max_iter=2000))
    if family == "boosting":
        return HistGradientBoostingClassifier(class_weight="balanced", max_iter=60, learning_rate=0.2, max_leaf_nodes=15, max_bins=63,
                                              early_stopping=False, l2_regularization=1.0, random_state=seed % (2**31))
    if family == "mlp":
        return make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-2, max_iter=200, early_stopping=True,
                                                             n_iter_no_change=10, random_state=seed % (2**31)))
    if family == "knn":
        return KNeighborsClassifier(n_neighbors=KNN_NEIGHBORS)
    raise GancheckError(f"unknown region model family {family!r}; choose one of {', '.join(FAMILIES)}")


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-sample weights giving every class the same total weight (the rare mode labels count)."""
    counts = np.bincount(y)
    return (len(y) / (len(counts) * np.maximum(counts, 1)))[y]


def fit_family(family: str, x: np.ndarray, y: np.ndarray, seed: int):
    """``family`` fitted on latents ``x`` (k, dim) and labels ``y`` (k,) in 0..M (0: off-mode)."""
    from threadpoolctl import threadpool_limits

    model = make_model(family, seed)
    x = np.asarray(x, np.float32)
    if family == "mlp":
        return model.fit(x, y, mlpclassifier__sample_weight=balanced_weights(y))
    if family == "boosting":
        # OpenMP's spinning threads slow the trees down many times on a busy machine; one is enough here.
        with threadpool_limits(1, user_api="openmp"):
            return model.fit(x, y)
    return model.fit(x, y)


#: probabilities are clipped to this before their logarithm (here and in the ensemble's ONNX graph)
PROBABILITY_FLOOR = 1e-9


class Ensemble:
    """Fitted classifiers of the same classes combined as a product of experts: class scores
    ``softmax(mean_i log p_i)``, the normalised geometric mean of their probabilities."""

    def __init__(self, models: list):
        self.models = list(models)
        self.classes_ = self.models[0].classes_

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        from scipy.special import softmax

        logs = [np.log(np.clip(m.predict_proba(z), PROBABILITY_FLOOR, 1.0)) for m in self.models]
        return softmax(np.mean(logs, axis=0), axis=1)


class PerMode:
    """One binary model (a family or an :class:`Ensemble`) per dense mode, each fitted on its own
    mode's label against every other latent. A joint label over overlapping modes gives a sample
    within r0 of two anchors to one of them only: on the DCGAN's five modes (|C| = 1e4) the joint
    classifiers' fresh average precision was 0.09-0.11 and these 0.13-0.15."""

    def __init__(self, models: list):
        self.models = list(models)


def mode_probabilities(model, z: np.ndarray, modes: int) -> np.ndarray:
    """(k, M) probability of each mode's class (0 for a class the model never saw); a
    :class:`PerMode` gives each mode's binary model's probability of its class 1."""
    if isinstance(model, PerMode):
        return np.concatenate([mode_probabilities(m, z, 1) for m in model.models], axis=1)
    proba = model.predict_proba(np.asarray(z, np.float32))
    out = np.zeros((len(z), modes))
    for j, c in enumerate(model.classes_):
        if c > 0:
            out[:, c - 1] = proba[:, j]
    return out


def mean_average_precision(scores: np.ndarray, near: np.ndarray) -> float:
    """Mean over modes of the average precision of ``scores[:, m]`` for ``near[:, m]``."""
    aps = [average_precision_score(near[:, m], scores[:, m]) if near[:, m].any() else 0.0 for m in range(near.shape[1])]
    return float(np.mean(aps))


# -- the Gaussian mixtures of gmm -----------------------------------------------------------------


def fit_mixture(x: np.ndarray, components: int, seed: int, covariance: str = "diagonal") -> dict:
    """Gaussian mixture of ``x`` as tensors: means (K, d), precisions (K, d) diagonal or (K, d, d)
    full, log_norm (K,) with log_norm_k = log w_k - d/2 log 2 pi + 1/2 log det precision_k.
    ``covariance="full"``: one Gaussian, its covariance shrunk by Ledoit-Wolf (scikit-learn)."""
    x = np.asarray(x, np.float64)
    if covariance == "full":
        from sklearn.covariance import LedoitWolf

        lw = LedoitWolf().fit(x)
        log_norm = -0.5 * x.shape[1] * np.log(2 * np.pi) + 0.5 * np.linalg.slogdet(lw.precision_)[1]
        return {"means": lw.location_[None, :], "precisions": lw.precision_[None, :, :], "log_norm": np.array([log_norm])}
    from sklearn.mixture import GaussianMixture

    k = int(max(1, min(components, len(x) // 10)))
    gm = GaussianMixture(k, covariance_type="diag", reg_covar=1e-2, random_state=seed % (2**31), n_init=1, max_iter=200).fit(x)
    prec = 1.0 / gm.covariances_
    log_norm = np.log(gm.weights_) - 0.5 * x.shape[1] * np.log(2 * np.pi) + 0.5 * np.log(prec).sum(axis=1)
    return {"means": gm.means_, "precisions": prec, "log_norm": log_norm}


def prior_mixture(prior) -> dict:
    """The latent prior's own density as a one-component diagonal mixture (the tensors of
    :func:`fit_mixture`): the standard normal; a flat density (precision 0) for the uniform prior;
    the normal renormalised to the box for the truncated normal (no latent is drawn outside it)."""
    from scipy.stats import norm

    d = prior.dim
    if prior.kind == "uniform":
        return {"means": np.zeros((1, d)), "precisions": np.zeros((1, d)), "log_norm": np.array([-d * np.log(2.0 * prior.bound)])}
    log_norm = -0.5 * d * np.log(2 * np.pi)
    if prior.kind == "truncnormal":
        log_norm -= d * np.log(norm.cdf(prior.bound) - norm.cdf(-prior.bound))
    return {"means": np.zeros((1, d)), "precisions": np.ones((1, d)), "log_norm": np.array([log_norm])}


def mixture_log_density(z: np.ndarray, mix: dict) -> np.ndarray:
    """(k,) log density of the mixture (diagonal or full precisions) at float64 latents (k, d)."""
    from scipy.special import logsumexp

    z = np.asarray(z, np.float64)
    m, p = mix["means"], mix["precisions"]
    if p.ndim == 3:
        quad = np.stack([(((z - mk) @ pk) * (z - mk)).sum(axis=1) for mk, pk in zip(m, p)], axis=1)
    else:
        quad = (z * z) @ p.T - 2.0 * z @ (m * p).T + (m * m * p).sum(axis=1)[None, :]
    return logsumexp(mix["log_norm"][None, :] - 0.5 * quad, axis=1)


def mixture_scores(z: np.ndarray, inside: list[dict], outside: dict) -> np.ndarray:
    """(k, M) log density ratio of each mode's mixture over the off-mode mixture."""
    base = mixture_log_density(z, outside)
    return np.stack([mixture_log_density(z, mix) - base for mix in inside], axis=1)


# -- thresholds and figures -----------------------------------------------------------------------


@dataclass
class Screen:
    """A fitted latent scorer: ``scores(z) -> (k, M)`` (z lies in mode m's region where column m is
    at least its threshold), ``graph()`` the same as an ONNX model with output ``scores``, what was
    chosen (``params``), tensors the calibrator file keeps besides the graph, and whether the scores
    are class probabilities."""

    scores: Callable[[np.ndarray], np.ndarray]
    graph: Callable[[], object]
    params: dict
    tensors: dict = field(default_factory=dict)
    probabilities: bool = True


def screened_region(data, screen: Screen, max_draws: float, max_frechet: float | None = None) -> tuple[dict, dict, dict]:
    """A latent method's ``(params, tensors, figures)`` from its fitted ``screen``: thresholds on
    samples no model trained on (:func:`held_apart`), figures on the test split, the decision graph."""
    thresholds, chosen = held_apart(data, screen.scores, max_draws, max_frechet)
    test = split_of(data.indices) == 2
    figures = region_figures(screen.scores(data.latents[test]), data.near[test], thresholds, probabilities=screen.probabilities)
    stored = stored_thresholds(thresholds)
    graph = add_decision(screen.graph(), "scores", stored, data.mode_acceptance)
    params = dict(screen.params, max_draws=float(max_draws))
    return params, dict(screen.tensors, decision_onnx=decision_bytes(graph), region_thresholds=stored), {"regions": figures, "thresholds": chosen}


def stored_thresholds(thresholds: np.ndarray) -> np.ndarray:
    """Thresholds as a file stores them: +-inf as the largest finite float64 (safetensors and ONNX
    initialisers hold finite numbers)."""
    big = np.finfo(np.float64).max
    return np.clip(np.where(np.isfinite(thresholds), thresholds, np.sign(thresholds) * big), -big, big)



def described(vectors: np.ndarray, no_face: str) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors without the no-face axis, found mask)`` of vectors as the audit stores them."""
    vectors = np.asarray(vectors, np.float32)
    if no_face != "keep":
        return vectors, np.ones(len(vectors), dtype=bool)
    return vectors[:, :-1], vectors[:, -1] == 0


def proof_noise_floor(vectors: np.ndarray, indices: np.ndarray) -> float:
    """The Fréchet noise floor the proof will compare with (two independent draws as large as
    ``vectors``), predicted as half the distance between the two halves of ``vectors`` by index
    parity: the estimate's sampling error scales with 1/n1 + 1/n2."""
    even = np.asarray(indices) % 2 == 0
    return 0.5 * frechet_from_moments(*weighted_moments(vectors[even]), *weighted_moments(vectors[~even]))


def frechet_shift(vectors: np.ndarray, keep: np.ndarray, seed: int) -> float:
    """The Fréchet distance that thinning ``vectors`` by ``keep`` adds: the distance between them
    weighted and unweighted, less its mean over random reorderings of the same weights (what thinning
    any samples that much adds through sampling noise alone)."""
    if np.all(keep == keep[0]):
        return 0.0
    mean, cov = weighted_moments(vectors)
    root = sqrt_psd(cov)
    distance = lambda w: frechet_from_moments(mean, cov, *weighted_moments(vectors, w), root_a=root)  # noqa: E731
    rng = np.random.default_rng(seed)
    return distance(keep) - float(np.mean([distance(rng.permutation(keep)) for _ in range(PERMUTATIONS)]))


def cut_at(scores: np.ndarray, fraction: float) -> float:
    """The threshold whose region (score >= t) holds the top ``fraction`` of ``scores``, halfway to
    the next lower score so that it does not sit on a sample (ties stay together)."""
    s = np.sort(scores)[::-1]
    k = int(np.clip(np.ceil(fraction * len(s)), 1, len(s)))
    lower = s[k:][s[k:] < s[k - 1]]
    return float(0.5 * (s[k - 1] + lower[0])) if len(lower) else float(s[-1] - 1.0)


def choose_thresholds(val_scores: np.ndarray, val_near: np.ndarray, off_scores: np.ndarray, off_vectors: np.ndarray,
                      mode_acceptance: np.ndarray, max_draws: float, noise_floor: float, seed: int,
                      max_frechet: float = MAX_FRECHET_SHIFT, weights: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """(M,) region thresholds and the figures that chose them, on samples the model never trained on.

    Mode m's region thins the share ``f * weights[m]`` of the off-mode samples (its threshold is
    that quantile of their scores; ``weights`` default to 1: the same share for every mode); ``f`` is the largest share in ``THINNING`` (found by bisection) for
    which the thinned off-mode descriptors (``off_vectors``, with ``off_scores``) move by at most
    ``max_frechet`` of the proof's noise floor (:func:`frechet_shift`) and the validation samples
    cost at most ``max_draws`` prior draws per kept one; where that share catches every validation
    sample of the modes, the smallest share that still does. A mode whose region then catches none
    of its validation samples gets no region (+inf)."""
    p, M = np.asarray(mode_acceptance, np.float64), val_near.shape[1]
    w = np.ones(M) if weights is None else np.asarray(weights, np.float64)

    def cuts(f: float) -> np.ndarray:
        return np.array([cut_at(off_scores[:, m], min(1.0, f * w[m])) for m in range(M)])

    def at(f: float) -> dict:
        t = cuts(f)
        keep_off = np.where(off_scores >= t, p, 1.0).min(axis=1)
        shift = frechet_shift(off_vectors, keep_off, seed) / noise_floor if noise_floor > 0 else 0.0
        draws = 1.0 / np.where(val_scores >= t, p, 1.0).min(axis=1).mean()
        limit = "max_draws" if draws > max_draws else "frechet" if shift > max_frechet else None
        return {"thresholds": t, "off_mode_thinning": float(f), "frechet_shift": float(shift), "draws": float(draws), "limited_by": limit}

    # Shift and cost grow with the thinning: bisection for the last share of THINNING within both limits.
    lo, hi, tried = -1, len(THINNING), {}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        tried[mid] = at(float(THINNING[mid]))
        lo, hi = (mid, hi) if tried[mid]["limited_by"] is None else (lo, mid)
    limited_by = tried[hi]["limited_by"] if hi < len(THINNING) else "largest share tried"

    def catches_all(i: int) -> bool:
        return int((val_near & (val_scores >= cuts(float(THINNING[i])))).sum()) == int(val_near.sum())

    if lo >= 0 and catches_all(lo):  # all caught: the smallest share that does so, more thins for nothing
        lo, limited_by = next(i for i in range(lo + 1) if catches_all(i)), "every validation sample of the modes caught"
        tried[lo] = tried.get(lo) or at(float(THINNING[lo]))
    best = tried[lo] if lo >= 0 else {"thresholds": np.full(M, np.inf), "off_mode_thinning": 0.0, "frechet_shift": 0.0, "draws": 1.0}
    best = dict(best, limited_by=limited_by)
    inside = val_scores >= best["thresholds"]
    caught = (inside & val_near).sum(axis=0)
    thresholds = np.where(caught > 0, best["thresholds"], np.inf)
    cut = caught * (1.0 - p) / np.maximum(val_near.sum(axis=0), 1)
    figures = {k: v for k, v in best.items() if k != "thresholds"}
    figures.update(validation_excess_cut=[float(c) for c in cut], max_frechet_shift=float(max_frechet), noise_floor=float(noise_floor),
                   off_mode_thinning_weights=[float(x) for x in w],
                   rule="largest off-mode thinning (mode m's share: the thinning times its weight) whose predicted Fréchet shift and "
                        "cost stay within their limits")
    return thresholds, figures


def held_apart(data, scores_of, max_draws: float, max_frechet: float | None = None) -> tuple[np.ndarray, dict]:
    """Thresholds for a fitted score function ``scores_of(latents) -> (k, M)`` on the run's samples
    the model never trained on: validation samples count each mode's catch and the cost; the
    off-mode samples of validation and test measure the descriptor shift (:func:`choose_thresholds`)."""
    split = split_of(data.indices)
    apart = split >= 1
    vectors, found = described(data.vectors, data.no_face)
    off = found & ~data.near.any(axis=1)
    floor = proof_noise_floor(vectors[off], data.indices[off])
    scores = scores_of(data.latents[apart])  # once, for both uses
    val, ev = split[apart] == 1, off[apart]
    weights = precision_weights(scores[val], data.near[apart][val]) if ALLOCATION == "precision" else None
    return choose_thresholds(scores[val], data.near[apart][val], scores[ev], vectors[apart][ev], data.mode_acceptance, max_draws, floor,
                             data.seed, MAX_FRECHET_SHIFT if max_frechet is None else max_frechet, weights)


def precision_weights(scores: np.ndarray, near: np.ndarray) -> np.ndarray:
    """(M,) each mode's share of the Fréchet limit: its region's validation average precision over
    the modes' mean (a precise region thins fewer look-alikes per in-mode latent it catches)."""
    ap = np.array([average_precision_score(near[:, m], scores[:, m]) if near[:, m].any() else 0.0 for m in range(near.shape[1])])
    return ap / ap.mean() if ap.mean() > 0 else np.ones(len(ap))


def region_figures(scores: np.ndarray, near: np.ndarray, thresholds: np.ndarray, probabilities: bool) -> list[dict]:
    """Per mode on held-out prior samples: precision and recall of the region, its share, and (for
    class probabilities) the Brier score and mean predicted vs observed rate (calibration)."""
    out = []
    for m in range(near.shape[1]):
        inside, y = scores[:, m] >= thresholds[m], near[:, m]
        f = {"precision": float(precision_score(y, inside, zero_division=1.0)), "recall": float(recall_score(y, inside, zero_division=1.0)),
             "held_out": int(len(y)), "held_out_in_mode": int(y.sum()), "region_share": float(inside.mean()),
             "average_precision": float(average_precision_score(y, scores[:, m])) if y.any() else None}
        if probabilities:
            f["brier"] = float(brier_score_loss(y, np.clip(scores[:, m], 0, 1)))
            f["mean_predicted"], f["observed_rate"] = float(scores[:, m].mean()), float(y.mean())
        out.append(f)
    return out


# -- the decision as ONNX -------------------------------------------------------------------------


def sklearn_onnx(model, dim: int) -> "onnx.ModelProto":  # noqa: F821
    """The fitted classifier as ONNX (skl2onnx): input ``z`` float32 (N, dim), output ``probabilities``."""
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError:
        raise GancheckError("learned latent regions are stored as ONNX and need skl2onnx to build: pip install skl2onnx") from None
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    return to_onnx(model, initial_types=[(INPUT, FloatTensorType([None, dim]))], options={type(final): {"zipmap": False}},
                   target_opset={"": OPSET, "ai.onnx.ml": 3})


def merged(parts: list, tag: str) -> tuple[list, list, list]:
    """``(nodes, initializers, opset imports)`` of ONNX graphs ``parts`` side by side, all fed the same
    ``z``: part i's names are prefixed ``{tag}{i}_`` (its output ``probabilities`` becomes
    ``{tag}{i}_probabilities``)."""
    from onnx import compose, helper

    nodes, inits, opsets = [], [], {}
    for i, part in enumerate(parts):
        part = compose.add_prefix(part, f"{tag}{i}_")
        nodes.append(helper.make_node("Identity", [INPUT], [f"{tag}{i}_{INPUT}"]))
        nodes.extend(part.graph.node)
        inits.extend(part.graph.initializer)
        for o in part.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    return nodes, inits, [helper.make_opsetid(d, v) for d, v in opsets.items()]


def ensemble_onnx(ensemble: Ensemble, dim: int) -> "onnx.ModelProto":  # noqa: F821
    """The ensemble as one ONNX graph: each member's skl2onnx graph fed the same ``z``, their clipped
    log probabilities averaged, softmax over classes: ``probabilities``."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, opsets = merged([sklearn_onnx(m, dim) for m in ensemble.models], "m")
    inits += [numpy_helper.from_array(np.array(PROBABILITY_FLOOR, np.float32), "e_floor"), numpy_helper.from_array(np.array(1.0, np.float32), "e_one"),
              numpy_helper.from_array(np.array(1.0 / len(ensemble.models), np.float32), "e_share")]
    for i in range(len(ensemble.models)):
        nodes.append(helper.make_node("Clip", [f"m{i}_probabilities", "e_floor", "e_one"], [f"e_clip{i}"]))
        nodes.append(helper.make_node("Log", [f"e_clip{i}"], [f"e_log{i}"]))
    nodes.append(helper.make_node("Sum", [f"e_log{i}" for i in range(len(ensemble.models))], ["e_sum"]))
    nodes.append(helper.make_node("Mul", ["e_sum", "e_share"], ["e_mean"]))
    nodes.append(helper.make_node("Softmax", ["e_mean"], ["probabilities"], axis=1))
    graph = helper.make_graph(nodes, "gancheck_ensemble", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, dim])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(ensemble.classes_)])], inits)
    return helper.make_model(graph, opset_imports=opsets)


def region_onnx(model, dim: int) -> "onnx.ModelProto":  # noqa: F821
    """A fitted family or ensemble as ONNX with output ``probabilities``; a :class:`PerMode` as one
    graph with output ``scores`` (N, M), each mode's binary model's probability of its class 1."""
    from onnx import TensorProto, helper, numpy_helper

    if isinstance(model, Ensemble):
        return ensemble_onnx(model, dim)
    if not isinstance(model, PerMode):
        return sklearn_onnx(model, dim)
    nodes, inits, opsets = merged([region_onnx(m, dim) for m in model.models], "r")
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "r_class1"))
    nodes += [helper.make_node("Gather", [f"r{i}_probabilities", "r_class1"], [f"r{i}_p"], axis=1) for i in range(len(model.models))]
    nodes.append(helper.make_node("Concat", [f"r{i}_p" for i in range(len(model.models))], ["scores"], axis=1))
    graph = helper.make_graph(nodes, "gancheck_regions", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, dim])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, len(model.models)])], inits)
    return helper.make_model(graph, opset_imports=opsets)


def mixture_onnx(inside: list[dict], outside: dict, dim: int) -> "onnx.ModelProto":  # noqa: F821
    """Graph computing ``scores`` (N, M) float64, the mixtures' log density ratios, from ``z``."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [helper.make_node("Cast", [INPUT], ["zd"], to=TensorProto.DOUBLE), helper.make_node("Mul", ["zd", "zd"], ["zz"])], []

    def quadratic(m, p, name):
        """``(z - m_k)' P_k (z - m_k)`` (N, K) and the constant part of the log density."""
        if p.ndim == 3:
            inits.append(numpy_helper.from_array(np.ones((p.shape[1], 1)), f"{name}_ones"))
            for k in range(len(m)):
                inits.extend([numpy_helper.from_array(m[k], f"{name}_m{k}"), numpy_helper.from_array(p[k], f"{name}_p{k}")])
                nodes.extend([helper.make_node("Sub", ["zd", f"{name}_m{k}"], [f"{name}_y{k}"]),
                              helper.make_node("MatMul", [f"{name}_y{k}", f"{name}_p{k}"], [f"{name}_w{k}"]),
                              helper.make_node("Mul", [f"{name}_w{k}", f"{name}_y{k}"], [f"{name}_s{k}"]),
                              helper.make_node("MatMul", [f"{name}_s{k}", f"{name}_ones"], [f"{name}_q{k}"])])
            nodes.append(helper.make_node("Concat", [f"{name}_q{k}" for k in range(len(m))], [f"{name}_q"], axis=1))
            return 0.0
        inits.extend([numpy_helper.from_array(p.T.copy(), f"{name}_pt"), numpy_helper.from_array((-2.0 * m * p).T.copy(), f"{name}_mpt")])
        nodes.extend([helper.make_node("MatMul", ["zz", f"{name}_pt"], [f"{name}_a"]), helper.make_node("MatMul", ["zd", f"{name}_mpt"], [f"{name}_b"]),
                      helper.make_node("Add", [f"{name}_a", f"{name}_b"], [f"{name}_q"])])
        return (m * m * p).sum(axis=1)

    def density(mix, name):
        m, p = np.asarray(mix["means"], np.float64), np.asarray(mix["precisions"], np.float64)
        constant = quadratic(m, p, name)
        inits.extend([numpy_helper.from_array(np.asarray(mix["log_norm"], np.float64) - 0.5 * constant, f"{name}_c"),
                      numpy_helper.from_array(np.array(-0.5), f"{name}_half")])
        nodes.extend([helper.make_node("Mul", [f"{name}_q", f"{name}_half"], [f"{name}_h"]),
                      helper.make_node("Add", [f"{name}_h", f"{name}_c"], [f"{name}_l"]),
                      helper.make_node("ReduceLogSumExp", [f"{name}_l", "axis1"], [f"{name}_lse"], keepdims=1)])
        return f"{name}_lse"

    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    base = density(outside, "out")
    for m, mix in enumerate(inside):
        nodes.append(helper.make_node("Sub", [density(mix, f"in{m}"), base], [f"score{m}"]))
    nodes.append(helper.make_node("Concat", [f"score{m}" for m in range(len(inside))], ["scores"], axis=1))
    graph = helper.make_graph(nodes, "gancheck_mixture_scores", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, dim])],
                              [helper.make_tensor_value_info("scores", TensorProto.DOUBLE, [None, len(inside)])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def add_decision(model, scores: str, thresholds: np.ndarray, mode_acceptance: np.ndarray, describe: np.ndarray | None = None) -> bytes:
    """``model`` (a graph whose output ``scores`` holds the per-mode scores) extended to the
    sampler's decision: output ``keep_probability`` (N,) float64 = the smallest p_m among the regions
    z lies in, else 1. With ``describe`` (per-mode thresholds of a cascade), two more outputs: the
    ``scores`` (N, M) float64 and ``describe`` (N,) bool, true where some score reaches its describe
    threshold (the image must be described). Returns the serialised graph."""
    from onnx import TensorProto, checker, helper, numpy_helper

    g = model.graph
    score_type = next(o.type.tensor_type.elem_type for o in g.output if o.name == scores)
    g.initializer.extend([numpy_helper.from_array(np.asarray(thresholds, np.float64), "gc_thresholds"),
                          numpy_helper.from_array(np.asarray(mode_acceptance, np.float64), "gc_p"),
                          numpy_helper.from_array(np.array(1.0), "gc_one"), numpy_helper.from_array(np.array([1], np.int64), "gc_axis")])
    g.node.extend([helper.make_node("Cast", [scores], ["gc_sd"], to=TensorProto.DOUBLE) if score_type != TensorProto.DOUBLE
                   else helper.make_node("Identity", [scores], ["gc_sd"]),
                   helper.make_node("GreaterOrEqual", ["gc_sd", "gc_thresholds"], ["gc_in"]),
                   helper.make_node("Where", ["gc_in", "gc_p", "gc_one"], ["gc_a"]),
                   reduce_min(model, "gc_a", "gc_axis", OUTPUT)])
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, [None])]
    if describe is not None:
        g.initializer.append(numpy_helper.from_array(np.asarray(describe, np.float64), "gc_describe"))
        g.node.extend([helper.make_node("Identity", ["gc_sd"], [SCORES]),
                       helper.make_node("GreaterOrEqual", ["gc_sd", "gc_describe"], ["gc_doubt"]),
                       helper.make_node("Cast", ["gc_doubt"], ["gc_doubt_d"], to=TensorProto.DOUBLE),
                       reduce_max(model, "gc_doubt_d", "gc_axis", "gc_any"),
                       helper.make_node("Cast", ["gc_any"], [DESCRIBE], to=TensorProto.BOOL)])
        outputs += [helper.make_tensor_value_info(SCORES, TensorProto.DOUBLE, [None, len(thresholds)]),
                    helper.make_tensor_value_info(DESCRIBE, TensorProto.BOOL, [None])]
    del g.output[:]
    g.output.extend(outputs)
    checker.check_model(model)
    return model.SerializeToString()


def reduce_min(model, data: str, axes: str, out: str, op: str = "ReduceMin"):
    """ReduceMin (or ``op``) over axis 1 as the model's opset spells it (axes became an input in opset 18)."""
    from onnx import helper

    version = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if version >= 18:
        return helper.make_node(op, [data, axes], [out], keepdims=0)
    return helper.make_node(op, [data], [out], axes=[1], keepdims=0)


def reduce_max(model, data: str, axes: str, out: str):
    return reduce_min(model, data, axes, out, op="ReduceMax")


def decision_bytes(graph: bytes) -> np.ndarray:
    """The serialised graph as the uint8 tensor stored in a calibrator file."""
    return np.frombuffer(graph, dtype=np.uint8).copy()


class Decision:
    """The stored decision graph, evaluated with onnxruntime (CPU): ``keep(z)`` -> (k,) float64."""

    def __init__(self, graph: np.ndarray):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(np.asarray(graph, np.uint8).tobytes(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a graph it cannot load
            raise GancheckError(f"the calibrator's decision graph does not load ({str(exc).splitlines()[0][:120]}); re-run gancheck calibrate") from None

    def keep(self, z: np.ndarray) -> np.ndarray:
        z = np.ascontiguousarray(np.asarray(z).reshape(len(z), -1), dtype=np.float32)
        if len(z) == 0:
            return np.zeros(0)
        return np.asarray(self.session.run([OUTPUT], {INPUT: z})[0], np.float64)

    def outputs(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A cascade's graph: ``(keep_probability (k,), scores (k, M), describe (k,) bool)``."""
        z = np.ascontiguousarray(np.asarray(z).reshape(len(z), -1), dtype=np.float32)
        keep, scores, describe = self.session.run([OUTPUT, SCORES, DESCRIBE], {INPUT: z})
        return np.asarray(keep, np.float64), np.asarray(scores, np.float64), np.asarray(describe, bool)
