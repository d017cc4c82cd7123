"""The GPU path, measured side by side in one run of under 8 minutes on one GPU (issue 24).

    python benchmarks/bench_gpu.py                 # on a machine with CUDA (faiss-gpu, onnxruntime-gpu, torch with CUDA)
    python benchmarks/bench_gpu.py --quick         # smaller shapes; also runs on a CPU-only machine (every figure then CPU)

1. The statistics engine on one collection (|A| = 1e4, |C| = 2e5, d = 128): gancheck's engine (blas
   backend; faiss, on the GPU when faiss has one) against a bare float32 GEMM of the same shapes
   on the device (torch.cuda, else cupy, else numpy on the CPU): the engine's share of the floor.
2. dlib's ResNet embedder as gancheck's ONNX graph (`gancheck export-embedder dlib`), images/s on
   the CUDA execution provider against the CPU one, on the same 150x150 chips.
3. An end-to-end audit of the DCGAN (examples/dcgan_digiface/dcgan_digiface.onnx) with dlib at
   |C| = 1e5 (``--n``) on ``--device cuda``: wall time, images/s, and each stage alone (generator,
   embedder, statistics) as a share of the audit's time.

Every line says where it ran (``device: ...``). Nothing here is a test: the figures go to
docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gancheck.engine.accumulator import CollapseAccumulator, _faiss_gpus  # noqa: E402

DCGAN = ROOT / "examples" / "dcgan_digiface" / "dcgan_digiface.onnx"
THETA, RADIUS, TILE = 0.3, 0.25, 4096


def unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def device_gemm(a: np.ndarray, c: np.ndarray) -> tuple[float, str]:
    """Seconds of A @ C.T tile by tile on the best device at hand, and its name."""
    try:
        import torch

        if torch.cuda.is_available():
            ta, tc = torch.from_numpy(a).cuda(), torch.from_numpy(c).cuda()
            torch.cuda.synchronize()
            t = time.perf_counter()
            for s in range(0, len(tc), TILE):
                ta @ tc[s : s + TILE].T
            torch.cuda.synchronize()
            return time.perf_counter() - t, f"torch.cuda ({torch.cuda.get_device_name(0)})"
    except ImportError:
        pass
    try:
        import cupy

        ca, cc = cupy.asarray(a), cupy.asarray(c)
        cupy.cuda.Device().synchronize()
        t = time.perf_counter()
        for s in range(0, len(cc), TILE):
            ca @ cc[s : s + TILE].T
        cupy.cuda.Device().synchronize()
        return time.perf_counter() - t, "cupy"
    except ImportError:
        pass
    t = time.perf_counter()
    for s in range(0, len(c), TILE):
        a @ c[s : s + TILE].T
    return time.perf_counter() - t, "numpy (CPU)"


def engine_seconds(a: np.ndarray, c: np.ndarray, backend: str) -> float:
    acc = CollapseAccumulator(a, THETA, RADIUS, backend=backend, tile=TILE)
    t = time.perf_counter()
    for s in range(0, len(c), TILE):
        acc.update(c[s : s + TILE], np.arange(s, min(s + TILE, len(c)), dtype=np.int64))
    return time.perf_counter() - t


def part_engine(args) -> None:
    a, c = unit(args.anchors, 128, 0), unit(args.collection, 128, 1)
    floor, where = device_gemm(a, c)
    print(f"1. engine, |A| = {len(a):,}, |C| = {len(c):,}, d = 128 (device: bare GEMM on {where}; faiss GPUs: {_faiss_gpus()})")
    print(f"   bare GEMM            {floor:8.2f} s   {len(a) * len(c) / floor / 1e9:8.2f} G pairs/s")
    for backend in ("blas", "faiss"):
        s = engine_seconds(a, c, backend)
        print(f"   engine ({backend:5})       {s:8.2f} s   {len(a) * len(c) / s / 1e9:8.2f} G pairs/s   {s / floor:6.1f}x the GEMM floor")


def part_embedder(args) -> None:
    import onnxruntime as ort

    from gancheck.api import export_embedder

    with tempfile.TemporaryDirectory() as tmp:
        graph = export_embedder("dlib", Path(tmp) / "dlib.onnx")
        chips = np.random.default_rng(0).integers(0, 256, (args.batch, 150, 150, 3)).astype(np.float32)
        rates = {}
        for provider in ("CUDAExecutionProvider", "CPUExecutionProvider"):
            if provider not in ort.get_available_providers():
                continue
            session = ort.InferenceSession(str(graph), providers=[provider])
            session.run(None, {"chips": chips})  # warm-up: kernels, arenas
            done, t = 0, time.perf_counter()
            while done < args.chips or time.perf_counter() - t < 3.0:
                session.run(None, {"chips": chips})
                done += len(chips)
            rates[provider] = done / (time.perf_counter() - t)
    print(f"2. dlib's graph on {args.batch}-chip batches (device: {', '.join(rates)})")
    for provider, rate in rates.items():
        print(f"   {provider:24} {rate:9.1f} chips/s")
    if len(rates) == 2:
        print(f"   CUDA over CPU: {rates['CUDAExecutionProvider'] / rates['CPUExecutionProvider']:.1f}x")


def part_audit(args) -> None:
    from bench_pipeline import audit_time, stage_times

    if not DCGAN.is_file():
        print(f"3. skipped: {DCGAN} is missing (python examples/dcgan_digiface/export_onnx.py writes it)")
        return
    device = "cuda" if _cuda() else "cpu"
    options = dict(embedder_options={"align": "fixed"}, device=device)
    stages = stage_times(str(DCGAN), "dlib", args.n, 1000, args.batch, **options)
    wall, report = audit_time(str(DCGAN), "dlib", args.n, 1000, args.batch, **options)
    print(f"3. audit of the DCGAN with dlib --align fixed, |C| = {args.n:,}, |A| = 1,000, batch {args.batch} (device: {device})")
    print(f"   audit                {wall:8.1f} s   {(args.n + 1000) / wall:8.1f} images/s   worst mode {report['worst_mode']['neighbor_fraction']:.4f}")
    for name, seconds in stages.items():
        print(f"   {name[:-2]:>10} alone      {seconds:8.1f} s   {seconds / wall:6.1%} of the audit")


def _cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--anchors", type=int, default=10_000)
    p.add_argument("--collection", type=int, default=200_000)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--chips", type=int, default=2048, help="chips per embedder measurement at least")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.anchors, args.collection, args.n, args.batch, args.chips = 1000, 20_000, 2000, 64, 128
    print(f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")
    t = time.perf_counter()
    part_engine(args)
    part_embedder(args)
    part_audit(args)
    print(f"whole benchmark: {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
