"""Attribute statistics of generated against real images, from the user's own classifier (the
form of Bau et al.'s Fréchet Segmentation Distance, ICCV 2019, with attributes for segment classes).

A classifier maps each image to K scores. ``multiclass``: the scores are one distribution over K
classes (softmax), an image *has* the class of its largest score. ``multilabel``: each score is an
independent probability (sigmoid), an image has every attribute above 0.5. Per attribute: its
frequency among generated and reference images with Wilson intervals, the difference with
Newcombe's hybrid score interval, a two-proportion test with Benjamini-Hochberg correction; and
over all attributes, the Fréchet distance between Gaussians fitted to the per-image probability
vectors (FSD's statistic).
"""

from __future__ import annotations

import numpy as np

from gancheck.analysis.proportions import ALPHA, bh_q_values, newcombe_difference, two_proportion_test, wilson_interval
from gancheck.analysis.diversity import frechet_distance
from gancheck.errors import GancheckError
from gancheck.formatting import format_change, format_number, format_share

KINDS = ("multiclass", "multilabel")


def parse_names(text: str | list[str] | None) -> list[str]:
    """``a,b,c`` (or a list) as attribute names; one-line error when empty or repeated."""
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text or [])]
    if not names or any(not s for s in names):
        raise GancheckError("--attribute-names takes the classifier's output names in order, comma-separated, e.g. glasses,hat,smile")
    repeated = sorted({s for s in names if names.count(s) > 1})
    if repeated:
        raise GancheckError(f"--attribute-names repeats {', '.join(repeated)}; give each output its own name")
    return names


def probabilities(scores: np.ndarray, kind: str, already: bool) -> np.ndarray:
    """(N, K) probabilities from classifier scores: as they are when ``already`` (the model ends in a
    softmax or sigmoid), else softmax (multiclass) or sigmoid (multilabel) of the logits."""
    s = np.asarray(scores, dtype=np.float64)
    if already:
        return s
    if kind == "multiclass":
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-s))


def presence(probs: np.ndarray, kind: str) -> np.ndarray:
    """(N, K) bool: which attributes each image has."""
    if kind == "multiclass":
        return np.eye(probs.shape[1], dtype=bool)[np.argmax(probs, axis=1)]
    return probs > 0.5


def attribute_statistics(reference: np.ndarray, generated: np.ndarray, names: list[str], kind: str = "multiclass",
                         already_probabilities: bool = False, alpha: float = ALPHA) -> dict:
    """Per attribute frequencies and their difference, and the Fréchet attribute distance, from the
    classifier's (N, K) reference and (M, K) generated scores."""
    if kind not in KINDS:
        raise GancheckError(f"--attribute-kind must be one of {', '.join(KINDS)}, got {kind!r}")
    k = reference.shape[1]
    if k != len(names) or generated.shape[1] != k:
        raise GancheckError(f"the classifier returns {generated.shape[1]} scores per image but {len(names)} --attribute-names were given "
                            f"({','.join(names)}); name every output, in order")
    if len(reference) < 2 or len(generated) < 2:
        raise GancheckError("attribute statistics need at least two reference and two generated images")
    p_ref, p_gen = probabilities(reference, kind, already_probabilities), probabilities(generated, kind, already_probabilities)
    c_ref, c_gen = presence(p_ref, kind).sum(axis=0), presence(p_gen, kind).sum(axis=0)
    n_ref, n_gen = len(reference), len(generated)
    _, p = two_proportion_test(c_ref, n_ref, c_gen, n_gen)
    q = bh_q_values(p)
    diff, lo, hi = newcombe_difference(c_gen, n_gen, c_ref, n_ref)
    g_lo, g_hi = wilson_interval(c_gen, n_gen)
    r_lo, r_hi = wilson_interval(c_ref, n_ref)
    rows = [{"attribute": name, "generated": float(c_gen[i] / n_gen), "generated_ci": [float(g_lo[i]), float(g_hi[i])],
             "reference": float(c_ref[i] / n_ref), "reference_ci": [float(r_lo[i]), float(r_hi[i])],
             "difference": float(diff[i]), "difference_ci": [float(lo[i]), float(hi[i])], "q_value": float(q[i]),
             "significant": bool(q[i] < alpha)} for i, name in enumerate(names)]
    return {"kind": kind, "names": list(names), "n_reference": n_ref, "n_generated": n_gen, "alpha": alpha, "attributes": rows,
            "frechet_attribute_distance": frechet_distance(p_ref, p_gen),
            "frechet_definition": "Fréchet distance between Gaussians fitted to the per-image attribute probability vectors (FSD's form)",
            "findings": findings(rows)}


def findings(rows: list[dict]) -> list[str]:
    """One line per significant attribute, most under-produced first: "the generator under-produces X ..."."""
    out = []
    for r in sorted((r for r in rows if r["significant"]), key=lambda r: r["difference"]):
        verb = "under-produces" if r["difference"] < 0 else "over-produces"
        lo, hi = r["difference_ci"]
        out.append(f"the generator {verb} {r['attribute']}: {format_share(r['generated'])} of generated images, {format_share(r['reference'])} of "
                   f"real ones (difference {format_change(r['difference'], share=True)}, 95% CI {format_change(lo, share=True)} to "
                   f"{format_change(hi, share=True)}; q = {format_number(r['q_value'])})")
    return out
