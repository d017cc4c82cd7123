"""Whose face is it? Identity leakage from the training set, tested against held-out data.

Every generated sample's nearest training image and nearest held-out image are found (FAISS,
exact: ``IndexFlatL2`` on the unit descriptors, whose L2 order is the angular order; the distance
of each chosen pair is then recomputed in float64 as Eq. 4's normalised angular distance, the one
distance of gancheck). A generator that learned the distribution without copying is as close to
held-out images as to training images; copying shows as an excess of training matches.

- Sizes are equalised first: the larger of the two reference sets is subsampled (seeded) to the
  smaller's size, since a larger set is closer to anything by its size alone. When the training set
  is the larger one, copies of the training images left out are not counted: the excess then
  estimates the copy share times |H|/|T| (give a held-out set as large as the training set).
- ``excess_share`` = share within theta of a training image minus share within theta of a held-out
  image, over the same generated samples (paired proportions), with Newcombe's (1998) method 10
  interval, which counts the generated samples' randomness (conditional on the two sets).
- The whole distance distributions: the Wilcoxon signed-rank statistic of nearest-held-out minus
  nearest-training distance.
- Both p-values come from random relabellings of the pooled training and held-out images. Tests
  that treat only the generated samples as random (McNemar's, scipy's Wilcoxon) ignore that two
  random sets of the same distribution differ by chance, and false-alarm far above their level on a
  generator that copies nothing (12% at 5% for Wilcoxon on scikit-learn's digits); the relabelling
  is exact under the held-out design (the two sets are a random split of one pool).

Pure functions on arrays, then :func:`measure_leakage`, which makes and describes the images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gancheck.analysis.coverage import describe_images, load_reference
from gancheck.analysis.proportions import wilson_interval
from gancheck.defaults import BATCH_SIZE
from gancheck.errors import GancheckError
from gancheck.maths import paired_distance

#: ``leak`` when the excess's one-sided p-value is below this.
ALPHA = 0.01
#: The detection limit is the copy share found with this probability.
POWER = 0.95
#: Fewest described images in each reference set and in the generated collection.
MIN_IMAGES = 20
#: A reference set where the embedder describes less than this share of the images is refused.
MIN_DESCRIBED = 0.5
MAX_MATCHES = 50
#: Random relabellings of the two sets behind the p-values (the smallest p-value is 1 / (B + 1)).
PERMUTATIONS = 999
#: Nearest pooled images kept per generated sample for the relabellings (none of them in one set: 2^-k).
NEIGHBOURS = 24
CURVE_POINTS = 41


def nearest(queries: np.ndarray, refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(index, distance)`` of each query's nearest reference: FAISS exact L2 search on the unit
    rows (float32), then the pair's Eq. 4 angular distance in float64."""
    import faiss

    q = np.ascontiguousarray(_unit(queries), dtype=np.float32)
    r = np.ascontiguousarray(_unit(refs), dtype=np.float32)
    index = faiss.IndexFlatL2(r.shape[1])
    index.add(r)
    _, idx = index.search(q, 1)
    idx = idx[:, 0].astype(np.int64)
    return idx, paired_distance(queries, refs[idx])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float64).tiny)


def equalise(n_train: int, n_holdout: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices kept of each set: all of the smaller, a seeded subsample of the larger."""
    m = min(n_train, n_holdout)
    rng = np.random.default_rng([int(seed), 0x1EA4])
    keep = lambda k: np.arange(k) if k == m else np.sort(rng.choice(k, m, replace=False))  # noqa: E731
    return keep(n_train), keep(n_holdout)


def paired_counts(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    """``(both, only a, only b, neither)`` of two boolean arrays over the same samples."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum())


def newcombe_paired(both: int, only_a: int, only_b: int, neither: int, level: float = 0.95) -> tuple[float, float, float]:
    """``(difference, low, high)`` of ``P(a) - P(b)`` on paired data: Newcombe's (1998, Stat. Med.
    17:2635) method 10, the Wilson intervals of both shares combined with the continuity-corrected
    phi correlation. Chosen over a bootstrap because it stays sound with a handful of discordant
    samples (a percentile bootstrap collapses to a point at zero of them)."""
    n = both + only_a + only_b + neither
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    (l1,), (u1,) = wilson_interval(np.array([both + only_a]), n, level)
    (l2,), (u2,) = wilson_interval(np.array([both + only_b]), n, level)
    margins = float(both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = float(both) * neither - float(only_a) * only_b
    corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = corrected / np.sqrt(margins) if margins > 0 else 0.0
    d = p1 - p2
    low = d - np.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = d + np.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    return float(d), float(max(low, -1.0)), float(min(high, 1.0))


def pooled_neighbours(queries: np.ndarray, pooled: np.ndarray, k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """``(index, distance)``, each (n, k): every query's ``k`` nearest rows of ``pooled`` (FAISS exact
    search), nearest first, distances recomputed as Eq. 4 in float64."""
    import faiss

    k = min(int(k), len(pooled))
    index = faiss.IndexFlatL2(pooled.shape[1])
    index.add(np.ascontiguousarray(_unit(pooled), dtype=np.float32))
    q64, p64 = _unit(queries), _unit(pooled)
    idx = np.empty((len(queries), k), np.int64)
    dist = np.empty((len(queries), k))
    step = max(64, 2**23 // (k * pooled.shape[1]))  # 64 MiB of gathered float64 rows at a time
    for s in range(0, len(queries), step):
        _, found = index.search(np.ascontiguousarray(q64[s : s + step], dtype=np.float32), k)
        cos = np.einsum("nd,nkd->nk", q64[s : s + step], p64[found])
        d = np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi
        order = np.argsort(d, axis=1, kind="stable")
        idx[s : s + step], dist[s : s + step] = np.take_along_axis(found, order, 1), np.take_along_axis(d, order, 1)
    return idx, dist


def first_labelled(labels: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's distance to its nearest pooled row labelled True and to its nearest labelled
    False, from its nearest neighbours ``idx``/``dist`` (the k-th distance, a lower bound, when none
    of the k carries that label)."""
    rows = np.arange(len(idx))
    out = []
    for mask in (labels[idx], ~labels[idx]):
        j = mask.argmax(axis=1)
        out.append(np.where(mask[rows, j], dist[rows, j], dist[:, -1]))
    return out[0], out[1]


def statistics(d_train: np.ndarray, d_holdout: np.ndarray, theta: float) -> tuple[float, float]:
    """``(excess share within theta, signed-rank statistic)``: the second is the Wilcoxon signed-rank
    sum of held-out minus training distance over ``n (n + 1) / 2`` (positive: training images closer)."""
    from scipy.stats import rankdata

    diff = np.asarray(d_holdout, np.float64) - np.asarray(d_train, np.float64)
    ranks = rankdata(np.abs(diff))
    n = len(diff)
    return float(np.mean(d_train <= theta) - np.mean(d_holdout <= theta)), float(ranks @ np.sign(diff) / (n * (n + 1) / 2))


def label_permutations(m: int, count: int, seed: int = 0):
    """``count`` seeded random relabellings of a pool of 2m reference images: True for "training"."""
    rng = np.random.default_rng([int(seed), 0x9E7A])
    for _ in range(count):
        labels = np.zeros(2 * m, bool)
        labels[rng.permutation(2 * m)[:m]] = True
        yield labels


def permutation_p_values(observed: tuple[float, float], idx: np.ndarray, dist: np.ndarray, m: int, theta: float,
                         permutations: int = PERMUTATIONS, seed: int = 0) -> tuple[float, float, float]:
    """One-sided p-values of both :func:`statistics` under random relabelling of the pooled training
    (rows ``0..m-1``) and held-out (rows ``m..2m-1``) images, ``(1 + #{permuted >= observed}) / (B + 1)``,
    and the standard deviation of the relabelled excess shares."""
    permuted = np.array([statistics(*first_labelled(labels, idx, dist), theta) for labels in label_permutations(m, permutations, seed)])
    higher = (permuted >= np.asarray(observed) - 1e-12).sum(axis=0)
    return float((1 + higher[0]) / (permutations + 1)), float((1 + higher[1]) / (permutations + 1)), float(permuted[:, 0].std())


def detection_limit(n: int, discordant: float, share_holdout: float, alpha: float = ALPHA, power: float = POWER,
                    null_sd: float = 0.0) -> float:
    """The smallest copy share found with probability ``power`` by the one-sided test at ``alpha``.

    The larger of two normal approximations of the excess ``e`` needed: McNemar's (Connor 1987), the
    test over the generated samples alone, where with discordant share ``pi = discordant + e`` the
    excess is found when ``n e >= z_a sqrt(n pi) + z_b sqrt(n (pi - e^2))`` (``discordant``: twice the
    observed held-out-only share), which rules when few samples match at all; and
    ``e >= (z_a + z_b) null_sd``, with ``null_sd`` the spread of the excess over the relabellings,
    which also holds the two sets' chance difference. A copy lies near a held-out image too at the
    held-out share's rate, so the copy share is ``e / (1 - share_holdout)``."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    za, zb = norm.isf(alpha), norm.isf(1 - power)
    discordant = float(np.clip(discordant, 0.0, 0.9))
    gap = lambda e: n * e - za * np.sqrt(n * (discordant + e)) - zb * np.sqrt(max(n * (discordant + e - e * e), 0.0))  # noqa: E731
    excess = brentq(gap, 1e-12, 1.0 - discordant) if gap(1.0 - discordant) >= 0 else 1.0
    excess = max(excess, (za + zb) * null_sd)
    return float(min(excess / max(1.0 - share_holdout, 1e-12), 1.0))


def distance_curve(d_train: np.ndarray, d_holdout: np.ndarray, theta: float, points: int = CURVE_POINTS) -> dict:
    """Share of samples within ``d`` of a training and of a held-out image, on a grid from 0 to
    twice theta (or the 95th percentile of the distances when larger)."""
    top = min(1.0, max(2 * theta, float(np.quantile(np.concatenate([d_train, d_holdout]), 0.95))))
    grid = np.linspace(0.0, top, points)
    share = lambda d: (np.searchsorted(np.sort(d), grid, side="right") / len(d)).tolist()  # noqa: E731
    return {"distance": grid.tolist(), "train_share": share(d_train), "holdout_share": share(d_holdout)}


def strongest_matches(train_idx: np.ndarray, d_train: np.ndarray, holdout_idx: np.ndarray, d_holdout: np.ndarray, theta: float,
                      train_names: list[str], holdout_names: list[str], samples: np.ndarray, top: int = MAX_MATCHES) -> list[dict]:
    """Training images matched within theta and closer than any held-out image, most often matched
    first (then closest): each with its count, closest distance, the sample there and that sample's
    nearest held-out image, and every matched sample index."""
    hit = np.flatnonzero((d_train <= theta) & (d_train < d_holdout))
    rows = []
    for t in np.unique(train_idx[hit]):
        mine = hit[train_idx[hit] == t]
        best = mine[np.argmin(d_train[mine])]
        rows.append({"train_image": train_names[int(t)], "count": int(len(mine)), "distance": float(d_train[best]),
                     "sample": int(samples[best]), "holdout_image": holdout_names[int(holdout_idx[best])],
                     "holdout_distance": float(d_holdout[best]), "samples": [int(s) for s in np.sort(samples[mine])]})
    rows.sort(key=lambda r: (-r["count"], r["distance"], r["train_image"]))
    return rows[:top]


def verdict(stats: dict, alpha: float = ALPHA) -> dict:
    """``leak`` when the excess is significant at ``alpha``, else ``pass``; one sentence with the
    detection limit."""
    from gancheck.formatting import format_interval, format_p, format_share

    leak = stats["excess_p_value"] < alpha
    ci = format_interval(stats["excess_share_ci_low"], stats["excess_share_ci_high"], share=True)
    p = format_p(stats["excess_p_value"], stats["permutations"])
    limit = format_share(stats["detection_limit"])
    if leak:
        text = (f"leak: {format_share(stats['excess_share'])} more generated samples lie within theta of a training image than of a "
                f"held-out one ({ci}, {p}); this run finds a copy share of {limit} with 95% probability.")
    else:
        text = (f"pass: no significant excess of training matches ({format_share(stats['excess_share'])}, {ci}, {p}); a copy share "
                f"of {limit} or more would have been found with 95% probability.")
    return {"status": "leak" if leak else "pass", "alpha": alpha, "headline": text}


def leakage_statistics(generated: np.ndarray, train: np.ndarray, holdout: np.ndarray, theta: float, train_names: list[str],
                       holdout_names: list[str], samples: np.ndarray | None = None, seed: int = 0, alpha: float = ALPHA,
                       permutations: int = PERMUTATIONS) -> dict:
    """The whole comparison on descriptor vectors: generated (n, D), train (|T|, D), holdout (|H|, D)."""
    if not (generated.shape[1] == train.shape[1] == holdout.shape[1]):
        raise GancheckError("the generated, training and held-out descriptors differ in dimension; use one embedder for all three")
    samples = np.arange(len(generated)) if samples is None else np.asarray(samples)
    keep_t, keep_h = equalise(len(train), len(holdout), seed)
    m = len(keep_t)
    ti, dtf = nearest(generated, train)
    hi, dhf = nearest(generated, holdout)
    dt = dtf if m == len(train) else nearest(generated, train[keep_t])[1]  # the full search is the equalised one when nothing was left out
    dh = dhf if m == len(holdout) else nearest(generated, holdout[keep_h])[1]
    both, only_t, only_h, neither = paired_counts(dt <= theta, dh <= theta)
    n = len(generated)
    diff, low, high = newcombe_paired(both, only_t, only_h, neither)
    idx, dist = pooled_neighbours(generated, np.concatenate([train[keep_t], holdout[keep_h]]))
    observed = statistics(*first_labelled(np.arange(2 * m) < m, idx, dist), theta)  # as the relabellings see it
    p_excess, p_distance, null_sd = permutation_p_values(observed, idx, dist, m, theta, permutations, seed)
    share_h = (both + only_h) / n
    out = {"theta": float(theta), "n_generated": n, "n_train": len(train), "n_holdout": len(holdout), "n_compared": m,
           "equalised": _equalised_text(len(train), len(holdout), seed),
           "train_share": (both + only_t) / n, "holdout_share": share_h, "excess_share": diff, "excess_share_ci_low": low,
           "excess_share_ci_high": high, "excess_p_value": p_excess,
           "discordant": {"train_only": only_t, "holdout_only": only_h, "both": both, "neither": neither},
           "signed_rank": observed[1], "distance_p_value": p_distance, "permutations": int(permutations),
           "median_distance": {"train": float(np.median(dt)), "holdout": float(np.median(dh))},
           "detection_limit": detection_limit(n, 2 * only_h / n, share_h, alpha, null_sd=null_sd),
           "curve": distance_curve(dt, dh, theta),
           "tests": _tests_text(permutations, alpha)}
    out["matches"] = strongest_matches(ti, dtf, hi, dhf, theta, train_names, holdout_names, samples)
    out["verdict"] = verdict(out, alpha)
    return out


def _tests_text(permutations: int, alpha: float) -> dict:
    return {"excess": f"one-sided label-permutation test ({permutations} random splits of the pooled training and held-out images); "
                      "95% interval: Newcombe (1998) method 10 for paired proportions, over the generated samples",
            "distance": "Wilcoxon signed-rank statistic of nearest held-out minus nearest training distance, one-sided, "
                        "calibrated by the same label permutations",
            "detection_limit": f"normal approximations, the larger of McNemar's (Connor 1987) and the relabellings' spread; "
                               f"one-sided alpha {alpha}, power {POWER}"}


def _equalised_text(n_train: int, n_holdout: int, seed: int) -> str:
    if n_train == n_holdout:
        return f"both sets hold {n_train} described images; nothing subsampled"
    which = "training" if n_train > n_holdout else "held-out"
    return (f"the {which} set was subsampled to {min(n_train, n_holdout)} of its {max(n_train, n_holdout)} described images "
            f"(seed {seed}) to match the other's size; matches use every image")


def mode_matches(run_dir: str | Path, train: np.ndarray, theta: float, train_names: list[str], embedder: dict) -> dict:
    """The audit run's dense modes (anchors' descriptors) matched against the training set, worst first."""
    from gancheck.analysis.report import load_run

    run = load_run(run_dir)
    if run.manifest.get("embedder") != embedder:
        raise GancheckError(f"--run {run_dir} was described with {run.manifest.get('embedder')}, this check with {embedder}; "
                            "pass the run's --embedder and --embedder-opt")
    modes = run.report.get("modes") or [dict(run.report["worst_mode"], rank=1)]
    rows = []
    for mode in modes:
        hits = np.flatnonzero(run.anchor_index == mode["sample_index"])
        if not len(hits):
            continue
        (t,), (d,) = nearest(run.embeddings[hits[:1]], train)
        rows.append({"rank": int(mode["rank"]), "sample_index": int(mode["sample_index"]), "neighbor_fraction": mode.get("neighbor_fraction"),
                     "train_image": train_names[int(t)], "distance": float(d), "is_training_image": bool(d <= theta)})
    if not rows:
        raise GancheckError(f"--run {run_dir} lists no dense mode whose anchor is in anchors.parquet; re-run the audit")
    w = rows[0]
    text = (f"the worst-case mode (sample {w['sample_index']}) is training image {w['train_image']} (distance {w['distance']:.3g} <= theta)"
            if w["is_training_image"] else
            f"the worst-case mode (sample {w['sample_index']}) is not a training image (nearest: {w['train_image']}, distance {w['distance']:.3g} > theta)")
    return {"run": str(Path(run_dir).resolve()), "modes": rows, "sentence": text}


def shared_files(train_files: list[Path], holdout_files: list[Path]) -> list[tuple[Path, Path]]:
    """Pairs of a training and a held-out file with the same content (sha256)."""
    from gancheck.files import file_sha256

    seen = {file_sha256(f): f for f in train_files}
    return [(seen[h], f) for f in holdout_files if (h := file_sha256(f)) in seen]


def load_sets(train_dir: str | Path, holdout_dir: str | Path):
    """The two image folders as sources, refused when they are the same folder, share files or are too small."""
    for path, flag in ((train_dir, "--train"), (holdout_dir, "--holdout")):
        if not Path(path).is_dir():
            raise GancheckError(f"{flag} {path} is not a folder; give a folder of images (PNG/JPEG/WebP)")
    if Path(train_dir).resolve() == Path(holdout_dir).resolve():
        raise GancheckError(f"--train and --holdout are the same folder {train_dir}; give images the generator never saw as --holdout")
    sets = []
    for path, flag in ((train_dir, "--train"), (holdout_dir, "--holdout")):
        try:
            ref = load_reference(path, flag)
        except GancheckError as exc:
            raise GancheckError(f"{flag}: {exc}") from None
        if len(ref.files) < MIN_IMAGES:
            raise GancheckError(f"{flag} {path} holds {len(ref.files)} images; the test needs at least {MIN_IMAGES}; add images")
        sets.append(ref)
    shared = shared_files(sets[0].files, sets[1].files)
    if shared:
        raise GancheckError(f"--train and --holdout share {len(shared)} files by content (e.g. {shared[0][0].name} and {shared[0][1].name}); "
                            "remove them from the held-out folder")
    return sets


def describe_set(ref, embedder, batch_size: int, progress, stage: str, flag: str) -> tuple[np.ndarray, list[str]]:
    """The described images' descriptors and file names; refused when the embedder describes too few."""
    vec, found, _ = describe_images(ref.images, np.arange(len(ref.files), dtype=np.int64), embedder, batch_size=batch_size,
                                    progress=progress, stage=stage)
    names = [str(f.relative_to(ref.path)) for f, ok in zip(ref.files, found) if ok]
    if found.mean() < MIN_DESCRIBED or found.sum() < MIN_IMAGES:
        raise GancheckError(f"the embedder describes only {int(found.sum())} of the {len(found)} images in {flag} {ref.path} "
                            f"(e.g. no face found); at least {max(MIN_IMAGES, int(np.ceil(MIN_DESCRIBED * len(found))))} are needed")
    return vec[found], names


def measure_leakage(generator: str, train_dir: str | Path, holdout_dir: str | Path, n: int = 10_000, seed: int = 0,
                    embedder: str | None = None, theta: float | None = None, run: str | Path | None = None, alpha: float = ALPHA,
                    generator_options: dict | None = None, embedder_options: dict | None = None, device: str = "auto",
                    threads: int | None = None, batch_size: int = BATCH_SIZE, calibrator: str | Path | None = None,
                    force: bool = False, gallery: int = 12, progress=None) -> dict:
    """Generate ``n`` images of ``generator``, describe them and both folders, and compare (see the
    module docstring). With ``run`` (an audit's run directory) the embedder defaults to the run's and
    its dense modes are matched against the training set. Plain data out; ``_gallery`` holds the
    strongest matches' generated images for the page."""
    from gancheck.inputs import build_inputs

    if n < MIN_IMAGES:
        raise GancheckError(f"--n must be at least {MIN_IMAGES}, got {n}")
    if not 0 < alpha < 1:
        raise GancheckError(f"--alpha must lie in (0, 1), got {alpha}")
    if embedder is None:
        embedder, embedder_options = _run_embedder(run, embedder_options)
    train_ref, holdout_ref = load_sets(train_dir, holdout_dir)
    source, embedding = build_inputs(generator, embedder, generator_options, embedder_options, device=device, threads=threads,
                                     batch_size=batch_size, calibrator=str(calibrator) if calibrator is not None else None, force=force)
    theta = float(embedding.default_theta if theta is None else theta)
    if not 0 < theta <= 1:
        raise GancheckError(f"--theta must lie in (0, 1] (a normalised angular distance), got {theta}")
    source.prepare(seed)
    train, train_names = describe_set(train_ref, embedding, batch_size, progress, "train", "--train")
    holdout, holdout_names = describe_set(holdout_ref, embedding, batch_size, progress, "holdout", "--holdout")
    gen_idx = np.asarray(source.collection_indices(n), dtype=np.int64)
    gen, found, _ = describe_images(source.images, gen_idx, embedding, batch_size=batch_size, progress=progress, stage="generated")
    if found.sum() < MIN_IMAGES:
        raise GancheckError(f"only {int(found.sum())} of {n} generated images could be described; at least {MIN_IMAGES} are needed")
    stats = leakage_statistics(gen[found], train, holdout, theta, train_names, holdout_names, gen_idx[found], seed, alpha)
    out = {"format": "gancheck-leakage", "generator": str(generator), "train": str(Path(train_dir).resolve()),
           "holdout": str(Path(holdout_dir).resolve()), "embedder": embedding.describe(), "seed": int(seed), "n_requested": int(n),
           "train_images": len(train_ref.files), "holdout_images": len(holdout_ref.files)}
    out.update(stats)
    if run is not None:
        out["run"] = mode_matches(run, train, theta, train_names, embedding.describe())
    shown = out["matches"][:gallery]
    out["_gallery"] = dict(zip([m["sample"] for m in shown], source.images(np.array([m["sample"] for m in shown], dtype=np.int64))))
    out["_dirs"] = (train_ref.path, holdout_ref.path)
    return out


def _run_embedder(run: str | Path | None, options: dict | None) -> tuple[str, dict | None]:
    """The audit run's embedder and options (``pixel`` without a run)."""
    if run is None:
        return "pixel", options
    import json

    try:
        config = json.loads((Path(run) / "manifest.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        raise GancheckError(f"--run {run} has no readable manifest.json; give a run directory written by `gancheck audit --out`") from None
    return config.get("embedder", "pixel"), options if options else config.get("embedder_options")
