"""What a generator cannot generate: its share of each region of the real data.

The reference images' descriptors are binned by K-means (FAISS, seeded); generated images are
assigned to the nearest bin centre; each bin's generated share is tested against its reference
share with a two-proportion z-test, and the p-values are corrected for K tests with the
Benjamini-Hochberg false-discovery rate. The number of statistically different bins, NDB, over K is
Richardson and Weiss's (NeurIPS 2018) measure; a bin whose generated share is significantly lower
than its reference share is *dropped* (under-generated), and its most typical reference images
(closest to the bin centre) show what the generator misses (Bau et al., ICCV 2019, in descriptor
space instead of segmentation classes).

Pure functions on arrays, then :func:`measure_coverage`, which makes and describes the images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gancheck.analysis.proportions import ALPHA, bh_q_values, two_proportion_test, wilson_interval
from gancheck.defaults import BATCH_SIZE
from gancheck.errors import GancheckError

#: A bin holds this many reference images on average when K is chosen from the reference size.
REFERENCE_PER_BIN = 50
#: Fewest reference images per bin (on average) for which K bins are accepted.
MIN_REFERENCE_PER_BIN = 10
MAX_BINS = 100
EXAMPLES = 6


def choose_bins(n_reference: int, bins: int | None = None) -> int:
    """K: ``bins`` when the reference holds enough images for it, else one bin per
    ``REFERENCE_PER_BIN`` reference images (2 to ``MAX_BINS``)."""
    if bins is None:
        bins = int(np.clip(n_reference // REFERENCE_PER_BIN, 2, MAX_BINS))
    if bins < 2:
        raise GancheckError(f"--bins must be at least 2, got {bins}")
    if n_reference < MIN_REFERENCE_PER_BIN * bins:
        raise GancheckError(f"the reference holds {n_reference} described images, too few for {bins} bins (at least "
                            f"{MIN_REFERENCE_PER_BIN} per bin: {MIN_REFERENCE_PER_BIN * bins}); add real images or pass "
                            f"--bins {max(n_reference // MIN_REFERENCE_PER_BIN, 2)} or fewer")
    return int(bins)


def fit_bins(reference: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """float32 (k, D) K-means centres of the reference descriptors (n, D) (FAISS, seeded)."""
    import faiss

    x = np.ascontiguousarray(reference, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], int(k), niter=50, nredo=3, seed=int(seed) % (2**31), verbose=False, min_points_per_centroid=1)
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32)


def assign_bins(vectors: np.ndarray, centres: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """``(bin, squared distance)`` of each vector's nearest centre, in float64 (no batching effect)."""
    c = np.asarray(centres, dtype=np.float64)
    c_sq = (c * c).sum(axis=1)
    bins, dist = np.empty(len(vectors), np.int64), np.empty(len(vectors))
    for s in range(0, len(vectors), chunk):
        v = np.asarray(vectors[s : s + chunk], dtype=np.float64)
        d = (v * v).sum(axis=1)[:, None] - 2.0 * v @ c.T + c_sq[None, :]
        bins[s : s + chunk] = np.argmin(d, axis=1)
        dist[s : s + chunk] = np.maximum(d[np.arange(len(v)), bins[s : s + chunk]], 0.0)
    return bins, dist


def bin_table(reference_bins: np.ndarray, generated_bins: np.ndarray, k: int, alpha: float = ALPHA, level: float = 0.95) -> dict:
    """Per bin: counts, shares with Wilson intervals, z, p and Benjamini-Hochberg q; NDB and NDB/K."""
    n_ref, n_gen = len(reference_bins), len(generated_bins)
    ref = np.bincount(reference_bins, minlength=k)
    gen = np.bincount(generated_bins, minlength=k)
    z, p = two_proportion_test(ref, n_ref, gen, n_gen)
    q = bh_q_values(p)
    ref_lo, ref_hi = wilson_interval(ref, n_ref, level)
    gen_lo, gen_hi = wilson_interval(gen, n_gen, level)
    different = q < alpha
    return {"k": int(k), "alpha": alpha, "level": level, "n_reference": n_ref, "n_generated": n_gen,
            "ndb": int(different.sum()), "ndb_over_k": float(different.mean()),
            "under_generated": int((different & (z < 0)).sum()), "over_generated": int((different & (z > 0)).sum()),
            "reference_count": ref, "generated_count": gen, "reference_share": ref / n_ref, "generated_share": gen / n_gen,
            "reference_ci": np.stack([ref_lo, ref_hi], 1), "generated_ci": np.stack([gen_lo, gen_hi], 1), "z": z, "p_value": p, "q_value": q}


def typical_members(bins: np.ndarray, sq_dist: np.ndarray, k: int, count: int = EXAMPLES) -> list[np.ndarray]:
    """Per bin, the indices of its ``count`` members closest to its centre (ties by index)."""
    order = np.lexsort((np.arange(len(bins)), sq_dist, bins))
    sorted_bins = bins[order]
    starts = np.searchsorted(sorted_bins, np.arange(k))
    ends = np.searchsorted(sorted_bins, np.arange(k), side="right")
    return [order[s : min(e, s + count)] for s, e in zip(starts, ends)]


def dropped_bins(table: dict, examples: list[np.ndarray], names: list[str]) -> list[dict]:
    """The under-generated bins (q < alpha, generated share below reference share), strongest first:
    the smallest generated-to-reference ratio, then the largest reference share."""
    ref, gen, q = table["reference_share"], table["generated_share"], table["q_value"]
    under = np.flatnonzero((q < table["alpha"]) & (gen < ref))
    ratio = gen[under] / ref[under]
    order = under[np.lexsort((under, -ref[under], ratio))]
    return [{"bin": int(b), "reference_share": float(ref[b]), "generated_share": float(gen[b]), "ratio": float(gen[b] / ref[b]),
             "reference_ci": [float(x) for x in table["reference_ci"][b]], "generated_ci": [float(x) for x in table["generated_ci"][b]],
             "q_value": float(q[b]), "examples": [names[i] for i in examples[b]]} for b in order]


def bins_as_rows(table: dict) -> list[dict]:
    """The per-bin table as JSON rows."""
    return [{"bin": b, "reference_count": int(table["reference_count"][b]), "generated_count": int(table["generated_count"][b]),
             "reference_share": float(table["reference_share"][b]), "generated_share": float(table["generated_share"][b]),
             "reference_ci": [float(x) for x in table["reference_ci"][b]], "generated_ci": [float(x) for x in table["generated_ci"][b]],
             "z": float(table["z"][b]), "p_value": float(table["p_value"][b]), "q_value": float(table["q_value"][b])}
            for b in range(table["k"])]


def coverage_statistics(reference: np.ndarray, generated: np.ndarray, names: list[str], bins: int | None = None,
                        seed: int = 0, alpha: float = ALPHA) -> dict:
    """The whole comparison on descriptor vectors: reference (n, D) with file ``names``, generated (m, D)."""
    if reference.shape[1] != generated.shape[1]:
        raise GancheckError(f"reference descriptors have {reference.shape[1]} dimensions, generated ones {generated.shape[1]}; use one embedder for both")
    k = choose_bins(len(reference), bins)
    centres = fit_bins(reference, k, seed)
    ref_bins, ref_dist = assign_bins(reference, centres)
    return compare_bins(ref_bins, ref_dist, assign_bins(generated, centres)[0], k, names, seed, alpha)


def compare_bins(ref_bins: np.ndarray, ref_dist: np.ndarray, gen_bins: np.ndarray, k: int, names: list[str], seed: int = 0,
                 alpha: float = ALPHA) -> dict:
    """NDB/K, the dropped bins and the per-bin table from the reference images' bins and squared
    distances to their centres and the generated images' bins."""
    if len(gen_bins) < 2:
        raise GancheckError(f"only {len(gen_bins)} generated images could be described; raise --n or check the embedder")
    table = bin_table(ref_bins, gen_bins, k, alpha)
    examples = typical_members(ref_bins, ref_dist, k)
    summary = {key: table[key] for key in ("k", "alpha", "level", "n_reference", "n_generated", "ndb", "ndb_over_k", "under_generated", "over_generated")}
    return dict(summary, dropped=dropped_bins(table, examples, names), bins=bins_as_rows(table),
                test="two-proportion z-test per bin (pooled), Benjamini-Hochberg FDR over the K bins; Wilson intervals",
                binning=f"FAISS K-means of the reference descriptors, seed {seed}; generated images go to the nearest centre")


def load_reference(reference_dir: str | Path, flag: str = "--reference"):
    """The image folder as a source whose index i is its i-th file in sorted order."""
    from gancheck.sources.folder import FolderSource

    path = Path(reference_dir)
    if not path.is_dir():
        raise GancheckError(f"{flag} {path} is not a folder; give a folder of real images (PNG/JPEG/WebP)")
    ref = FolderSource(str(path))
    ref.prepare(0)
    return ref


def describe_images(load, indices: np.ndarray, embedder, scorer=None, centres: np.ndarray | None = None, batch_size: int = BATCH_SIZE,
                    progress=None, stage: str = "images") -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(vectors, found, scores)`` of images ``load(batch of indices)``: the descriptor's vectors (or,
    given bin ``centres``, each image's bin, so that no vector is kept) and mask, and the attribute
    model's scores (None without one); every image is made once."""
    vectors, found, scores = [], [], []
    for start in range(0, len(indices), batch_size):
        images = load(indices[start : start + batch_size])
        v, f = embedder.embed(images)
        vectors.append(np.asarray(v, dtype=np.float32) if centres is None else assign_bins(v, centres)[0])
        found.append(np.asarray(f, dtype=bool))
        if scorer is not None:
            scores.append(scorer.scores(images))
        if progress is not None:
            progress(stage, min(start + batch_size, len(indices)), len(indices))
    if not vectors:
        raise GancheckError("no images to describe")
    return np.concatenate(vectors), np.concatenate(found), (np.concatenate(scores) if scorer is not None else None)


def check_attribute_count(scorer, probe: np.ndarray, names: list[str]) -> None:
    """One-line error when the classifier's outputs per image are not as many as ``names``."""
    got = scorer.scores(probe).shape[1]
    if got != len(names):
        raise GancheckError(f"the classifier returns {got} scores per image but {len(names)} --attribute-names were given "
                            f"({','.join(names)}); name every output, in order")


def load_attribute_model(spec: str, input_range: str = "-1,1", device: str = "auto", threads: int | None = None):
    """The attribute classifier named ``onnx:PATH``."""
    from embedders.scorer import ImageScorer

    kind, sep, path = str(spec).partition(":")
    if not sep or kind != "onnx" or not path:
        raise GancheckError(f"--attributes takes onnx:PATH (an ONNX classifier from images to class scores), got {spec!r}")
    return ImageScorer(path, input_range=input_range, device=device, threads=threads, what="attribute classifier")


def measure_coverage(generator: str, reference_dir: str | Path, n: int = 10_000, seed: int = 0, embedder: str = "pixel",
                     bins: int | None = None, alpha: float = ALPHA, attributes: str | None = None, attribute_names=None,
                     attribute_kind: str = "multiclass", attribute_range: str = "-1,1", generator_options: dict | None = None,
                     embedder_options: dict | None = None, device: str = "auto", threads: int | None = None,
                     batch_size: int = BATCH_SIZE, calibrator: str | Path | None = None, force: bool = False, progress=None) -> dict:
    """Generate ``n`` images of ``generator``, describe them and the reference folder, and compare
    (see the module docstring); with ``attributes`` also the attribute statistics; with ``calibrator``
    the generator's latents are drawn through that calibrator file. Plain data out;
    ``_reference_dir`` is for the page's pictures."""
    from gancheck.analysis.attributes import KINDS, attribute_statistics, parse_names
    from gancheck.inputs import build_inputs

    if not 0 < alpha < 1:
        raise GancheckError(f"--alpha must lie in (0, 1), got {alpha}")
    if n < 2:
        raise GancheckError(f"--n must be at least 2, got {n}")
    if attribute_kind not in KINDS:
        raise GancheckError(f"--attribute-kind must be one of {', '.join(KINDS)}, got {attribute_kind!r}")
    names = parse_names(attribute_names) if attributes else None
    scorer = load_attribute_model(attributes, attribute_range, device, threads) if attributes else None
    ref = load_reference(reference_dir)
    source, embedding = build_inputs(generator, embedder, generator_options, embedder_options, device=device,
                                                   threads=threads, batch_size=batch_size,
                                                   calibrator=str(calibrator) if calibrator is not None else None, force=force)
    source.prepare(seed)
    if scorer is not None:  # a classifier that does not match its names fails now, not after every image is made
        check_attribute_count(scorer, ref.images(np.arange(1)), names)
    ref_vec, ref_found, ref_scores = describe_images(ref.images, np.arange(len(ref.files), dtype=np.int64), embedding, scorer,
                                                     batch_size=batch_size, progress=progress, stage="reference")
    files = [str(f.relative_to(ref.path)) for f in ref.files]
    described = [f for f, ok in zip(files, ref_found) if ok]
    k = choose_bins(int(ref_found.sum()), bins)
    centres = fit_bins(ref_vec[ref_found], k, seed)
    ref_bins, ref_dist = assign_bins(ref_vec[ref_found], centres)
    gen_idx = np.asarray(source.collection_indices(n), dtype=np.int64)
    gen_bins, gen_found, gen_scores = describe_images(source.images, gen_idx, embedding, scorer, centres, batch_size, progress, "generated")
    stats = compare_bins(ref_bins, ref_dist, gen_bins[gen_found], k, described, seed, alpha)
    out = {"format": "gancheck-coverage", "generator": str(generator), "calibrator": str(calibrator) if calibrator is not None else None,
           "reference": str(Path(reference_dir).resolve()),
           "embedder": embedding.describe(), "seed": int(seed), "n_requested": int(n),
           "reference_images": len(files), "reference_described": int(ref_found.sum()), "generated_described": int(gen_found.sum())}
    out.update(stats)
    if scorer is not None:
        out["attributes"] = dict(attribute_statistics(ref_scores, gen_scores, names, attribute_kind, scorer.output == "probability", alpha),
                                 model=scorer.describe())
    out["_reference_dir"] = ref.path
    return out
