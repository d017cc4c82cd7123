"""End-to-end efficiency, memory against n, and Ray scaling of `gancheck audit`, in one run.

    python benchmarks/bench_pipeline.py           # n = 1e5 timing; memory at 1e4, 1e5, 1e6 (~10 min on 2 cores)
    python benchmarks/bench_pipeline.py --quick   # n = 2e4; memory at 1e3, 1e4, 1e5

1. Wall time of a full audit next to each stage timed alone on the same samples: the generator
   only, the embedder only (on pre-generated images) and the statistics only (on pre-computed
   embeddings). With the stages overlapped the audit should take close to the slowest stage,
   not their sum.
2. Peak RSS of a fresh audit process at growing n (small generator, pixel descriptor): flat.
3. The same audit on Ray with 1 and 2 local workers: identical reports, and the speed-up.
Uses the built-in demo generator unless --generator/--embedder say otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gancheck.api import audit  # noqa: E402
from gancheck.inputs import build_inputs  # noqa: E402
from gancheck.run.config import AuditConfig  # noqa: E402
from gancheck.sources.planted import DEMO_MODEL  # noqa: E402
from gancheck.engine.accumulator import CollapseAccumulator  # noqa: E402


def stage_times(generator: str, embedder: str, n: int, anchors: int, batch: int, **options) -> dict:
    """Each stage alone on the same n samples: generator, descriptor (on the generated images),
    statistics (on the vectors). ``options``: ``embedder_options``, ``device``."""
    source, desc = build_inputs(generator, embedder, batch_size=batch, **options)
    source.prepare(0)
    idx = np.arange(n)
    t = time.perf_counter()
    images = [source.images(idx[i : i + batch]) for i in range(0, n, batch)]
    gen = time.perf_counter() - t
    t = time.perf_counter()
    vectors = [desc.embed(im)[0] for im in images]
    emb = time.perf_counter() - t
    del images
    a = desc.embed(source.images(source.anchor_indices(anchors)))[0]
    cfg = AuditConfig()
    acc = CollapseAccumulator(a, desc.default_theta, desc.default_radius, tile=cfg.chunk_size, keep_neighbors=cfg.neighbors_k)
    t = time.perf_counter()
    for i, v in enumerate(vectors):
        acc.update(v, idx[i * batch : i * batch + len(v)])
    stats = time.perf_counter() - t
    return {"generator_s": gen, "embedder_s": emb, "statistics_s": stats}


def audit_time(generator, embedder, n, anchors, batch, **kw) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        # html=False: rendering report.html is not a pipeline stage (it takes ~3 s whatever n is)
        report = audit(generator, n=n, anchors=anchors, embedder=embedder, out=Path(tmp) / "run", batch_size=batch, html=False, **kw)
        return time.perf_counter() - t, report


def peak_rss_mib(generator, embedder, n, anchors, **options) -> float:
    """Peak RSS of a fresh process running the audit; ``options`` go to ``audit`` (their reprs)."""
    extra = "".join(f", {k}={v!r}" for k, v in options.items())
    code = ("import resource, sys, tempfile; from gancheck.api import audit;"
            f"d = tempfile.mkdtemp(); audit({generator!r}, n={n}, anchors={anchors}, embedder={embedder!r}, out=d + '/run'{extra});"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1])


def comparable(r):
    return {k: v for k, v in r.items() if k not in ("generator", "config")}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default=str(DEMO_MODEL))
    p.add_argument("--embedder", default="pixel")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--anchors", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.n = 20_000
    mem_sizes = (1_000, 10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)

    stages = stage_times(args.generator, args.embedder, args.n, args.anchors, args.batch_size)
    wall, report = audit_time(args.generator, args.embedder, args.n, args.anchors, args.batch_size)
    slowest, total = max(stages.values()), sum(stages.values())
    out = {"n": args.n, "anchors": args.anchors, "stages": stages, "audit_s": wall,
           "audit_over_slowest": wall / slowest, "audit_over_sum": wall / total}
    out["peak_rss_mib"] = {n: peak_rss_mib(args.generator, "pixel", n, args.anchors) for n in mem_sizes}
    if not args.skip_ray:
        t1, r1 = audit_time(args.generator, args.embedder, args.n, args.anchors, args.batch_size, executor="ray", workers=1)
        import ray

        ray.shutdown()
        t2, r2 = audit_time(args.generator, args.embedder, args.n, args.anchors, args.batch_size, executor="ray", workers=2)
        out["ray"] = {"workers1_s": t1, "workers2_s": t2, "speedup": t1 / t2,
                      "identical_to_single_process": comparable(r1) == comparable(r2) == comparable(report)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"audit of {Path(args.generator).name} with {args.embedder}: n = {args.n:,}, anchors = {args.anchors:,}, batch {args.batch_size} ({os.cpu_count()} cores)")
    for k, v in stages.items():
        print(f"  {k[:-2]:>11} alone: {v:6.2f} s")
    print(f"  full audit:       {wall:6.2f} s = {out['audit_over_slowest']:.2f}x the slowest stage, {out['audit_over_sum']:.2f}x their sum")
    mem = list(out["peak_rss_mib"].items())
    print("peak RSS: " + ", ".join(f"n = {n:,}: {m:.0f} MiB" for n, m in mem) + f"  (last/first {mem[-1][1] / mem[0][1]:.2f})")
    if "ray" in out:
        r = out["ray"]
        print(f"ray: 1 worker {r['workers1_s']:.1f} s, 2 workers {r['workers2_s']:.1f} s, speed-up {r['speedup']:.2f}x, "
              f"reports identical to the single-process run: {r['identical_to_single_process']}")


if __name__ == "__main__":
    main()
