"""How a latent region's precision grows with labelled samples: the learning curve behind
"what would --modes K cost". For each dense mode, region models (one binary model per mode, as
``is`` fits them) are trained on the first N labelled prior draws, N doubling, and scored by their
average precision on the last ``--test`` draws, which no model saw. Prints one row per family and N,
and the gain per doubling of N.

The labelled prior draws are the run's own samples (an audit saved with --save-embeddings), the
calibration proof's plain draw (described here, as calibrate would, if the run has none yet), and
``--extra`` more prior draws described here (sample indices after the plain draw's, the run's
seed; cached in --work, so a second run is quick).

    # the real DCGAN (audited with --embedder dlib --align fixed, |C| = 1e4), 5 modes
    python benchmarks/bench_region_curve.py RUN_DIR --modes 5 --extra 20000
    # the same at the largest N, with the generated images as input (block means of S x S
    # pixels, 128 principal components), alone and next to the latent
    python benchmarks/bench_region_curve.py RUN_DIR --modes 5 --extra 20000 --pixels 16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def labelled(run: Path, extra: int, work: Path, modes: int):
    """``(latents, near (k, modes), fit data)`` of the run's prior draws, the proof's plain draw and
    ``extra`` new ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gancheck.calibration.fitdata import embed_samples, load_fit_data
    from gancheck.calibration.proof import FLOOR_OFFSET, plain_draw
    from gancheck.calibrators.regions import described
    from gancheck.maths import pairwise_distance

    data = load_fit_data(run, modes=modes)
    parts = [(data.indices, data.vectors), plain_draw(data, None)]
    if extra:
        cache = work / f"{run.name}-extra-{extra}.parquet"
        if not cache.is_file():
            idx = FLOOR_OFFSET + data.n + np.arange(extra, dtype=np.int64)
            idx, vec = embed_samples(data.source, data.embedder, idx, data.config)
            pq.write_table(pa.table({"sample_index": idx, "embedding": list(np.asarray(vec, np.float32))}), cache)
        t = pq.read_table(cache).to_pydict()
        parts.append((np.asarray(t["sample_index"], np.int64), np.asarray(t["embedding"], np.float32)))
    idx, vec = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    vec, found = described(vec, data.no_face)
    near = (pairwise_distance(vec, data.mode_vectors) <= data.r0) & found[:, None]
    z = data.prior.sample(data.seed, idx).reshape(len(idx), -1).astype(np.float32)
    return z, near, data


def pixel_features(data, z: np.ndarray, size: int, train: int) -> np.ndarray:
    """The generated images' block means on a ``size`` x ``size`` grid (for a generator that gives
    (N, C, H, W) batches, as the DCGAN does), reduced to 128 principal components (fitted on the
    first ``train`` rows) and scaled to unit variance there."""
    from sklearn.decomposition import PCA

    shape = data.source.latent_prior.shape
    images = [np.asarray(data.source.generate(z[s : s + 256].reshape((-1, *shape))), np.float32) for s in range(0, len(z), 256)]
    x = np.concatenate([im.reshape(len(im), im.shape[1], size, im.shape[2] // size, size, im.shape[3] // size).mean(axis=(3, 5)).reshape(len(im), -1)
                        for im in images])
    x = PCA(128, random_state=0).fit(x[:train]).transform(x)
    return (x / x[:train].std(axis=0)).astype(np.float32)


def scores(family: str, x: np.ndarray, near: np.ndarray, n: int, train: int, seed: int) -> list[float]:
    """Per mode: average precision on rows ``train:`` of ``family`` fitted on the first ``n`` rows."""
    from sklearn.metrics import average_precision_score

    from gancheck.calibrators.regions import fit_family

    return [float(average_precision_score(near[train:, m], fit_family(family, x[:n], near[:n, m].astype(int), seed).predict_proba(x[train:])[:, 1]))
            for m in range(near.shape[1])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--modes", type=int, default=5)
    ap.add_argument("--extra", type=int, default=0, help="more prior draws to describe (the descriptor's time)")
    ap.add_argument("--test", type=int, default=10_000)
    ap.add_argument("--families", nargs="+", default=["logistic", "mlp"])
    ap.add_argument("--pixels", type=int, default=0, metavar="S", help="also score the generated images' S x S block means")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gancheck-bench-region-curve"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    z, near, data = labelled(args.run, args.extra, args.work, args.modes)
    train = len(z) - args.test
    sizes = [train >> k for k in range(3, -1, -1)]
    print(f"{len(z):,} labelled prior draws ({train:,} to train, {args.test:,} to test); in-mode per mode: {near.sum(axis=0).tolist()}")
    for family in args.families:
        means = []
        for n in sizes:
            t0 = time.perf_counter()
            aps = scores(family, z, near, n, train, data.seed)
            means.append(float(np.mean(aps)))
            print(f"{family:<9} N = {n:>7,}: average precision per mode {np.round(aps, 3).tolist()}, mean {means[-1]:.3f} "
                  f"(base rate {near[train:].mean():.4f}; {time.perf_counter() - t0:.0f} s)", flush=True)
        gain = (means[-1] - means[0]) / np.log2(sizes[-1] / sizes[0])
        print(f"{family:<9} mean average precision x{means[-1] / means[0]:.2f} over x{sizes[-1] / sizes[0]:.0f} the labels: "
              f"+{gain:.3f} per doubling", flush=True)
    if args.pixels:
        pixels = pixel_features(data, z, args.pixels, train)
        for name, x in (("pixels", pixels), ("latent+pixels", np.hstack([z, pixels]))):
            for family in args.families:
                aps = scores(family, x, near, train, train, data.seed)
                print(f"{name} {family} N = {train:,}: average precision per mode {np.round(aps, 3).tolist()}, mean {np.mean(aps):.3f}", flush=True)


if __name__ == "__main__":
    main()
