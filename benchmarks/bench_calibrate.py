"""Calibrators measured by their own proof (a re-audit on fresh seeds): per method, the targeted
modes' share before and after, the fraction of the excess removed, the off-mode Fréchet ratio and
the cost. Prints one row per method.

    # the planted generator (15% planted collapse), |C| = 6000, defaults
    python benchmarks/bench_calibrate.py --planted --n 6000
    # any audited run (e.g. the real DCGAN with --embedder dlib --align fixed)
    python benchmarks/bench_calibrate.py --run RUN_DIR --methods is gmm --budget 6000 --modes 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def planted_run(n: int, work: Path) -> Path:
    from gancheck.api import audit
    from gancheck.sources.planted import build_planted_generator

    model = build_planted_generator(work / "planted15.onnx", fraction=0.15)
    run = work / f"planted-{n}"
    if not (run / "report.json").is_file():
        audit(str(model), out=run, n=n, anchors=200, seed=3, embedder="pixel", embedder_options={"size": 8}, save_embeddings=True)
    return run


def row(method: str, result: dict, seconds: float) -> str:
    t, fd, cost = result["total"], result["frechet"], result["cost"]
    removed = "n/a" if t["excess_removed"] is None else f"{100 * t['excess_removed']:.1f}%"
    b, a = result["before"]["worst_mode"]["mccs"], result["after"]["worst_mode"]["mccs"]
    region = result["params"].get("region") or result["params"].get("kind")
    return (f"{method:<10} {region:<9} share {100 * t['before']:6.2f}% -> {100 * t['after']:6.2f}% (floor {100 * t['floor']:.2f}%)  "
            f"excess removed {removed:>6}  worst-mode MCCS {b:.3f} -> {a:.3f} ({100 * (b - a) / b:.0f}% lower)  "
            f"Frechet {fd['ratio']:.2f}x floor  draws/kept {cost['draws_per_kept_sample']:.3f}  "
            f"budget {result['budget'].get('budget', 0)}  exit {0 if result['improved'] else 1}  {seconds:.0f} s")


def main() -> None:
    from gancheck.api import calibrate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path)
    ap.add_argument("--planted", action="store_true")
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gancheck-bench-calibrate"))
    ap.add_argument("--methods", nargs="+", default=["is", "gmm"])
    ap.add_argument("--budget", type=int, default=None)
    ap.add_argument("--modes", type=int, default=1)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    run = planted_run(args.n, args.work) if args.planted else args.run
    for method in args.methods:
        t0 = time.perf_counter()
        result = calibrate(run, method=method, modes=args.modes, budget=args.budget, overwrite=True,
                           out=args.work / f"{run.name}-{method}-{args.modes}.safetensors", proof_dir=args.work / f"{run.name}-{method}-{args.modes}-proof")
        print(row(method, result, time.perf_counter() - t0), flush=True)
        for i, m in enumerate(result["modes"]):
            removed = "n/a" if m["excess_removed"] is None else f"{100 * m['excess_removed']:.1f}%"
            print(f"    mode {i + 1}: {100 * m['before']['share']:.2f}% [{100 * m['before']['low']:.2f}, {100 * m['before']['high']:.2f}] -> "
                  f"{100 * m['after']['share']:.2f}% [{100 * m['after']['low']:.2f}, {100 * m['after']['high']:.2f}], excess removed {removed}")
        for i, r in enumerate(result["region"] or []):
            print(f"    region {i + 1}: precision {r['precision']:.3f} recall {r['recall']:.3f} on {r['held_out']} held out ({r['held_out_in_mode']} in mode)")


if __name__ == "__main__":
    main()
