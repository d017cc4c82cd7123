"""The cascade's price list and the latent methods' Fréchet allocation, on an audit run (issue 25).

    bash scripts/main.sh                                            # the DCGAN audit: runs/dcgan_digiface
    python benchmarks/bench_cascade.py runs/dcgan_digiface --budget 20000
    python benchmarks/bench_cascade.py runs/dcgan_digiface --budget 20000 --modes 5

No re-audit: every figure is the expected one on the proof's fresh plain draw (|C| samples the fits
never saw, described once and kept in RUN_DIR), each sample weighted by the calibrator's keep
probability, with its paired 95% bootstrap interval, as `gancheck calibrate` reports it; the
Fréchet figure is the shift that weighting adds off the modes, as a share of the noise floor (the
proof's ratio is about 1 + it). Side by side in one run:

- `is` and `gmm` with the Fréchet limit shared equally among the modes and by region precision;
- the cascade (screen `is`) for the price list's describe shares, and the share that
  `--max-descriptor-calls` C (default: 0.25 for one mode, 0.35 for several) would choose.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def expected(cal, data, latents, plain, near, off, vectors, floor) -> dict:
    from gancheck.calibration.proof import weighted_excess
    from gancheck.calibrators.regions import frechet_shift

    keep = cal.keep_described(latents, plain)
    w = weighted_excess(near, keep, data.typical_count / data.n)
    return {"removed": w["excess_removed"], "low": w["low"], "high": w["high"], "draws": 1.0 / keep.mean(),
            "calls": cal.descriptor_calls_per_candidate(latents), "frechet": frechet_shift(vectors[off], keep[off], data.seed) / floor}


def line(name: str, e: dict) -> str:
    return (f"{name:<44} {100 * e['removed']:6.1f}% [{100 * e['low']:5.1f}, {100 * e['high']:5.1f}]  draws {e['draws']:.3f}  "
            f"calls/candidate {e['calls']:.3f}  calls/kept {e['calls'] * e['draws']:.3f}  Fréchet shift {e['frechet']:.2f} x floor")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--budget", type=int, default=20000)
    p.add_argument("--modes", type=int, default=1)
    p.add_argument("--max-descriptor-calls", type=float, default=None)
    args = p.parse_args()
    calls = args.max_descriptor_calls or (0.25 if args.modes == 1 else 0.35)

    import gancheck.calibrators.regions as regions
    from gancheck.calibration.budget import spend_budget
    from gancheck.calibration.build import build_calibrator
    from gancheck.calibration.fitdata import load_fit_data
    from gancheck.calibration.proof import plain_draw
    from gancheck.calibrators import load_calibrator
    from gancheck.calibrators.regions import described, proof_noise_floor
    from gancheck.maths import pairwise_distance

    data = load_fit_data(args.run, modes=args.modes)
    spend_budget(data, args.budget)
    idx, plain = plain_draw(data, None)
    latents = data.prior.sample(data.seed, idx).reshape(len(idx), -1)
    near = pairwise_distance(plain, data.mode_vectors) <= data.r0
    vectors, found = described(plain, data.no_face)
    off = found & ~near.any(axis=1)
    floor = proof_noise_floor(vectors[off], np.flatnonzero(off))
    print(f"{args.run}: |C| = {data.n:,}, {args.modes} mode(s), budget {args.budget:,}; the fresh plain draw: {len(idx):,} samples, "
          f"{near.any(axis=1).mean():.2%} in the modes")
    tmp = Path(tempfile.mkdtemp(prefix="bench_cascade_"))
    rows, default = [], regions.ALLOCATION
    for method in ("is", "gmm"):
        for allocation in (("equal", "precision") if args.modes > 1 else ("equal",)):
            regions.ALLOCATION = allocation
            t0 = time.perf_counter()
            build_calibrator(data, method, tmp / f"{method}-{allocation}.safetensors")
            e = expected(load_calibrator(tmp / f"{method}-{allocation}.safetensors"), data, latents, plain, near, off, vectors, floor)
            rows.append(line(f"{method}, Fréchet limit shared {allocation}ly", e) + f"  (fit {time.perf_counter() - t0:.0f} s)")
            print(rows[-1], flush=True)
    regions.ALLOCATION = default
    t0 = time.perf_counter()
    build_calibrator(data, "cascade", tmp / "cascade.safetensors", max_descriptor_calls=calls)
    cascade = load_calibrator(tmp / "cascade.safetensors")
    print(f"cascade (screen is), fitted in {time.perf_counter() - t0:.0f} s; chosen by --max-descriptor-calls {calls}: describe share "
          f"{cascade.header['params']['describe_share']:.2f}")
    print(line("cascade at the chosen share", expected(cascade, data, latents, plain, near, off, vectors, floor)))
    predicted = {r["describe_share"]: r for r in cascade.header["fit"]["predicted_price_list"]}
    from gancheck.calibration.proof import price_list

    for r in price_list(cascade, latents, plain, near, data):
        q = r["describe_share"]
        print(f"price list, describe share {q:4.0%}: removed {100 * r['excess_removed']:5.1f}% [{100 * r['low']:5.1f}, {100 * r['high']:5.1f}] "
              f"(predicted on the run's held-out samples {100 * predicted[q]['excess_removed']:5.1f}%), draws {r['draws_per_kept_sample']:.3f}, "
              f"calls/candidate {r['descriptor_calls_per_candidate']:.3f}, calls/kept {r['descriptor_calls_per_kept_sample']:.3f}, "
              f"Fréchet shift {r['frechet_shift_vs_floor']:.2f} x floor")


if __name__ == "__main__":
    main()
