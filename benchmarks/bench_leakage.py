"""`gancheck leakage` against known truth on real images: scikit-learn's 1,797 digits.

    python benchmarks/bench_leakage.py                 # 100 random splits, copy shares 1%, 2%, 4%, 8% (~3 min on 2 cores)
    python benchmarks/bench_leakage.py --splits 200 --theta 0.05,0.1

Each split draws, from the shuffled digits, a training set (500), a held-out set (500) and a private
third (the other 797). The generator that copies nothing returns the private third; the copying one
replaces a share c of it by noisy copies (Gaussian noise, sd 0.02) of distinct training images.
Descriptors: pixel at 8 x 8; the statistics are gancheck.analysis.leakage.leakage_statistics, as the
command computes them. Printed: the false-alarm rates of both tests at 1% and 5% (with their binomial
tolerance), and per copy share the mean excess, the copy share recovered from it (excess over
1 - held-out share) and how often its interval covers the true share, the detection rate, and the
detection limit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedders.pixel import PixelEmbedder  # noqa: E402
from gancheck.analysis.leakage import leakage_statistics  # noqa: E402


def digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    x = load_digits().images / 16.0
    return np.repeat(x[..., None], 3, axis=3).astype(np.float32)


def one_split(images: np.ndarray, embed, seed: int, share: float, theta: float) -> dict:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    train, holdout, private = order[:500], order[500:1000], order[1000:]
    gen = images[private].copy()
    k = int(round(share * len(gen)))
    if k:
        src = rng.choice(500, k, replace=False)
        gen[:k] = np.clip(images[train[src]] + rng.normal(0, 0.02, gen[:k].shape), 0, 1)
    names = [str(i) for i in range(500)]
    return leakage_statistics(embed(gen), embed(images[train]), embed(images[holdout]), theta, names, names, seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=100)
    ap.add_argument("--theta", default="0.05")
    ap.add_argument("--shares", default="0.01,0.02,0.04,0.08")
    args = ap.parse_args()
    images, model = digits(), PixelEmbedder(8)
    embed = lambda x: model.embed(x)[0]  # noqa: E731
    for theta in (float(t) for t in args.theta.split(",")):
        null = [one_split(images, embed, s, 0.0, theta) for s in range(args.splits)]
        tol = lambda a: 2 * np.sqrt(a * (1 - a) / args.splits)  # noqa: E731
        for key in ("excess_p_value", "distance_p_value"):
            p = np.array([r[key] for r in null])
            print(f"theta {theta}: copies nothing, {args.splits} splits: {key} < 1%: {np.mean(p < 0.01):.3f} (nominal 0.01 +- {tol(0.01):.3f}), "
                  f"< 5%: {np.mean(p < 0.05):.3f} (0.05 +- {tol(0.05):.3f})")
        for share in (float(c) for c in args.shares.split(",")):
            rows = [one_split(images, embed, 1000 + s, share, theta) for s in range(max(args.splits // 4, 10))]
            exc = np.array([r["excess_share"] for r in rows])
            scale = np.array([1 - r["holdout_share"] for r in rows])  # a copy is near a held-out image at the held-out share's rate
            covered = np.mean([r["excess_share_ci_low"] / f <= share <= r["excess_share_ci_high"] / f for r, f in zip(rows, scale)])
            print(f"theta {theta}: copy share {share:.0%}: excess {exc.mean():.4f} (sd {exc.std():.4f}), copy share recovered as "
                  f"excess / (1 - holdout share) {np.mean(exc / scale):.4f}, its interval covers {share:.0%} in {covered:.2f}, "
                  f"leak found in {np.mean([r['verdict']['status'] == 'leak' for r in rows]):.2f}, "
                  f"detection limit {np.mean([r['detection_limit'] for r in rows]):.4f}")

if __name__ == "__main__":
    main()
