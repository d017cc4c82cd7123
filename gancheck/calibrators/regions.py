"""Learned latent regions of the dense modes, and their decision as a small ONNX graph.

A region model scores a latent ``z`` for each calibrated mode ``m``; ``z`` lies in mode m's region
where ``score_m(z) >= t_m``, and a calibrator keeps it there with probability ``p_m`` (the smallest
over the regions it lies in, 1 elsewhere). Two kinds of scorer:

- ``is`` (Alg. 2): a joint classifier over ``{off-mode, mode 1, ..., mode M}`` chosen among several
  scikit-learn families by held-out average precision: logistic regression (a linear cut),
  histogram gradient-boosted trees, a small MLP, k nearest neighbours. Rare mode labels are weighted
  up (``class_weight="balanced"`` or equivalent sample weights). ``score_m`` is the class
  probability. The fitted model is converted to ONNX by skl2onnx: the calibrator file stores that
  graph (open format, no pickle) and sampling evaluates it with onnxruntime.
- ``gmm`` (Alg. 1): per mode, a diagonal Gaussian mixture fitted to the mode's latents against one
  fitted to the off-mode latents of the same labelled set: ``score_m`` is their log density ratio,
  an estimate of ``log P(mode m | z)`` up to a constant (both sets carry the same sampling bias of
  the descriptor budget, which cancels in the ratio).

Thresholds are chosen on validation samples of the plain prior (the run's own): the largest cut of
the mode's excess share whose thinning of off-mode samples stays within ``MAX_OFF_MODE`` and whose
total cost stays within ``max_draws`` prior draws per kept sample.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, precision_score, recall_score

from gancheck.errors import GancheckError

FAMILIES = ("logistic", "boosting", "mlp", "knn")
#: share of off-mode (plain prior) samples a region may thin: it bounds the distortion away from the modes
MAX_OFF_MODE = 0.10
DEFAULT_MAX_DRAWS = 1.5
MIXTURE_COMPONENTS = (1, 2, 4, 8)
KNN_NEIGHBORS = 15
OPSET = 18
INPUT = "z"
OUTPUT = "keep_probability"


def split_of(indices: np.ndarray) -> np.ndarray:
    """0 train, 1 threshold (validation), 2 held-out test, by sample index mod 5 (3 : 1 : 1)."""
    r = np.asarray(indices) % 5
    return np.where(r < 3, 0, np.where(r == 3, 1, 2))


def labelled_sets(data) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, near_train, validation, test)`` of a FitData: the run's training split plus every
    sample of the descriptor budget (``data.extra_*``) to train on; validation and test are masks
    over the run's own samples, plain prior draws the model never trains on."""
    split = split_of(data.indices)
    x = np.concatenate([data.latents[split == 0], data.extra_latents.reshape(-1, data.latents.shape[1])])
    near = np.concatenate([data.near[split == 0], data.extra_near])
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


def labels_of(near: np.ndarray) -> np.ndarray:
    """(k,) joint label from (k, M) membership: 0 off-mode, else 1 + the first mode the sample is in."""
    near = np.asarray(near, bool)
    return np.where(near.any(axis=1), 1 + np.argmax(near, axis=1), 0)


def mode_probabilities(model, z: np.ndarray, modes: int) -> np.ndarray:
    """(k, M) probability of each mode's class (0 for a class the model never saw)."""
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


def fit_mixture(x: np.ndarray, components: int, seed: int) -> dict:
    """Diagonal Gaussian mixture of ``x`` as tensors: means (K, d), precisions (K, d), log_norm (K,)
    with log_norm_k = log w_k - d/2 log 2 pi + 1/2 sum log precision_k."""
    from sklearn.mixture import GaussianMixture

    x = np.asarray(x, np.float64)
    k = int(max(1, min(components, len(x) // 10)))
    gm = GaussianMixture(k, covariance_type="diag", reg_covar=1e-2, random_state=seed % (2**31), n_init=1, max_iter=200).fit(x)
    prec = 1.0 / gm.covariances_
    log_norm = np.log(gm.weights_) - 0.5 * x.shape[1] * np.log(2 * np.pi) + 0.5 * np.log(prec).sum(axis=1)
    return {"means": gm.means_, "precisions": prec, "log_norm": log_norm}


def mixture_log_density(z: np.ndarray, mix: dict) -> np.ndarray:
    """(k,) log density of the diagonal mixture at float64 latents (k, d)."""
    from scipy.special import logsumexp

    z = np.asarray(z, np.float64)
    m, p = mix["means"], mix["precisions"]
    quad = (z * z) @ p.T - 2.0 * z @ (m * p).T + (m * m * p).sum(axis=1)[None, :]
    return logsumexp(mix["log_norm"][None, :] - 0.5 * quad, axis=1)


def mixture_scores(z: np.ndarray, inside: list[dict], outside: dict) -> np.ndarray:
    """(k, M) log density ratio of each mode's mixture over the off-mode mixture."""
    base = mixture_log_density(z, outside)
    return np.stack([mixture_log_density(z, mix) - base for mix in inside], axis=1)


# -- thresholds and figures -----------------------------------------------------------------------


def choose_threshold(score: np.ndarray, near: np.ndarray, p: float, allowance: float) -> tuple[float, float]:
    """``(t, excess_cut)`` for one mode on validation samples: the threshold that removes most of the
    mode's samples (thinned with probability 1 - p) while the region thins at most ``MAX_OFF_MODE`` of
    the off-mode samples and holds at most ``allowance`` of all samples. +inf (no region) when no
    threshold removes any."""
    order = np.argsort(-score, kind="stable")
    s, y = score[order], near[order].astype(np.float64)
    in_region = np.arange(1, len(s) + 1)
    caught, false = np.cumsum(y), np.cumsum(1 - y)
    ok = (false <= MAX_OFF_MODE * max((1 - y).sum(), 1)) & (in_region <= allowance * len(s))
    # a cut between two equal scores cannot be made
    ok &= np.append(s[1:] < s[:-1], True)
    if not ok.any() or y.sum() == 0:
        return float("inf"), 0.0
    best = int(np.argmax(np.where(ok, caught, -1)))
    if caught[best] == 0:
        return float("inf"), 0.0
    lower = s[best + 1] if best + 1 < len(s) else s[best] - 1.0
    return float(0.5 * (s[best] + lower)), float(caught[best] * (1 - p) / y.sum())


def thresholds_for(scores: np.ndarray, near: np.ndarray, mode_acceptance: np.ndarray, max_draws: float) -> np.ndarray:
    """(M,) thresholds, the cost ``1 - 1/max_draws`` of rejected mass shared equally by the modes."""
    M = near.shape[1]
    rejected = 1.0 - 1.0 / max_draws
    return np.array([choose_threshold(scores[:, m], near[:, m], float(mode_acceptance[m]),
                                      rejected / M / max(1.0 - float(mode_acceptance[m]), 1e-9))[0] for m in range(M)])


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


def mixture_onnx(inside: list[dict], outside: dict, dim: int) -> "onnx.ModelProto":  # noqa: F821
    """Graph computing ``scores`` (N, M) float64, the mixtures' log density ratios, from ``z``."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [helper.make_node("Cast", [INPUT], ["zd"], to=TensorProto.DOUBLE), helper.make_node("Mul", ["zd", "zd"], ["zz"])], []

    def density(mix, name):
        m, p = np.asarray(mix["means"], np.float64), np.asarray(mix["precisions"], np.float64)
        inits.extend([numpy_helper.from_array(p.T.copy(), f"{name}_pt"), numpy_helper.from_array((-2.0 * m * p).T.copy(), f"{name}_mpt"),
                      numpy_helper.from_array(np.asarray(mix["log_norm"], np.float64) - 0.5 * (m * m * p).sum(axis=1), f"{name}_c"),
                      numpy_helper.from_array(np.array(-0.5), f"{name}_half")])
        nodes.extend([helper.make_node("MatMul", ["zz", f"{name}_pt"], [f"{name}_a"]), helper.make_node("MatMul", ["zd", f"{name}_mpt"], [f"{name}_b"]),
                      helper.make_node("Add", [f"{name}_a", f"{name}_b"], [f"{name}_q"]), helper.make_node("Mul", [f"{name}_q", f"{name}_half"], [f"{name}_h"]),
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


def add_decision(model, scores: str, columns: list[int], thresholds: np.ndarray, mode_acceptance: np.ndarray) -> bytes:
    """``model`` (a graph whose output ``scores`` holds per-mode scores in ``columns``) extended to the
    sampler's decision: output ``keep_probability`` (N,) float64 = the smallest p_m among the regions
    z lies in, else 1. Returns the serialised graph."""
    from onnx import TensorProto, checker, helper, numpy_helper

    g = model.graph
    score_type = next(o.type.tensor_type.elem_type for o in g.output if o.name == scores)
    g.initializer.extend([numpy_helper.from_array(np.asarray(columns, np.int64), "gc_columns"),
                          numpy_helper.from_array(np.asarray(thresholds, np.float64), "gc_thresholds"),
                          numpy_helper.from_array(np.asarray(mode_acceptance, np.float64), "gc_p"),
                          numpy_helper.from_array(np.array(1.0), "gc_one"), numpy_helper.from_array(np.array([1], np.int64), "gc_axis")])
    g.node.extend([helper.make_node("Gather", [scores, "gc_columns"], ["gc_s"], axis=1),
                   helper.make_node("Cast", ["gc_s"], ["gc_sd"], to=TensorProto.DOUBLE) if score_type != TensorProto.DOUBLE
                   else helper.make_node("Identity", ["gc_s"], ["gc_sd"]),
                   helper.make_node("GreaterOrEqual", ["gc_sd", "gc_thresholds"], ["gc_in"]),
                   helper.make_node("Where", ["gc_in", "gc_p", "gc_one"], ["gc_a"]),
                   reduce_min(model, "gc_a", "gc_axis", OUTPUT)])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, [None])])
    checker.check_model(model)
    return model.SerializeToString()


def reduce_min(model, data: str, axes: str, out: str):
    """ReduceMin over axis 1 as the model's opset spells it (axes became an input in opset 18)."""
    from onnx import helper

    version = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if version >= 18:
        return helper.make_node("ReduceMin", [data, axes], [out], keepdims=0)
    return helper.make_node("ReduceMin", [data], [out], axes=[1], keepdims=0)


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
