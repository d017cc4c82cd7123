"""Statistics engine throughput and memory, measured side by side in one run.

    python benchmarks/bench_engine.py            # |A| = 1e4, |C| = 1e5, d = 512 (a few minutes on 2 cores)
    python benchmarks/bench_engine.py --quick    # smaller shapes, for a smoke run

Compares, on the same unit vectors: (a) the bare float32 product A @ C.T tile by tile (the floor
for any exact method), (b) dense float64 tiles that evaluate arccos and exp for every
anchor-sample pair (a batched form of the published code's arithmetic, not its per-anchor
float32 loop, which is slower still), and the engine with its blas and faiss backends, on random
directions and on a collection where 5% of samples are copies of one identity. Then peak RSS of
the engine for |C| = 1e5 and 1e6 (each in a fresh process) to show memory does not grow with |C|.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gancheck.engine.accumulator import CollapseAccumulator  # noqa: E402
from gancheck.maths import angular_distance, similarity  # noqa: E402

THETA, RADIUS, TILE = 0.3, 0.25, 4096


def unit_batches(n: int, d: int, seed: int, collapsed: float = 0.0, batch: int = TILE):
    """Yields float32 unit vectors in batches (never the whole collection at once)."""
    rng = np.random.default_rng(seed)
    mode = rng.standard_normal(d).astype(np.float32)
    for start in range(0, n, batch):
        x = rng.standard_normal((min(batch, n - start), d)).astype(np.float32)
        if collapsed:
            x[rng.random(len(x)) < collapsed] = mode
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def bare_product(a, batches):
    out = np.empty((len(a), TILE), np.float32)  # a reused buffer: the fastest plain product numpy offers
    for c in batches:
        np.matmul(a, c.T, out=out[:, : len(c)] if len(c) == TILE else None)


def dense_tiles(a, batches):
    total = np.zeros(len(a))
    for c in batches:
        total += similarity(angular_distance((a @ c.T).astype(np.float64)), THETA).sum(axis=1)
    return total


def engine(a, batches, backend):
    acc = CollapseAccumulator(a, THETA, RADIUS, backend=backend, tile=TILE)
    for c in batches:
        acc.update(c, np.zeros(len(c), dtype=np.int64))
    return acc.result()


def timed(fn, *args):
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def peak_rss_child(n_c: int, n_a: int, d: int) -> float:
    """Peak RSS (MiB) of a fresh process that streams |C| = n_c through the engine."""
    code = (f"import sys, resource; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_engine as b; import numpy as np;"
            f"a = next(b.unit_batches({n_a}, {d}, 1, batch={n_a})); b.engine(a, b.unit_batches({n_c}, {d}, 2), 'blas');"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--anchors", type=int, default=10_000)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--mem-anchors", type=int, default=2_000, help="|A| for the memory runs (kept small so |C| = 1e6 finishes in minutes)")
    p.add_argument("--quick", action="store_true", help="|A| = 2000, |C| = 2e4; memory at 1e4 and 1e5")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best time of each is reported")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.anchors, args.n = 2000, 20_000
    a = next(unit_batches(args.anchors, args.dim, 1, batch=args.anchors))
    flops = 2.0 * args.anchors * args.n * args.dim
    rows = {}
    for name, collapsed in (("random", 0.0), ("collapsed5%", 0.05)):
        batches = lambda: unit_batches(args.n, args.dim, 2, collapsed)  # noqa: E731
        runs = {"bare_product_s": lambda: timed(bare_product, a, batches()),
                "engine_blas_s": lambda: timed(engine, a, batches(), "blas"),
                "engine_faiss_s": lambda: timed(engine, a, batches(), "faiss")}
        if name == "random":
            runs["dense_tiles_s"] = lambda: timed(dense_tiles, a, batches())
        # Interleaved repeats, best of each: a noisy machine slows single runs, never speeds them up.
        times = {k: [] for k in runs}
        for _ in range(args.repeats):
            for k, run in runs.items():
                times[k].append(run())
        rows[name] = {k: min(v) for k, v in times.items()}
        rows[name].setdefault("dense_tiles_s", None)
    mem_sizes = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    mem = {n: peak_rss_child(n, args.mem_anchors, args.dim) for n in mem_sizes}
    result = {"anchors": args.anchors, "n": args.n, "dim": args.dim, "timings": rows, "peak_rss_mib": mem}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"|A| = {args.anchors:,}  |C| = {args.n:,}  d = {args.dim}  (theta {THETA}, r {RADIUS}, tile {TILE})")
    for name, r in rows.items():
        bare = r["bare_product_s"]
        print(f"\n[{name}] bare float32 product: {bare:.2f} s ({flops / bare / 1e9:.0f} GFLOP/s)")
        if r["dense_tiles_s"]:
            print(f"  dense float64 tiles (arccos and exp for every pair): {r['dense_tiles_s']:.2f} s")
        for be in ("blas", "faiss"):
            t = r[f"engine_{be}_s"]
            line = f"  engine ({be}): {t:.2f} s   throughput vs bare product: {bare / t:.2f}x"
            if r["dense_tiles_s"]:
                line += f"   speed-up over the dense tiles: {r['dense_tiles_s'] / t:.1f}x"
            print(line)
    (n1, m1), (n2, m2) = mem.items()
    print(f"\npeak RSS with |A| = {args.mem_anchors:,}: |C| = {n1:,}: {m1:.0f} MiB, |C| = {n2:,}: {m2:.0f} MiB (ratio {m2 / m1:.2f})")


if __name__ == "__main__":
    main()
