"""Everything computed from a finished run directory: confidence intervals, diversity, the Ripley
test, the sampling check and reference-set metrics, merged into report.json. Pure data out: the
pictures are :mod:`gancheck.render`'s."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Sequence
from pathlib import Path

import numpy as np

from gancheck.analysis import degenerate, detection, diversity, intervals, spatial
from embedders import load_embedder
from gancheck.analysis.gates import evaluate
from gancheck.analysis.verdict import SETTLED_CHANGE, with_verdict
from gancheck.formatting import format_share
from gancheck.errors import GancheckError
from gancheck.maths import population_stats, worst_mode
from gancheck.run.result import AuditResult
from gancheck.run.directory import load_report
from gancheck.sources.folder import FolderSource
from gancheck.defaults import BATCH_SIZE

#: Bootstrap resamples and Monte Carlo simulations behind the report's intervals and test.
N_BOOT = 2000
N_SIMS = 999
CI_LEVEL = 0.95
#: How the Ripley p-value was computed, by null (gancheck.analysis.spatial.ripley_test).
RIPLEY_METHODS = {
    "anchor": ("Ripley K of the worst mode among held-out anchors vs Monte Carlo null of a random anchor; global extreme-rank test, "
               "ties broken at random (seeded)"),
    "identity": ("the anchors come in identity clumps, so the worst mode is a whole identity: its held-out anchors within r vs "
                 "Binomial(|A|, random-anchor rate) given at least one anchor, minus one; ties broken at random (seeded)"),
}
#: Nearest neighbours per image set in precision/recall/density/coverage (Naeem et al. use 5).
PRDC_K = 5
#: At most this many reference images are embedded (a seeded random subset beyond it).
MAX_REFERENCE = 10_000
#: Anchors whose MCCS are drawn as points over the box plots (the paper shows 100).
BOX_POINTS = 100


@dataclass
class RunData:
    """The run directory's tables as arrays (m anchors, D descriptor dimensions, R radii)."""

    path: Path
    report: dict
    manifest: dict
    anchor_index: np.ndarray  # (m,) sample indices
    embeddings: np.ndarray  # (m, D) float32 unit vectors
    mccs: np.ndarray  # (m,) Eq. 7 (inf where the reference form is infinite)
    m: np.ndarray | None  # (m,) Eq. 6, or None (older runs)
    neighbors: np.ndarray  # (m,) N_r
    radial: np.ndarray | None  # (m, R) counts within report["radial_radii"], or None (older runs)
    convergence: dict | None  # column -> (K,) array, or None
    nearest: dict  # anchor sample index -> (sample indices, distances), nearest first

    @property
    def worst(self) -> int:
        """Position of the worst mode (Eq. 9) among the anchors."""
        hits = np.flatnonzero(self.anchor_index == self.report["worst_mode"]["sample_index"])
        if not len(hits):
            raise GancheckError(f"{self.path}: the worst mode is not among anchors.parquet's anchors; the run directory is inconsistent, re-run the audit")
        return int(hits[0])


def _vectors(table, name: str) -> np.ndarray:
    col = table.column(name).combine_chunks()
    return np.asarray(col.flatten()).reshape(len(table), -1)


def load_run(run_dir: str | Path) -> RunData:
    """Read a finished run directory; a missing or damaged file is a :class:`GancheckError`."""
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    report = load_report(run_dir)
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise GancheckError(f"{run_dir}/manifest.json is missing or damaged; re-run the audit") from None
    try:
        anchors = pq.read_table(run_dir / "anchors.parquet")
        neighbors = pq.read_table(run_dir / "neighbors.parquet").to_pydict() if (run_dir / "neighbors.parquet").is_file() else None
        conv = pq.read_table(run_dir / "convergence.parquet").to_pydict() if (run_dir / "convergence.parquet").is_file() else None
    except OSError as exc:
        raise GancheckError(f"cannot read the tables in {run_dir} ({exc}); re-run the audit") from None
    nearest: dict = {}
    if neighbors:
        rows = sorted(zip(neighbors["anchor_index"], neighbors["rank"], neighbors["sample_index"], neighbors["distance"]))
        for a, _, s, d in rows:
            nearest.setdefault(a, ([], []))
            nearest[a][0].append(s)
            nearest[a][1].append(d)
        nearest = {a: (np.asarray(s, dtype=np.int64), np.asarray(d)) for a, (s, d) in nearest.items()}
    mccs = anchors.column("mccs").to_numpy(zero_copy_only=False).astype(np.float64)
    return RunData(
        path=run_dir, report=report, manifest=manifest,
        anchor_index=anchors.column("sample_index").to_numpy(), embeddings=_vectors(anchors, "embedding").astype(np.float32),
        mccs=np.where(np.isnan(mccs), np.inf, mccs),
        m=anchors.column("m").to_numpy().astype(np.float64) if "m" in anchors.column_names else None, neighbors=anchors.column("neighbors").to_numpy(),
        radial=_vectors(anchors, "radial_counts") if "radial_counts" in anchors.column_names else None,
        convergence={k: np.asarray(v, dtype=np.float64) for k, v in conv.items()} if conv else None,
        nearest=nearest,
    )


def measured_run(result: AuditResult, manifest: dict, path: Path | None = None, calibration: dict | None = None) -> RunData:
    """The run an audit has just measured, as :func:`load_run` would read it back from its files,
    without reading them: the same arrays, the same report figures."""
    scores = np.asarray(result.scores, dtype=np.float64)
    conv = {k: np.asarray([row[k] for row in result.convergence], dtype=np.float64) for k in result.convergence[0]}
    nearest = {int(result.anchor_index[a]): (np.asarray(s, dtype=np.int64), np.asarray(d, dtype=np.float64))
               for a, (s, d) in sorted(result.nearest.items(), key=lambda item: int(result.anchor_index[item[0]]))}
    return RunData(path=path, report=measured_figures(result, manifest, calibration), manifest=manifest,
                   anchor_index=np.asarray(result.anchor_index, dtype=np.int64),
                   embeddings=np.ascontiguousarray(result.anchor_vectors, dtype=np.float32),
                   mccs=np.where(np.isnan(scores), np.inf, scores), m=np.asarray(result.m, dtype=np.float64),
                   neighbors=np.asarray(result.neighbors, dtype=np.int64), radial=np.asarray(result.radial, dtype=np.int64),
                   convergence=conv, nearest=nearest)


def measured_figures(result: AuditResult, manifest: dict, calibration: dict | None = None) -> dict:
    """The report's measured figures (the keys other tools read), from an :class:`AuditResult` and
    the run's manifest; :func:`figures` adds what is computed from them."""
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
        "radial_radii": [float(r) for r in result.radii],
        "embedder": manifest["embedder"].get("name"),
        "generator": manifest["generator"],
        **({"calibrator": calibration} if calibration else {}),
    }


def _finite(x) -> float | None:
    """JSON has no infinity: the reference MCCS form is infinite at m = 1; that is written as null."""
    x = float(x)
    return x if np.isfinite(x) else None


def ripley(run: RunData, seed: int = 0) -> dict:
    """Ripley test of the run's worst mode (see :mod:`gancheck.analysis.spatial`), with its inputs."""
    n = run.report["n_samples"]
    if run.radial is not None and run.report.get("radial_radii"):
        radii = np.asarray(run.report["radial_radii"], dtype=np.float64)
        k_bar = spatial.mean_k(run.radial, n)
        local = run.radial / n
    else:
        # Older runs: the anchors' own pairs stand in for the collection (coarser, same law).
        radii = np.linspace(0.0, max(run.report["theta"], run.report["radius"]), 17)[1:]
        local = spatial.neighbour_fractions(run.embeddings, run.embeddings, radii)
        local = (local * len(run.embeddings) - 1) / max(len(run.embeddings) - 1, 1)  # drop self-pairs
        k_bar = spatial.mean_k(local * (len(run.embeddings) - 1), len(run.embeddings) - 1)
    result = spatial.ripley_test(run.embeddings, run.worst, radii, k_bar, test_radius=run.report["radius"], sims=N_SIMS, seed=seed,
                                 neighbors=run.neighbors)
    result["local"] = local
    return result


def figures(run: RunData, reference_dir: str | Path | None = None, embedder=None, device: str = "auto") -> tuple[dict, dict]:
    """The report figures computed from a measured run, and the Ripley test's curves for the page:
    ``(extra, ripley)``. ``extra`` is merged into report.json (:func:`analyse`); its keys (all plain
    numbers, so gates such as ``--fail-if 'mccs.mean_ci_high>0.45'`` work):

    - ``mccs.{mean,std}_ci_{low,high}``, ``mccs.ci_level``, ``mccs.ci_method``,
      ``mccs.collection_{sd_mean,sd_std,bias_mean,bias_std}``
    - ``worst_mode.neighbor_fraction_ci_{low,high}`` (Wilson on the collection count, biased upward by the
      choice of the densest anchor), ``worst_mode.share_ci_{low,high}`` (held-out anchors: valid),
      ``worst_mode.{held_out_fraction, held_out_neighbors, held_out_anchors, ci_method, share_ci_method}``; ``mode_shares[i].{rank, sample_index, held_out_fraction, share_ci_low, share_ci_high}``
      (one per ``modes[i]``)
    - ``diversity.{vendi, vendi_ci_low, vendi_ci_high, vendi_samples, vendi_kernel, support_size,
      support_size_lower, collisions, pairs, support_threshold, support_source, meaning}``
      (``meaning``: one sentence per figure)
    - ``spatial.{p_value, p_value_conservative, test_radius, test_radii, sims, held_out, null, method}``
      (``null``: ``anchor`` or ``identity``, see :func:`gancheck.analysis.spatial.ripley_test`)
    - ``detection_limit`` (a number, or None when no mode could be found with 95% probability) and
      ``detection.{limit, power, alpha, background_rate, competitor, sentence, meaning, method}``
    - ``sampling.{mccs_mean_change, worst_mccs_change, from_n, to_n}``: relative change over
      the last decade of |C| (small when n was enough)
    - with ``reference_dir``: ``reference.{path, images, embedded, precision, recall, density,
      coverage, k, frechet_distance}``, described by ``embedder`` (the run's, rebuilt when None)
    """
    rep = run.report
    extra: dict = {}
    extra["degenerate"] = degenerate.assess(run.embeddings, (run.manifest.get("images") or {}).get("shape"))
    extra["mccs"] = _mccs_intervals(run)
    lo, hi = intervals.wilson_interval(int(rep["worst_mode"]["neighbors"]), int(rep["n_samples"]), CI_LEVEL)
    share = intervals.held_out_share(run.embeddings, run.worst, float(rep["radius"]), CI_LEVEL)
    extra["worst_mode"] = {"neighbor_fraction_ci_low": lo, "neighbor_fraction_ci_high": hi, "ci_method": "Wilson score (binomial)",
                           "share_ci_low": share["low"], "share_ci_high": share["high"], "held_out_fraction": share["share"],
                           "held_out_neighbors": share["k"], "held_out_anchors": share["trials"],
                           "share_ci_method": ("Wilson score on the held-out anchors within r: valid although the mode was chosen as the "
                                               "densest; the collection interval neighbor_fraction_ci_* is biased upward by that choice")}
    extra["mode_shares"] = _mode_intervals(run)
    extra["diversity"] = _diversity(run)
    rip = ripley(run, seed=rep.get("seed", 0))
    extra["spatial"] = {"p_value": rip["p_value"], "p_value_conservative": rip["p_value_conservative"], "test_radius": rep["radius"],
                        "test_radii": [float(r) for r in rip["test_radii"]], "sims": rip["sims"], "held_out": rip["held_out"],
                        "null": rip["null"], "method": RIPLEY_METHODS[rip["null"]]}
    extra["detection"] = _detection(run, rip["p_value"], rip["null"] == "identity")
    extra["detection_limit"] = extra["detection"]["limit"]
    if run.convergence is not None:
        extra["sampling"] = sampling_change(run.convergence)
    extra["mccs"]["ci_note"] = uncorrected_note(extra["mccs"]["uncorrected_share"], extra.get("sampling", {}).get("mccs_mean_change"))
    if reference_dir is not None:
        extra["reference"] = reference_metrics(run, reference_dir, embedder=embedder, device=device)
    return extra, rip


@dataclass
class Analysis:
    """A run analysed once: the whole report (the content of report.json) and what the page draws
    beyond it (the Ripley test's curves)."""

    run: RunData
    report: dict
    ripley: dict
    anchor_curve: dict | None  # Fig. 3's (mu, sigma) over random anchor subsets, None below 4 anchors


def analyse(run: RunData, reference_dir: str | Path | None = None, embedder=None, gates: Sequence = (),
            allow_inconclusive: bool = False, device: str = "auto") -> Analysis:
    """Every figure of the report, computed once from ``run``: the measured figures, then
    :func:`figures`, the verdict, and the release ``gates`` (evaluated on the report with its
    verdict, after which the verdict takes their outcome)."""
    extra, rip = figures(run, reference_dir, embedder, device)
    report = with_verdict(merge_report(run.report, extra), run.neighbors)
    if gates:
        report["gates"] = evaluate(report, list(gates), allow_inconclusive=allow_inconclusive)
        report = with_verdict(report, run.neighbors)  # a failed gate decides the status
    return Analysis(run, report, rip, anchor_subset_curve(run))


def anchor_subset_curve(run: RunData) -> dict | None:
    """(mu, sigma) against |A| over random subsets of the run's anchors (200 per size, Fig. 3)."""
    finite = run.mccs[np.isfinite(run.mccs)]
    if len(finite) < 4:
        return None
    sizes = intervals.log_sizes(min(10, len(finite)), len(finite), 12)
    return intervals.anchor_subsample_curve(finite, sizes[sizes >= 2], reps=200, seed=0)


def merge_report(report: dict, extra: dict) -> dict:
    """``report`` with ``extra``'s keys added (dicts merged one level deep, not replaced)."""
    out = dict(report)
    for key, value in extra.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _mccs_intervals(run: RunData) -> dict:
    """mu and sigma as estimates of the generator's values, each with the interval of the same
    quantity: the anchors' bootstrap widened by the collection's shared noise (delta method) and
    corrected for the collection's bias. The Eq. 8 figures of this collection stay as ``mean_raw``
    and ``std_raw``; ``mean`` and ``std`` are the corrected points the intervals are built around."""
    rep = run.report
    raw_mean, raw_std = (rep["mccs"].get(f"{k}_raw", rep["mccs"][k]) for k in ("mean", "std"))  # a re-analysed report holds both
    ci = intervals.bootstrap_mean_std(run.mccs, n_boot=N_BOOT, level=CI_LEVEL, seed=rep.get("seed", 0))
    sd = intervals.collection_sd(run.embeddings, run.m, run.mccs, float(rep["theta"]), int(rep["n_samples"]), rep["mccs_form"]) \
        if run.m is not None else {"mean_sd": None, "std_sd": None, "mean_bias": None, "std_bias": None, "uncorrected_share": None}
    mean_bias, std_bias = sd.get("mean_bias") or 0.0, sd.get("std_bias") or 0.0
    mean_lo, mean_hi = intervals.widen(raw_mean, ci["mean_low"], ci["mean_high"], sd["mean_sd"], CI_LEVEL, mean_bias)
    std_lo, std_hi = intervals.debias_std(*intervals.widen(raw_std, ci["std_low"], ci["std_high"], sd["std_sd"], CI_LEVEL), raw_std, std_bias)
    return {"mean": None if raw_mean is None else raw_mean - mean_bias, "mean_raw": raw_mean,
            "std": None if raw_std is None else max(raw_std - std_bias, 0.0), "std_raw": raw_std,
            "uncorrected_share": sd.get("uncorrected_share"), "mean_ci_low": mean_lo, "mean_ci_high": mean_hi,
            "std_ci_low": None if std_lo is None else max(std_lo, 0.0), "std_ci_high": std_hi, "ci_level": CI_LEVEL,
            "collection_sd_mean": sd["mean_sd"], "collection_sd_std": sd["std_sd"], "collection_bias_mean": sd["mean_bias"],
            "collection_bias_std": sd["std_bias"],
            "ci_method": (f"percentile bootstrap over anchors ({N_BOOT} resamples), widened by the collection's sampling error "
                          "(delta method); mean and std and their intervals are corrected for the collection's bias "
                          "(mean_raw, std_raw: Eq. 8 on this collection)")}


def uncorrected_note(share: float | None, change: float | None) -> str | None:
    """The one sentence shown beside mu wherever it is shown, when too many anchors saw too few
    samples within theta for their collection bias to be corrected and mu had not settled over the
    last tenfold of |C| (``change``, :func:`sampling_change`; None: no record, so no evidence it had)."""
    if not share or share <= 0.05 or (change is not None and abs(change) < SETTLED_CHANGE):
        return None
    moved = "" if change is None else f", and mu moved by {format_share(abs(change))} over the last tenfold of |C|"
    return (f"{format_share(share)} of anchors saw fewer than {intervals.MIN_EFFECTIVE_COUNT} samples within theta, too few to correct "
            f"their collection bias{moved}: mu and its interval are probably below the generator's value; audit with a larger --n")


def _mode_intervals(run: RunData) -> list:
    """One entry per report['modes'] entry, same order: its share re-estimated on the held-out
    anchors, with its interval (the listed modes were chosen by their collection counts)."""
    out = []
    for mode in run.report.get("modes", []):
        hits = np.flatnonzero(run.anchor_index == mode["sample_index"])
        if len(hits):
            share = intervals.held_out_share(run.embeddings, int(hits[0]), float(run.report["radius"]), CI_LEVEL)
            out.append({"rank": mode["rank"], "sample_index": mode["sample_index"], "held_out_fraction": share["share"],
                        "share_ci_low": share["low"], "share_ci_high": share["high"]})
    return out


def _detection(run: RunData, p_value: float, identity: bool = False) -> dict:
    rep = run.report
    n, m, radius = int(rep["n_samples"]), len(run.embeddings), float(rep["radius"])
    inputs = detection.detection_inputs(run.embeddings, run.neighbors, run.worst, n, radius)
    return detection.detection_summary(n, m, radius, inputs["background"], inputs["competitor"],
                                       detection.collapse_detected({"spatial": {"p_value": p_value}}), identity)


def _theta_counts(run: RunData) -> tuple[np.ndarray, int, str]:
    """Each anchor's count within theta, out of how many samples, and where they come from."""
    theta = float(run.report["theta"])
    radii = np.asarray(run.report.get("radial_radii") or [])
    at_theta = np.flatnonzero(np.isclose(radii, theta, rtol=0, atol=1e-12)) if len(radii) else []
    if run.radial is not None and len(at_theta):
        # anchor x collection pairs: |A||C| independent-draw pairs, far more than anchor pairs
        return run.radial[:, at_theta[0]], int(run.report["n_samples"]), "anchors x collection"
    m = len(run.embeddings)
    near = spatial.neighbour_fractions(run.embeddings, run.embeddings, np.array([theta]))[:, 0] * m - 1  # not itself
    return np.rint(near).astype(np.int64), m - 1, "anchor pairs"


def _diversity(run: RunData) -> dict:
    theta = float(run.report["theta"])
    m = len(run.embeddings)
    counts, n, source = _theta_counts(run)
    pairs = m * n if source == "anchors x collection" else m * (m - 1) // 2
    collisions = int(counts.sum()) if source == "anchors x collection" else int(counts.sum()) // 2
    size = diversity.support_size(collisions, pairs, CI_LEVEL)
    vendi = diversity.identity_vendi(counts, n, N_BOOT, CI_LEVEL, seed=run.report.get("seed", 0))
    return {"vendi": vendi["estimate"], "vendi_ci_low": vendi["low"], "vendi_ci_high": vendi["high"], "vendi_samples": m,
            "vendi_kernel": f"same identity: 1[d <= theta = {theta:.3g}]",
            "support_size": size["estimate"], "support_size_lower": size["lower"], "collisions": collisions, "pairs": pairs,
            "support_threshold": theta, "support_source": source,
            # Beyond |C|/10 identities most hold fewer than ten draws and both estimates fall short.
            "reliable": bool(vendi["estimate"] <= n / 10),
            "note": None if vendi["estimate"] <= n / 10 else (
                f"more than |C|/10 = {n / 10:,.0f} effective identities: both figures are lower bounds here; "
                "audit with a larger --n to measure them"),
            "meaning": {
                "vendi": ("the effective number of equally likely identities, exp of the entropy of the identity shares "
                          "(the Vendi score with the descriptor's same-identity kernel, d <= theta): K for K equally likely identities; "
                          "reliable while it is below about |C|/10"),
                "support_size": ("the birthday-paradox support size, 1 / P(two draws show the same identity, d <= theta): "
                                 "K for K equally likely identities, smaller than the Vendi score when a few identities dominate"),
            }}


def sampling_change(conv: dict) -> dict:
    """Relative change of ``mu`` and the worst mode's MCCS from |C| = n/10 to n (the last decade
    of the convergence grid): if it is small, a larger n would not change the figures much."""
    n = conv["n"]
    last = len(n) - 1
    first = int(np.argmin(np.abs(np.log10(n) - (np.log10(n[last]) - 1.0))))

    def rel(col: str) -> float | None:
        a, b = conv[col][first], conv[col][last]
        return float(abs(b - a) / abs(b)) if np.isfinite(a) and np.isfinite(b) and b != 0 else None

    return {"mccs_mean_change": rel("mccs_mean"), "worst_mccs_change": rel("worst_mccs"), "from_n": int(n[first]), "to_n": int(n[last])}


def reference_metrics(run: RunData, reference_dir: str | Path, embedder=None, device: str = "auto", batch_size: int = BATCH_SIZE) -> dict:
    """Precision/recall/density/coverage and Fréchet distance of the run's anchors (generated,
    i.i.d.) against a folder of real images, all in the run's descriptor space."""
    ref = FolderSource(str(reference_dir))
    ref.prepare(0)
    pick = np.sort(ref.order[:MAX_REFERENCE])
    if embedder is None:  # a finished run's: only the embedder is rebuilt, the generator file may be gone
        cfg = run.manifest.get("config", {})
        embedder = load_embedder(cfg.get("embedder", "pixel"), device=device, **cfg.get("embedder_options", {}))
    vectors, found = [], []
    for start in range(0, len(pick), batch_size):
        v, f = embedder.embed(ref.images(pick[start : start + batch_size]))
        vectors.append(np.asarray(v, dtype=np.float32))
        found.append(np.asarray(f, dtype=bool))
    vectors, found = np.concatenate(vectors), np.concatenate(found)
    real = vectors[found]
    if len(real) <= PRDC_K or len(run.embeddings) <= PRDC_K:
        raise GancheckError(f"{reference_dir}: only {len(real)} reference images could be described (need more than {PRDC_K}); add real images or check the embedder")
    fake = run.embeddings
    if real.shape[1] != fake.shape[1]:
        raise GancheckError(f"reference embeddings have {real.shape[1]} dimensions but the run's have {fake.shape[1]} (was the run audited with --no-face keep?); audit with --no-face exclude to compare with real images")
    out = diversity.prdc(real, fake, PRDC_K)
    out.update({"path": str(Path(reference_dir).resolve()), "images": len(ref.files), "embedded": int(len(real)),
                "frechet_distance": diversity.frechet_distance(real, fake)})
    return out
