"""The proof that a calibrator helps: re-audit the calibrated sampler and compare with the run.

Before and after: the dense modes' share (images within r0 of them), the worst mode's MCCS, the
population (mu, sigma) of Eq. 8, the draws paid per kept sample, and a quality figure: the Fréchet
distance in descriptor space between calibrated and original samples, both taken outside the dense
modes (d > r0 from every one), next to the same distance between two independent original draws
of the same sizes (the noise floor: what sampling error alone gives). The distance is
:func:`gancheck.analysis.diversity.frechet_distance`, the one the reports use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gancheck.calibration.fitdata import FitData, embed_samples
from gancheck.maths import excess_removed, pairwise_distance
from gancheck.analysis.diversity import frechet_distance
from gancheck.analysis.intervals import wilson_interval
from gancheck.calibrators import load_calibrator
from gancheck.calibrators.regions import described
from gancheck.files import file_sha256
from gancheck.audits import Audit, run_audit
from gancheck.run.directory import stored_generator_options
from gancheck.sources.latents import anchor_indices
from gancheck.defaults import BATCH_SIZE

#: the noise floor's second original draw uses sample indices from here (disjoint from C and A)
FLOOR_OFFSET = 1 << 41
#: rejection calibrators pay the generator and embedder per candidate: their measured cost is
#: replayed on this many samples only
REJECTION_REPLAY = 1024


#: the dense share must fall by this many standard errors to count as a drop (one-sided, ~2.3%
#: chance that sampling noise alone passes it)
DROP_Z = 2.0


def share_drop_z(before: float, n_before: int, after: float, n_after: int) -> float:
    """How many standard errors the share fell: ``(before - after) / se`` for two independent
    binomial proportions; +inf when both are exact (no spread) and the share fell."""
    se = np.sqrt(before * (1 - before) / n_before + after * (1 - after) / n_after)
    if se == 0:
        return float("inf") if after < before else 0.0
    return float((before - after) / se)


def prove(data: FitData, calibrator_path: str | Path, proof_dir: str | Path, overwrite: bool = False, device: str = "auto", progress=None,
          resume: bool = False) -> tuple[dict, Audit]:
    """Re-audit ``calibrator_path`` with the run's generator, embedder and sizes into ``proof_dir``;
    returns the before/after figures (the content of calibration.json, written by the caller) and
    the re-audit."""
    cfg, before = data.config, data.report
    # "before" on a fresh plain draw (indices no fit used): the run's own share of its worst mode is
    # biased upwards, the mode having been chosen as the run's densest.
    plain_indices, plain = plain_draw(data, progress)
    audit, calibrated = re_audit(data, calibrator_path, proof_dir, overwrite, device, progress, resume)
    after = audit.report
    near_after = pairwise_distance(calibrated, data.mode_vectors) <= data.r0
    near_plain = pairwise_distance(plain, data.mode_vectors) <= data.r0
    share_before, share_after = float(near_plain.any(axis=1).mean()), float(near_after.any(axis=1).mean())
    cal = load_calibrator(calibrator_path)
    draws, measured_on = measured_draws(cal, data, int(cfg["n"]), int(cfg["anchors"]))
    z = share_drop_z(share_before, len(plain), share_after, len(calibrated))
    table = excess_table(near_plain, near_after, data.typical_count / data.n)
    # the plain draw's images are described already: every method but drs knows its keep probability there
    latents = data.prior.sample(data.seed, plain_indices).reshape(len(plain_indices), -1)
    keep = cal.keep_described(latents, plain)
    calls = cal.descriptor_calls_per_candidate(latents)  # on the plain draw: the expectation, not a replay's count
    paired = None if keep is None else weighted_excess(near_plain, keep, data.typical_count / data.n)
    return {
        "format": "gancheck-calibration",
        "method": cal.method,
        "calibrator": {"path": str(Path(calibrator_path).resolve()), "sha256": file_sha256(calibrator_path)},
        "run": str(Path(data.run_dir).resolve()),
        "proof_run": str(Path(proof_dir).resolve()),
        "r0": data.r0,
        "n_samples": int(cfg["n"]),
        "n_anchors": int(cfg["anchors"]),
        "mccs_form": before["mccs_form"],
        "dense_modes": cal.header["dense_modes"],
        "ordinary_share": cal.header["reference"]["share"],
        "proof_seed": proof_seed(data.seed),
        "before": side(before, share_before, [float(s) for s in near_plain.mean(axis=0)], 1.0),
        "after": side(after, share_after, [float(s) for s in near_after.mean(axis=0)], draws),
        "run_share_per_mode": [float(s) for s in data.near.mean(axis=0)],
        "modes": table["modes"],
        "total": table["total"],
        "paired": paired,
        "price_list": price_list(cal, latents, plain, near_plain, data) if hasattr(cal, "priced") else None,
        "draws_measured_on": measured_on,
        "frechet": frechet_figures(data, calibrated, plain),
        "region": cal.header["fit"].get("regions"),
        "needs_embedder_at_sampling": cal.needs_generator,
        "needs_descriptor_at_sampling": cal.needs_generator,  # its name before 0.2, kept for one release
        "share_drop": {"z": z if np.isfinite(z) else None, "required_z": DROP_Z,
                       "test": "one-sided two-proportion z on the modes' union share, fresh plain draw vs calibrated re-audit: "
                               "(before - after) / sqrt(b(1-b)/n_b + a(1-a)/n_a)"},
        "cost": {"draws_per_kept_sample": draws, "proof_embedder_calls": 2 * int(cfg["n"]) + int(cfg["anchors"]),
                 "describe_share": cal.header["params"].get("describe_share"), "descriptor_calls_per_candidate": calls,
                 "descriptor_calls_per_kept_sample": calls * draws},
        "improved": bool(z > DROP_Z),
        "notes": notes(cal),
    }, audit


def price_list(cal, latents: np.ndarray, plain: np.ndarray, near: np.ndarray, data: FitData) -> list[dict]:
    """A cascade's price list measured on the fresh plain draw: for each describe share of its file,
    the excess removed (keep-weighted, paired 95% interval), draws and descriptor calls per kept
    sample, and the Fréchet shift the thinning adds off the modes, as a share of the noise floor."""
    from gancheck.calibrators.cascade import price_point
    from gancheck.calibrators.regions import frechet_shift, proof_noise_floor

    vectors, found = described(plain, data.no_face)
    off = found & ~near.any(axis=1)
    floor = proof_noise_floor(vectors[off], np.flatnonzero(off))
    rows = []
    for share, keep, doubt in cal.priced(latents, plain):
        expected = weighted_excess(near, keep, data.typical_count / data.n)
        rows.append(dict(describe_share=share, **price_point(keep, doubt, near, data.typical_count / data.n), low=expected["low"],
                         high=expected["high"], frechet_shift_vs_floor=float(frechet_shift(vectors[off], keep[off], data.seed) / floor)
                         if floor > 0 else None))
    return rows


def plain_draw(data: FitData, progress) -> tuple[np.ndarray, np.ndarray]:
    """``(sample indices, descriptor vectors)`` of a fresh plain draw of |C| samples (indices
    ``FLOOR_OFFSET + i``, the run's seed), kept in RUN_DIR/calibration-plain-draw.parquet: every
    calibration of the run compares with the same draw, described once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gancheck.files import atomic_write

    n = int(data.config["n"])
    path = Path(data.run_dir) / "calibration-plain-draw.parquet"
    if path.is_file():
        table = pq.read_table(path)
        if (table.schema.metadata or {}).get(b"n") == str(n).encode():
            columns = table.to_pydict()
            return np.asarray(columns["sample_index"], np.int64), np.asarray(columns["embedding"], np.float32)
    idx, vectors = embed_samples(data.source, data.embedder, FLOOR_OFFSET + np.arange(n, dtype=np.int64), data.config, progress, "floor")
    table = pa.table({"sample_index": idx, "embedding": list(np.asarray(vectors, np.float32))}).replace_schema_metadata({"n": str(n)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write(path, sink.getvalue().to_pybytes())
    return np.asarray(idx, np.int64), np.asarray(vectors, np.float32)


#: resamples (and jackknife samples) per vectorised call of the paired bootstrap: bounds its memory at
#: about BOOTSTRAP_BATCH x n x 16 bytes
BOOTSTRAP_BATCH = 64


def weighted_excess(near: np.ndarray, keep: np.ndarray, floor: float, resamples: int = 2000) -> dict:
    """The calibrated after-share estimated on the plain draw itself: each fresh sample weighted by
    the calibrator's keep probability (``sum keep near / sum keep``, the calibrated density's
    expectation). Paired with the before-share on the same samples, the excess removed is free of
    the re-audit's own sampling noise; its 95% interval is a paired bootstrap (scipy)."""
    from scipy.stats import bootstrap

    near, keep = np.asarray(near, bool), np.asarray(keep, np.float64)
    count = near.sum(axis=1).astype(np.float64)  # modes each sample lies in: the shares' sum, per sample
    excess = count.mean() - near.shape[1] * floor

    def removed(k, c, axis=-1):
        return excess_removed(k, c, near.shape[1] * floor, axis)

    after = (keep[:, None] * near).sum(axis=0) / keep.sum()
    out = {"after_per_mode": [float(a) for a in after], "after": float(after.sum()),
           "excess_removed": float(removed(keep, count)) if excess > 0 else None, "low": None, "high": None,
           "estimate": "the plain draw's samples weighted by the calibrator's keep probability; paired bootstrap interval"}
    if excess > 0:
        # In batches: unbatched, the BCa jackknife alone holds an n x (n - 1) index matrix (3 GB at n = 2e4,
        # 17 GB of peak RSS in the proof); batched, the interval is bitwise the same and 6x faster at n = 3000.
        ci = bootstrap((keep, count), removed, paired=True, vectorized=True, n_resamples=resamples, random_state=0,
                       batch=BOOTSTRAP_BATCH).confidence_interval
        if np.isfinite([ci.low, ci.high]).all():  # not when every resample gives the same figure
            out["low"], out["high"] = float(ci.low), float(ci.high)
    return out


#: the re-audit draws its collection and anchors under this seed offset from the run's: fresh samples
PROOF_SEED_SHIFT = 7919


def proof_seed(seed: int) -> int:
    return int(seed) + PROOF_SEED_SHIFT


def share_with_interval(near: np.ndarray) -> dict:
    k, n = int(np.sum(near)), len(near)
    low, high = wilson_interval(k, n)
    return {"share": k / n if n else float("nan"), "low": low, "high": high, "count": k, "of": n}


def excess_table(near_before: np.ndarray, near_after: np.ndarray, floor: float) -> dict:
    """Per mode: its share before (fresh plain draw) and after (calibrated re-audit) with 95% Wilson
    intervals, the floor (a typical anchor's share: the median over the run's ordinary anchors) and the
    fraction of the excess (share - floor) removed; ``total`` sums the modes' shares and excesses."""
    modes = []
    for m in range(near_before.shape[1]):
        b, a = share_with_interval(near_before[:, m]), share_with_interval(near_after[:, m])
        excess = b["share"] - floor
        modes.append({"before": b, "after": a, "floor": floor, "excess_before": excess, "excess_after": a["share"] - floor,
                      "excess_removed": (b["share"] - a["share"]) / excess if excess > 0 else None})
    tb, ta = float(near_before.mean(axis=0).sum()), float(near_after.mean(axis=0).sum())
    excess = tb - len(modes) * floor
    return {"modes": modes, "total": {"before": tb, "after": ta, "floor": len(modes) * floor, "excess_before": excess,
                                      "excess_removed": (tb - ta) / excess if excess > 0 else None}}


def re_audit(data: FitData, calibrator_path, proof_dir, overwrite: bool, device: str, progress, resume: bool = False) -> tuple[Audit, np.ndarray]:
    """The calibrated sampler audited with the run's own settings, analysed (its page is drawn by
    the caller, beside the run it calibrates): ``(audit, collection vectors)``. The executor stays
    local (a Ray cluster may be gone by now)."""
    import pyarrow.parquet as pq

    cfg, before = data.config, data.report
    same = {k: cfg[k] for k in ("chunk_size", "backend", "top_k", "neighbors_k", "shard_size", "on_nan", "retries") if k in cfg}
    after = run_audit(cfg["generator"], proof_dir, n=int(cfg["n"]), anchors=int(cfg["anchors"]), seed=proof_seed(data.seed), embedder=cfg["embedder"],
                      overwrite=overwrite, resume=resume, device=device, threads=cfg.get("threads"), progress=progress,
                      generator_options=stored_generator_options(cfg), embedder_options=cfg.get("embedder_options"),
                      batch_size=int(cfg.get("batch_size", BATCH_SIZE)), calibrator=calibrator_path, theta=before["theta"], radius=before["radius"],
                      mccs_form=before["mccs_form"], no_face=data.no_face, save_embeddings=True, html=False, **same)
    # the collection's descriptors were streamed to the proof run's shards, not kept in memory
    saved = pq.read_table(Path(proof_dir) / "embeddings.parquet", columns=["embedding"]).column("embedding")
    return after, np.asarray(saved.combine_chunks().flatten(), dtype=np.float32).reshape(len(saved), -1)


def frechet_figures(data: FitData, calibrated: np.ndarray, floor: np.ndarray) -> dict:
    """Fréchet distance of calibrated vs original samples outside the dense modes, against the
    noise floor: ``floor``, a second, independent draw of the plain generator of the same size."""
    cfg = data.config

    def off_mode(v):
        near = pairwise_distance(v, data.mode_vectors) <= data.r0
        vec, found = described(v, data.no_face)
        return vec[found & ~near.any(axis=1)]

    reference, cal_off, floor_off = off_mode(data.vectors), off_mode(calibrated), off_mode(floor)
    # The estimate's bias depends on the sample sizes: compare sets of equal size (first rows, in index order).
    size = min(len(cal_off), len(floor_off))
    cal_off, floor_off = cal_off[:size], floor_off[:size]
    fd, fd_floor = frechet_distance(cal_off, reference), frechet_distance(floor_off, reference)
    return {"calibrated_vs_original": fd, "noise_floor": fd_floor, "ratio": fd / fd_floor if fd_floor > 0 else None,
            "space": "descriptor", "outside_dense_modes": True,
            "sizes": {"original": len(reference), "calibrated": len(cal_off), "floor_draw": len(floor_off)},
            "floor_draw_indices": f"{FLOOR_OFFSET} + i, i < {int(cfg['n'])}, same seed"}


def side(report: dict, share: float, per_mode: list[float], draws_per_sample: float) -> dict:
    """One column of the before/after table."""
    w = report["worst_mode"]
    return {"dense_share": share, "dense_share_per_mode": per_mode, "mccs": {"mean": report["mccs"]["mean"], "std": report["mccs"]["std"]},
            "worst_mode": {"sample_index": w["sample_index"], "neighbor_fraction": w["neighbor_fraction"], "mccs": w["mccs"]},
            "draws_per_sample": draws_per_sample}


def notes(cal) -> list[str]:
    out = []
    if cal.needs_generator:
        out.append(f"this calibrator decides on the generated image: sampling with it runs {cal.runs_at_sampling()} "
                   "on every candidate, so that model must ship with it")
    if cal.header["params"].get("limited_by") == "no_held_out_gain":
        out.append("no cell reweighting lowered the dense share on held-out samples (the clusters' dense fractions "
                   "are noise at this size): the gmm calibrator is the plain prior; audit with a larger --n or use is/rejection")
    return out


def measured_draws(cal, data: FitData, n: int, anchors: int) -> tuple[float, int]:
    """Draws per kept sample, replaying the re-audit's sample indices through the sampler (latent-only
    methods: all of them, cheaply; rejection: the first ``REJECTION_REPLAY`` collection samples)."""
    sampler = cal.bind(data.source)
    if cal.needs_generator:
        idx = np.arange(min(n, REJECTION_REPLAY), dtype=np.int64)
        sampler.sample(proof_seed(data.seed), idx)
        return sampler.acceptance_rate, len(idx)
    sampler.sample(proof_seed(data.seed), anchor_indices(anchors))
    sampler.sample(proof_seed(data.seed), np.arange(n, dtype=np.int64))
    return sampler.acceptance_rate, n + anchors
