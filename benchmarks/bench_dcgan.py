"""A real audit at scale: the DCGAN face generator with dlib's descriptor, dlib's own vs the ONNX path.

    python benchmarks/bench_dcgan.py                       # descriptor table; audit |C| = 3e4, |A| = 1000; memory 3e4, 1e5
    python benchmarks/bench_dcgan.py --n 10000 --mem ''    # what fits on a loaded machine

Needs examples/dcgan_digiface/dcgan_digiface.onnx (examples/dcgan_digiface/export_onnx.py).

1. Descriptor throughput on real DCGAN chips (``--align fixed``) per batch size: dlib's own
   ``compute_face_descriptor`` (engine=dlib, two worker processes) vs the ONNX graph in onnxruntime
   (engine=onnx), side by side, and the preprocessing (the batch's vectorised fixed warp and uint8
   conversion) as a share of the ONNX model's time.
2. The audit (engine=onnx, ``--align fixed``): each stage alone on the same samples (generator,
   descriptor, statistics) and the end-to-end wall time, as a ratio to the slowest stage.
3. Peak RSS of a fresh audit process at each ``--mem`` size (goal: flat).
The load average is printed with every part: on a shared machine compare ratios, not rates.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gancheck.inputs import build_inputs  # noqa: E402
from gancheck.images import to_uint8  # noqa: E402
from embedders.dlib_resnet import CHIP_SIZE, CHIP_TEMPLATE  # noqa: E402
from embedders.face_align import fixed_crop  # noqa: E402
from bench_pipeline import audit_time, peak_rss_mib, stage_times  # noqa: E402  (this folder: the same stage timings)

DCGAN = ROOT / "examples" / "dcgan_digiface" / "dcgan_digiface.onnx"
FIXED = {"align": "fixed"}


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def frames(n: int, batch: int = 256) -> np.ndarray:
    source, _ = build_inputs(str(DCGAN), "pixel", batch_size=batch)
    source.prepare(0)
    return np.concatenate([source.images(np.arange(i, min(n, i + batch))) for i in range(0, n, batch)])


def rate(fn, batch: np.ndarray, min_items: int, min_s: float) -> float:
    """Items per second of ``fn(batch)``, repeated until ``min_items`` items and ``min_s`` seconds."""
    fn(batch[:1])  # warm-up: sessions, worker processes
    done, t = 0, time.perf_counter()
    while done < min_items or time.perf_counter() - t < min_s:
        fn(batch)
        done += len(batch)
    return done / (time.perf_counter() - t)


def descriptor_table(images: np.ndarray, batches: list[int], dlib_batches: list[int], min_items: int, min_s: float) -> None:
    from embedders.base import load_embedder

    print(f"1. descriptor throughput on real DCGAN chips (--align fixed), {os.cpu_count()} cores, {load()}")
    onnx = load_embedder("dlib", device="cpu", align="fixed", engine="onnx")
    own = load_embedder("dlib", device="cpu", align="fixed", engine="dlib") if dlib_batches else None
    print(f"   {'batch':>5}  {'dlib own/s':>10}  {'onnx/s':>8}  {'ratio':>6}  {'prep share':>10}")
    for b in batches:
        frames_b = images[:b]
        chips = to_uint8(fixed_crop(frames_b, CHIP_TEMPLATE, CHIP_SIZE, "arcface"))
        model_rate = rate(onnx._engine.descriptor.describe_chips, chips, min_items, min_s)
        prep_rate = rate(lambda x: to_uint8(fixed_crop(x, CHIP_TEMPLATE, CHIP_SIZE, "arcface")), frames_b, min_items, min_s)
        onnx_rate = rate(onnx.embed, frames_b, min_items, min_s)
        own_rate = rate(own.embed, frames_b, min_items, min_s) if b in dlib_batches else float("nan")
        print(f"   {b:>5}  {own_rate:>10.1f}  {onnx_rate:>8.1f}  {onnx_rate / own_rate:>5.1f}x  {model_rate / prep_rate:>9.1%}")
    if own is not None:
        own.close()


#: what every audit of this benchmark shares: dlib's descriptor on the fixed template, on the CPU
DCGAN_AUDIT = {"embedder_options": FIXED, "device": "cpu"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,4,16,64,128,256")
    p.add_argument("--dlib-batches", default="1,16,64,256", help="batch sizes at which dlib's own (slow) is also timed")
    p.add_argument("--min-items", type=int, default=256)
    p.add_argument("--min-seconds", type=float, default=3.0)
    p.add_argument("--n", type=int, default=30_000)
    p.add_argument("--anchors", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--mem", default="30000,100000", help="audit sizes for peak RSS ('' to skip)")
    p.add_argument("--skip-descriptor", action="store_true")
    p.add_argument("--skip-audit", action="store_true")
    args = p.parse_args()
    if not DCGAN.is_file():
        sys.exit(f"{DCGAN} missing: run python examples/dcgan_digiface/export_onnx.py first")
    batches = [int(b) for b in args.batches.split(",")]
    if not args.skip_descriptor:
        own = [int(b) for b in args.dlib_batches.split(",") if b]
        descriptor_table(frames(max(batches)), batches, own, args.min_items, args.min_seconds)
    if not args.skip_audit:
        audit_part(args)
    if args.mem:
        sizes = [int(s) for s in args.mem.split(",")]
        mem = [(n, peak_rss_mib(str(DCGAN), "dlib", n, args.anchors, html=False, **DCGAN_AUDIT)) for n in sizes]
        print("3. peak RSS: " + ", ".join(f"|C| = {n:,}: {m:.0f} MiB" for n, m in mem) + f"  (last/first {mem[-1][1] / mem[0][1]:.2f}); {load()}")


def audit_part(args) -> None:
    print(f"2. audit of the DCGAN, dlib --align fixed (engine=onnx), |C| = {args.n:,}, |A| = {args.anchors:,}, batch {args.batch_size}; {load()}")
    st = stage_times(str(DCGAN), "dlib", args.n, args.anchors, args.batch_size, **DCGAN_AUDIT)
    for k, v in st.items():
        print(f"   {k.removesuffix('_s'):>11} alone: {v:7.1f} s  ({args.n / v:8.1f} images/s)")
    wall = audit_time(str(DCGAN), "dlib", args.n, args.anchors, args.batch_size, **DCGAN_AUDIT)[0]
    slowest = max(st.values())
    print(f"   full audit:        {wall:7.1f} s = {wall / slowest:.2f}x the slowest stage, {wall / sum(st.values()):.2f}x their sum; {load()}")


if __name__ == "__main__":
    main()
