"""Every figure against known truth: false alarms, interval coverage, detection limit, diversity, modes.

    python benchmarks/bench_validity.py            # full scale: 200 collapse-free seeds, ... (~20 min on 2 cores)
    python benchmarks/bench_validity.py --quick    # the scale tests/test_validity.py runs in CI
    python benchmarks/bench_validity.py --only null --default-size --null-k 1000,50   # false alarms at |C| = 1e4, |A| = 1000
    python benchmarks/bench_validity.py --only detection --sizes 1e3,1e4,1e5 --detection-seeds 20
    python benchmarks/bench_validity.py --only intervals   # interval coverage over K, weights, two geometries
    python benchmarks/bench_validity.py --only classes     # small |C| per class: coverage, points inside, false flags

Generators are ONNX models with K identities of known shares (gancheck.sources.simulated), audited
through the real pipeline (onnxruntime, pixel or random-projection descriptors, run directories).
Printed: each figure, its truth or nominal level, and the binomial tolerance it must lie within.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gancheck import api  # noqa: E402
from gancheck.analysis import detection  # noqa: E402
from gancheck.maths import mccs  # noqa: E402
from gancheck.run.config import AuditConfig  # noqa: E402
from gancheck.sources import simulated  # noqa: E402
from gancheck.sources.latents import LatentPrior  # noqa: E402

LATENT_DIM = 8
#: Image side: 8 x 8 x 3 keeps thousands of audits affordable on 2 cores; random patterns of 192
#: pixels are still nearly orthogonal (identities at normalised distance > 0.35 even for K = 10^4).
SIZE = 8
#: descriptor name -> (embedder spec builder, theta, r): the thresholds separate the simulated
#: identities (within-identity distances below 0.07 / 0.04, between above 0.4 / 0.2).
DESCRIPTORS = {"pixel": (0.3, 0.2), "projection": (0.3, 0.2), "cone": (0.15, 0.1)}


def descriptor(kind: str, tmp: Path) -> tuple[str, dict, float, float]:
    """(embedder spec, embedder options, theta, r) for ``pixel``, ``projection`` or ``cone``."""
    theta, radius = DESCRIPTORS[kind]
    if kind == "pixel":
        return "pixel", {"size": SIZE}, theta, radius
    path = tmp / f"{kind}.onnx"
    if not path.is_file():
        simulated.build_projection_descriptor(path, size=SIZE, cone=1.5 if kind == "cone" else 0.0)
    return f"onnx:{path}", {"input_size": SIZE}, theta, radius


def generator(tmp: Path, name: str, weights: np.ndarray, nuisance: float = 0.02) -> Path:
    path = tmp / f"{name}.onnx"
    if not path.is_file():
        simulated.build_identity_generator(path, weights, latent_dim=LATENT_DIM, size=SIZE, nuisance=nuisance)
    return path


def audit(gen: Path, n: int, m: int, seed: int, out: Path, kind: str = "pixel") -> dict:
    spec, options, theta, radius = descriptor(kind, out.parent)
    return api.audit(str(gen), n=n, anchors=m, seed=seed, embedder=spec, embedder_options=options, theta=theta,
                     radius=radius, out=out, html=False, overwrite=True)


def truth_mccs(weights: np.ndarray) -> tuple[float, float]:
    """Population (mu, sigma) of Eq. 7-8 for exact-copy identities: an anchor of identity k has
    m = w_k (similarity 1 to its own identity, 0 to every other)."""
    w = np.asarray(weights, dtype=np.float64)
    g = mccs(w)
    mu = float(np.sum(w * g))
    return mu, float(math.sqrt(np.sum(w * (g - mu) ** 2)))


def identity_of_sample(report: dict, index: int, weights: np.ndarray) -> int:
    z = LatentPrior((LATENT_DIM,)).sample(report["seed"], [index])
    return int(simulated.identity_of(z, weights)[0])


def binomial_band(p: float, trials: int, level: float = 0.999) -> tuple[float, float]:
    """Range of a rate of ``trials`` Bernoulli(p) outcomes at two-sided ``level``."""
    lo, hi = stats.binom.interval(level, trials, p)
    return lo / trials, hi / trials


def null_runs(tmp: Path, seeds: int, n: int, m: int, k: int = 50) -> dict:
    """Collapse-free generator (K equal exact-copy identities): verdict, Ripley p, interval coverage."""
    w = np.full(k, 1.0 / k)
    gen = generator(tmp, f"equal{k}-exact", w, nuisance=0.0)
    mu, _ = truth_mccs(w)
    rows = []
    for seed in range(seeds):
        rep = audit(gen, n, m, seed, tmp / "null")
        wm, mc = rep["worst_mode"], rep["mccs"]
        rows.append({"p": rep["spatial"]["p_value"], "collapse": detection.collapse_detected(rep), "identity": rep["spatial"].get("null") == "identity",
                     "mean_in": mc["mean_ci_low"] <= mu <= mc["mean_ci_high"],
                     "share_in": wm["share_ci_low"] <= 1.0 / k <= wm["share_ci_high"],
                     "limit": rep["detection_limit"]})
    p = np.array([r["p"] for r in rows])
    return {"seeds": seeds, "p_values": p, "ks_p": float(stats.kstest(p, "uniform").pvalue),
            "collapse_rate": float(np.mean([r["collapse"] for r in rows])), "reject5_rate": float(np.mean(p <= 0.05)),
            "mean_coverage": float(np.mean([r["mean_in"] for r in rows])), "share_coverage": float(np.mean([r["share_in"] for r in rows])),
            "limit": float(np.median([r["limit"] for r in rows])), "identity_rate": float(np.mean([r["identity"] for r in rows]))}


def zipf_coverage(tmp: Path, seeds: int, n: int, m: int, k: int = 100, zipf: bool = True, kind: str = "pixel") -> dict:
    """Exact-copy identities (Zipf or equal weights): coverage of the mean, std and worst-mode share
    intervals. The descriptors keep distinct identities beyond theta, so an anchor of identity j
    has m = w_j (:func:`truth_mccs`). With equal weights sigma is 0, on the boundary: its
    coverage is reported as None there."""
    w = simulated.zipf_weights(k) if zipf else np.full(k, 1.0 / k)
    gen = generator(tmp, f"{'zipf' if zipf else 'equal'}{k}-exact", w, nuisance=0.0)
    mu, sigma = truth_mccs(w)
    hits = {"mean": [], "std": [], "share": []}
    for seed in range(seeds):
        rep = audit(gen, n, m, seed, tmp / f"cov-{kind}", kind)
        mc, wm = rep["mccs"], rep["worst_mode"]
        share = w[identity_of_sample(rep, wm["sample_index"], w)]
        hits["mean"].append(mc["mean_ci_low"] <= mu <= mc["mean_ci_high"])
        hits["std"].append(mc["std_ci_low"] <= sigma <= mc["std_ci_high"])
        hits["share"].append(wm["share_ci_low"] <= share <= wm["share_ci_high"])
    out = {"seeds": seeds, **{f"{key}_coverage": float(np.mean(v)) for key, v in hits.items()}}
    if not zipf:
        out["std_coverage"] = None
    return out


def detection_curve(tmp: Path, seeds: int, n: int, m: int, factors=(0.5, 0.8, 1.0, 1.25, 1.6), k: int = 10_000) -> dict:
    """Simulated probability of finding a planted mode at multiples of the predicted limit."""
    background = simulated.planted_weights(k, [0.0])[1:]
    base = generator(tmp, f"equal{k}", background)
    reps = [audit(base, n, m, s, tmp / "base") for s in range(3)]
    predicted = float(np.median([r["detection_limit"] for r in reps]))
    found = {}
    for factor in factors:
        f = predicted * factor
        gen = generator(tmp, f"planted{k}-{f:.6f}", simulated.planted_weights(k, [f]))
        hits = 0
        for seed in range(seeds):
            rep = audit(gen, n, m, 1000 + seed, tmp / "planted")
            in_mode = identity_of_sample(rep, rep["worst_mode"]["sample_index"], simulated.planted_weights(k, [f])) == 0
            hits += bool(in_mode and detection.collapse_detected(rep))
        found[factor] = hits / seeds
    return {"n": n, "m": m, "predicted": predicted, "found": found, "seeds": seeds}


def simulated_limit(curve: dict) -> float | None:
    """Share at which the simulated detection probability crosses POWER (log-linear interpolation)."""
    xs = sorted(curve["found"])
    for a, b in zip(xs, xs[1:]):
        pa, pb = curve["found"][a], curve["found"][b]
        if pa < detection.POWER <= pb:
            t = (detection.POWER - pa) / (pb - pa)
            return curve["predicted"] * math.exp(math.log(a) + t * (math.log(b) - math.log(a)))
    return None


def diversity_recovery(tmp: Path, ks, kinds, n: int, m: int, zipf: bool = False) -> list[dict]:
    """Vendi and support size against the truth for K identities (equal or Zipf), per descriptor."""
    out = []
    for k in ks:
        w = simulated.zipf_weights(k) if zipf else np.full(k, 1.0 / k)
        gen = generator(tmp, f"{'zipf' if zipf else 'equal'}{k}", w)
        for kind in kinds:
            div = audit(gen, n, m, 5, tmp / f"div-{kind}", kind)["diversity"]
            out.append({"K": k, "descriptor": kind, "vendi": div["vendi"], "vendi_truth": float(np.exp(-np.sum(w * np.log(w)))),
                        "support": div["support_size"], "support_truth": float(1.0 / np.sum(w * w))})
    return out


def modes_found(tmp: Path, shares, n: int, m: int, seed: int = 2, k: int = 1000) -> dict:
    """Several planted modes of known shares: each listed once, in order, its share in its interval."""
    w = simulated.planted_weights(k, list(shares))
    rep = audit(generator(tmp, "modes", w), n, m, seed, tmp / "modes")
    listed = [identity_of_sample(rep, mode["sample_index"], w) for mode in rep["modes"]]
    top = rep["mode_shares"][: len(shares)]
    return {"identities": listed[: len(shares) + 2], "once": all(listed.count(i) == 1 for i in range(len(shares))),
            "in_order": listed[: len(shares)] == list(range(len(shares))),
            "share_in_interval": [mode["share_ci_low"] <= s <= mode["share_ci_high"] for mode, s in zip(top, shares)],
            "shares": [mode["held_out_fraction"] for mode in top]}


def report_null(tmp: Path, seeds: int, n: int, m: int, k: int) -> None:
    null = null_runs(tmp, seeds, n, m, k)
    lo, hi = binomial_band(0.05, seeds)
    print(f"collapse-free (K={k} equal identities), {seeds} seeds, |C|={n}, |A|={m}: verdict 'collapse' rate "
          f"{null['collapse_rate']:.3f} (nominal {detection.COLLAPSE_ALPHA}, band up to {binomial_band(detection.COLLAPSE_ALPHA, seeds)[1]:.3f}); "
          f"Ripley rejects at 5%: {null['reject5_rate']:.3f} (band {lo:.3f}-{hi:.3f}); KS p of the p-values vs uniform {null['ks_p']:.3f}", flush=True)
    band = binomial_band(0.95, seeds)
    print(f"  coverage of 95% intervals: mean {null['mean_coverage']:.3f}, worst-mode share {null['share_coverage']:.3f} "
          f"(band {band[0]:.3f}-{band[1]:.3f}); median detection limit {null['limit']:.4f}; "
          f"identity-clump null used in {null['identity_rate']:.3f} of seeds", flush=True)


def report_detection(tmp: Path, sizes, seeds: int, m: int) -> None:
    for size in sizes:
        curve = detection_curve(tmp, seeds, size, m, factors=(0.8, 1.25))
        found = curve["found"]
        # The simulated 95% point lies in [0.8x, 1.25x] unless the hits refute it at 5%: more hits at
        # 0.8x than a 95% power allows, or fewer at 1.25x (a point estimate of 19/20 = 0.95 refutes nothing).
        hits = {f: round(v * seeds) for f, v in found.items()}
        within = stats.binom.sf(hits[0.8] - 1, seeds, detection.POWER) > 0.05 and stats.binom.cdf(hits[1.25], seeds, detection.POWER) > 0.05
        lo, hi = binomial_band(detection.POWER, seeds, 0.95)
        print(f"detection |C|={size}, |A|={m}, {seeds} seeds per share: predicted limit {curve['predicted']:.4f}; "
              f"found at 0.8x: {found[0.8]:.3f}, at 1.25x: {found[1.25]:.3f} (a true 95% reads {lo:.3f}-{hi:.3f} in {seeds} seeds) "
              f"-> simulated limit within 1.25x of predicted: {within}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--big", action="store_true", help="also |C| = 1e5 in the detection-limit check (slow)")
    parser.add_argument("--only", default="diversity,modes,detection,null,intervals,zipf,classes", help="comma list of the parts to run")
    parser.add_argument("--default-size", action="store_true", help="collapse-free runs at the audit defaults, |C| = 1e4, |A| = 1000")
    parser.add_argument("--null-k", default="5000,50", help="comma list of K for the collapse-free runs")
    parser.add_argument("--seeds", type=int, default=None, help="seeds for the collapse-free and coverage runs")
    parser.add_argument("--sizes", default=None, help="comma list of |C| for the detection-limit check (e.g. 1e5)")
    parser.add_argument("--detection-seeds", type=int, default=None, help="seeds per planted share in the detection-limit check")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    seeds, n, m = (30, 1000, 300) if args.quick else (200, 2000, 500)
    if args.default_size:
        n, m = AuditConfig().n, AuditConfig().anchors
    seeds = args.seeds or seeds
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for zipf in (False, True) if "diversity" in parts else ():
            for row in diversity_recovery(tmp, (10, 100) if args.quick else (10, 100, 1000), ("pixel", "projection", "cone"), 10_000, 1000, zipf):
                print(f"{'Zipf' if zipf else 'equal'} K={row['K']:>5} {row['descriptor']:>10}: Vendi {row['vendi']:8.1f} "
                      f"(truth {row['vendi_truth']:8.1f}, ratio {row['vendi'] / row['vendi_truth']:.3f}); support {row['support']:8.1f} "
                      f"(truth {row['support_truth']:8.1f}, ratio {row['support'] / row['support_truth']:.3f})", flush=True)
        if "modes" in parts:
            print("modes (planted 8%, 4%, 2% over 1000 equal identities, |C|=1e4, |A|=1000):", modes_found(tmp, [0.08, 0.04, 0.02], 10_000, 1000), flush=True)
        if "detection" in parts:
            sizes = [int(float(v)) for v in args.sizes.split(",")] if args.sizes else (1000, 10_000, 100_000) if args.big else (1000, 10_000)
            report_detection(tmp, sizes, args.detection_seeds or (12 if args.quick else 30), 300)
        # K = 50 << |A|: each identity holds ~10 anchors and is picked whole by the collection: the
        # anchors come in identity clumps and the test uses its identity null (spatial.identity_pvalue).
        for k in (int(v) for v in args.null_k.split(",")) if "null" in parts else ():
            report_null(tmp, seeds, n, m, k)
        if "intervals" in parts:
            report_interval_grid(seeds)
        if "zipf" in parts:
            report_coverage(tmp, seeds // 2, args.quick)
        if "classes" in parts:
            report_classes(seeds)


def simulated_interval_coverage(k: int, zipf: bool, geometry: str, n: int, m: int, seeds: int, theta: float = 0.3) -> dict:
    """Coverage of the mean and std intervals on collections drawn directly (no images): K exact-copy
    identities as orthogonal unit descriptors (``orth``) or packed in a narrow cone where some
    identities lie within theta of each other (``cone``, so one anchor's m sums several identities).
    Runs the report's own interval code (bootstrap, collection_sd, widen) thousands of times in
    the time of a few audits. Truth: m(a) = sum_j w_j s(a, e_j), mu and sigma over the shares."""
    from gancheck.analysis import intervals
    from gancheck.maths import angular_distance, normalise64, similarity

    rng0 = np.random.default_rng(123)
    w = simulated.zipf_weights(k) if zipf else np.full(k, 1.0 / k)
    centres = np.eye(k) if geometry == "orth" else normalise64(normalise64(rng0.normal(size=(k, 16))) + 1.2 * np.eye(16)[0])
    sim = similarity(angular_distance(np.clip(centres @ centres.T, -1, 1)), theta)
    g = mccs(sim @ w)
    mu = float(w @ g)
    sigma = float(np.sqrt(w @ (g - mu) ** 2))
    hits = {"mean": 0, "std": 0}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        ids = rng.choice(k, m, p=w)
        m_hat = sim[ids] @ rng.multinomial(n, w) / n
        scores = mccs(m_hat)
        ci = intervals.bootstrap_mean_std(scores, n_boot=500, seed=seed)
        sd = intervals.collection_sd(centres[ids], m_hat, scores, theta, n, "paper")
        lo, hi = intervals.widen(scores.mean(), ci["mean_low"], ci["mean_high"], sd["mean_sd"], 0.95, sd["mean_bias"])
        s_lo, s_hi = intervals.debias_std(*intervals.widen(scores.std(ddof=1), ci["std_low"], ci["std_high"], sd["std_sd"], 0.95),
                                          scores.std(ddof=1), sd["std_bias"])
        hits["mean"] += lo <= mu <= hi
        hits["std"] += max(s_lo, 0.0) <= sigma <= s_hi
    return {"mean": hits["mean"] / seeds, "std": hits["std"] / seeds, "sigma": sigma}


def report_interval_grid(seeds: int, n: int = 2000, m: int = 500) -> None:
    band = binomial_band(0.95, seeds)
    for geometry in ("orth", "cone"):
        for zipf in (False, True):
            for k in (10, 50, 200):
                cov = simulated_interval_coverage(k, zipf, geometry, n, m, seeds)
                print(f"interval coverage {geometry:>4} {'Zipf' if zipf else 'equal'} K={k:>3}, {seeds} seeds, |C|={n}, |A|={m}: "
                      f"mean {cov['mean']:.3f}, std {cov['std']:.3f} (sigma {cov['sigma']:.4f}) (band {band[0]:.3f}-{band[1]:.3f})", flush=True)


def report_coverage(tmp: Path, seeds: int, quick: bool) -> None:
    """Coverage over K, equal and Zipf weights, two descriptor geometries (pixel; a narrow cone)."""
    band = binomial_band(0.95, seeds)
    grid = [(k, z, kind) for kind, ks in (("pixel", (10, 50) if quick else (10, 50, 200)), ("cone", (50,))) for z in (False, True) for k in ks]
    for k, zipf, kind in grid:
        cov = zipf_coverage(tmp, seeds, 4000, 500, k=k, zipf=zipf, kind=kind)
        std = "n/a (sigma = 0)" if cov["std_coverage"] is None else f"{cov['std_coverage']:.3f}"
        print(f"coverage {'Zipf' if zipf else 'equal'} K={k} {kind}, {seeds} seeds, |C|=4000, |A|=500: mean {cov['mean_coverage']:.3f}, "
              f"std {std}, worst-mode share {cov['share_coverage']:.3f} (band {band[0]:.3f}-{band[1]:.3f})", flush=True)


def class_figures(sim: np.ndarray, w: np.ndarray, n: int, m: int, rng) -> dict:
    """One class audited as the report does it, on a collection drawn directly: the corrected mu,
    its interval, and what :func:`gancheck.analysis.ranking.class_draws` needs."""
    from gancheck.analysis import intervals

    ids = rng.choice(len(w), m, p=w)
    m_hat = sim[ids] @ rng.multinomial(n, w) / n
    scores = mccs(m_hat)
    ci = intervals.bootstrap_mean_std(scores, n_boot=500, seed=int(rng.integers(1 << 30)))
    sd = intervals.collection_sd(np.eye(len(w))[ids], m_hat, scores, 0.3, n, "paper")
    low, high = intervals.widen(scores.mean(), ci["mean_low"], ci["mean_high"], sd["mean_sd"], 0.95, sd["mean_bias"])
    return {"scores": scores, "point": scores.mean() - sd["mean_bias"], "raw": scores.mean(), "low": low, "high": high,
            "bias": sd["mean_bias"], "sd": sd["mean_sd"], "uncorrected": sd["uncorrected_share"]}


def class_validity(n: int, m: int, k: int, seeds: int, classes: int = 8) -> dict:
    """Zipf identities (orthogonal exact copies), ``classes`` identical classes per seed: coverage
    of the generator's mu by each class's corrected interval (and by the raw mean's), points outside
    their interval, and the runs in which :func:`flag_classes` flags any class (nominal 5%)."""
    from gancheck.analysis.ranking import class_draws, flag_classes

    w = simulated.zipf_weights(k)
    sim = np.eye(k)
    mu, _ = truth_mccs(w)
    covered = raw_covered = outside = flagged = 0
    uncorrected = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        rows = [class_figures(sim, w, n, m, rng) for _ in range(classes)]
        for r in rows:
            covered += r["low"] <= mu <= r["high"]
            raw_covered += r["low"] + r["raw"] - r["point"] <= mu <= r["high"] + r["raw"] - r["point"]
            outside += not r["low"] <= r["point"] <= r["high"]
            uncorrected.append(r["uncorrected"])
        draws = class_draws([r["scores"] for r in rows], [r["bias"] for r in rows], [r["sd"] for r in rows], n_draws=500, seed=seed)
        flagged += bool(flag_classes([str(c) for c in range(classes)], np.array([r["point"] for r in rows]), draws))
    total = seeds * classes
    return {"coverage": covered / total, "raw_coverage": raw_covered / total, "outside": outside / total,
            "false_flag_runs": flagged / seeds, "uncorrected_share": float(np.median(uncorrected)), "mu": mu}


def report_classes(seeds: int, m: int = 300) -> None:
    for k in (20, 200):
        for n in (1000, 10_000):
            v = class_validity(n, m, k, seeds)
            print(f"classes: Zipf K={k:>3}, |C|={n:>6} per class, |A|={m}, {seeds} seeds x 8 identical classes: corrected interval covers mu "
                  f"{v['coverage']:.3f} (uncorrected: {v['raw_coverage']:.3f}; anchors left uncorrected {v['uncorrected_share']:.0%}), "
                  f"points outside their interval {v['outside']:.3f}, runs flagging a class {v['false_flag_runs']:.3f} "
                  f"(band {binomial_band(0.05, seeds)[1]:.3f} above 0.05)", flush=True)


if __name__ == "__main__":
    main()
