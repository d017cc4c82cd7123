"""dlib's networks: dlib itself vs the ONNX graphs built from its .dat files (embedders.dlib_onnx).

    python benchmarks/bench_dlib_onnx.py [--batches 1,8,32,64,128,256] [--min-chips 64] [--frames 200]

1. Descriptor throughput on real 150x150 chips (the insightface photos through dlib's HOG detector,
   5-point predictor and get_face_chip at several paddings, plus dlib.jitter_image variants) for each
   batch size: dlib's own ``compute_face_descriptor`` on 2 worker processes (batch split as the
   project's dlib embedder splits it) vs one onnxruntime session with 2 intra-op threads, side by
   side with the ratio. Wall-clock chips/s and CPU-ms per chip are both printed: on a shared machine
   the wall-clock figures depend on the load (printed), the CPU time much less.
2. Session options at batch 64: affine folded into conv or not, graph optimisation level, spinning,
   one 2-thread session vs 2 processes with a 1-thread session each.
3. Detection on frames of the real DCGAN face generator (gan-face-generate; the ONNX file of
   examples/dcgan_digiface if present, else torch), prepared as the project's dlib ``detect`` path
   prepares them (enlarged to a 128 px short side, 25% edge border): detection rate of dlib's HOG
   detector, dlib's CNN detector and the ONNX CNN detector, and the agreement of the ONNX detector
   with dlib's.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gancheck  # noqa: E402,F401  (import order: gancheck before embedders)
from embedders.dlib_dat import model_path  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import face_chips  # noqa: E402  (real chips and DCGAN frames, shared with tests/test_dlib_onnx.py)
from face_chips import aligned_chips, box_iou  # noqa: E402

WORKERS = 2
WORKER_CHUNK = 16  # as embedders.dlib_resnet

# ---------------------------------------------------------------------------------------------
# dlib workers (fork; they only call dlib).

_models = {}


def _worker_descriptors(chips):
    import dlib

    if "net" not in _models:
        _models["net"] = dlib.face_recognition_model_v1(str(model_path("resnet")))
    t = time.process_time()
    out = _models["net"].compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
    return np.array([np.asarray(v) for v in out], np.float32), time.process_time() - t


def _worker_cnn(image):
    import dlib

    if "cnn" not in _models:
        _models["cnn"] = dlib.cnn_face_detection_model_v1(str(model_path("mmod")))
    t = time.process_time()
    dets = _models["cnn"](image, 0)
    return [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence) for d in dets], time.process_time() - t


def _warm(_):
    _worker_descriptors(np.zeros((1, 150, 150, 3), np.uint8))
    return os.getpid()


# ---------------------------------------------------------------------------------------------


def real_chips(n: int) -> np.ndarray:
    import dlib
    from PIL import Image

    photos = Path(importlib.util.find_spec("insightface").submodule_search_locations[0]) / "data" / "images"
    base = aligned_chips([np.asarray(Image.open(p).convert("RGB")) for p in sorted(photos.iterdir())], (0.2, 0.25, 0.3, 0.35))
    chips = list(base)
    per = -(-max(0, n - len(base)) // len(base))
    for c in base:
        chips += dlib.jitter_image(c, num_jitters=per)
    return np.stack(chips[:n]).astype(np.uint8)


def dcgan_frames(n: int) -> np.ndarray | None:
    return face_chips.dcgan_frames(n, seed=11)


def prepare_for_detection(frame: np.ndarray) -> np.ndarray:
    """As embedders.dlib_resnet's detect path: enlarge to a 128 px short side, add a 25% edge border."""
    import dlib

    h, w = frame.shape[:2]
    factor = -(-128 // min(h, w))
    if factor > 1:
        frame = dlib.resize_image(np.ascontiguousarray(frame), h * factor, w * factor)
    pad = int(0.25 * min(frame.shape[:2]))
    return np.ascontiguousarray(np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))


def timed(fn, batch: np.ndarray, min_chips: int, min_seconds: float):
    """Run fn(batch) until min_chips chips and min_seconds have passed; chips/s and CPU-s per chip."""
    done, wall, cpu = 0, 0.0, 0.0
    while done < min_chips or wall < min_seconds:
        t, c = time.perf_counter(), time.process_time()
        extra_cpu = fn(batch)
        wall += time.perf_counter() - t
        cpu += time.process_time() - c + extra_cpu
        done += len(batch)
    return done / wall, cpu / done


def session(path, threads=2, level="all", spinning=False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


_spawned = {}


def _spawn_init(path, threads):
    _spawned["s"] = session(path, threads)


def _spawn_run(chips):
    t = time.process_time()
    _spawned["s"].run(None, {"chips": chips.astype(np.float32)})
    return time.process_time() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8,32,64,128,256")
    ap.add_argument("--min-chips", type=int, default=64, help="chips per measurement at least (and one batch)")
    ap.add_argument("--min-seconds", type=float, default=3.0, help="seconds per measurement at least")
    ap.add_argument("--frames", type=int, default=200, help="DCGAN frames for the detection part (0: skip)")
    ap.add_argument("--skip-options", action="store_true")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]

    # The dlib pool is forked before this process creates any onnxruntime thread.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context(method))
    list(pool.map(_warm, range(WORKERS)))

    from embedders import dlib_onnx
    from embedders.dlib_cnn_detect import OnnxCnnFaceDetector

    print(f"cpus: {len(os.sched_getaffinity(0))}, load average at start: {os.getloadavg()}")
    chips = real_chips(max(batches))
    print(f"real chips: {len(chips)} (insightface photos, dlib HOG + 5-point + get_face_chip + jitter)")
    resnet = dlib_onnx.cached_onnx(kind="resnet")
    ort_session = session(resnet, threads=WORKERS)

    def run_dlib(batch):
        rounds = -(-len(batch) // (WORKERS * WORKER_CHUNK))
        parts = [p for p in np.array_split(batch, WORKERS * rounds) if len(p)]
        return sum(r[1] for r in pool.map(_worker_descriptors, parts))

    def run_onnx(batch, s=ort_session):
        s.run(None, {"chips": batch.astype(np.float32)})
        return 0.0

    # accuracy on the benchmark chips
    ref = np.concatenate([r[0] for r in pool.map(_worker_descriptors, np.array_split(chips, 8))])
    got = ort_session.run(None, {"chips": chips.astype(np.float32)})[0]
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    print(f"ONNX vs dlib on these {len(chips)} chips: cosine min {cos.min():.8f}, max |diff| {np.abs(got - ref).max():.2e}")

    print("\ndescriptor throughput (wall chips/s; CPU ms per chip in brackets)")
    print(f"{'batch':>6} {'dlib 2 procs':>20} {'onnxruntime 2 thr':>20} {'ratio':>7} {'CPU ratio':>10}")
    for b in batches:
        batch = chips[:b]
        run_onnx(batch)
        d_rate, d_cpu = timed(run_dlib, batch, args.min_chips, args.min_seconds)
        o_rate, o_cpu = timed(run_onnx, batch, args.min_chips, args.min_seconds)
        print(f"{b:>6} {d_rate:>11.1f} [{1000 * d_cpu:5.1f}] {o_rate:>11.1f} [{1000 * o_cpu:5.1f}] "
              f"{o_rate / d_rate:>6.1f}x {d_cpu / o_cpu:>9.1f}x", flush=True)

    if not args.skip_options:
        print("\nonnxruntime options at batch 64 (wall chips/s [CPU ms per chip])")
        batch = chips[:64]
        import tempfile

        import onnx

        variants, tmp = [], Path(tempfile.mkdtemp(prefix="bench_dlib_onnx_"))
        for fold in (True, False):
            path = tmp / f"fold{int(fold)}.onnx"
            onnx.save(dlib_onnx.build_resnet_onnx(fold_affine=fold), str(path))
            for level in ("all", "basic"):
                variants.append((f"fold={fold!s:5} level={level:5} spinning=off", session(path, WORKERS, level)))
            if fold:
                variants.append((f"fold={fold!s:5} level=all   spinning=on ", session(path, WORKERS, "all", True)))
        for name, s in variants:
            run_onnx(batch, s)
            rate, cpu = timed(lambda x, s=s: run_onnx(x, s), batch, args.min_chips, args.min_seconds)
            print(f"  1 session x 2 threads, {name}: {rate:7.1f} [{1000 * cpu:5.1f}]", flush=True)
        with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_spawn_init, initargs=(str(resnet), 1)) as sp:
            list(sp.map(_spawn_run, [batch[:2]] * WORKERS))
            rate, cpu = timed(lambda x: sum(sp.map(_spawn_run, np.array_split(x, WORKERS))), batch,
                              args.min_chips, args.min_seconds)
        print(f"  2 processes x 1 thread, fold=True  level=all   spinning=off: {rate:7.1f} [{1000 * cpu:5.1f}]")

    if args.frames:
        frames = dcgan_frames(args.frames)
        if frames is None:
            print("\ndetection: skipped (needs gan-face-generate + torch, "
                  "or examples/dcgan_digiface/dcgan_digiface.onnx)")
        else:
            import dlib

            images = np.stack([prepare_for_detection(f) for f in frames])
            hog = dlib.get_frontal_face_detector()
            t = time.perf_counter()
            hog_found = np.array([len(hog(im, 0)) > 0 for im in images])
            t_hog = time.perf_counter() - t
            t = time.perf_counter()
            dlib_dets, cpu = zip(*pool.map(_worker_cnn, list(images)))
            t_dlib = time.perf_counter() - t
            detector = OnnxCnnFaceDetector(threads=WORKERS)
            t = time.perf_counter()
            onnx_dets = []
            for i in range(0, len(images), 32):
                onnx_dets += detector.detect_batch(images[i : i + 32])
            t_onnx = time.perf_counter() - t
            same_count = sum(len(a) == len(b) for a, b in zip(dlib_dets, onnx_dets))
            pairs = [(r, c, d) for a, b in zip(dlib_dets, onnx_dets) if len(a) == len(b) for (r, c), d in zip(a, b)]
            ious = [box_iou(r, d.rect) for r, c, d in pairs]
            print(f"\ndetection on {len(images)} DCGAN frames (64x64 -> {images.shape[1]}x{images.shape[2]} with border):")
            print(f"  HOG (dlib, upsample 0):        {hog_found.mean():6.1%} frames with a face  ({t_hog:.1f} s)")
            print(f"  CNN dlib (2 processes):        {np.mean([len(d) > 0 for d in dlib_dets]):6.1%}  ({t_dlib:.1f} s, {sum(cpu):.1f} CPU s)")
            print(f"  CNN ONNX (2 threads, batch 32): {np.mean([len(d) > 0 for d in onnx_dets]):6.1%}  ({t_onnx:.1f} s)")
            print(f"  ONNX vs dlib CNN: same number of faces on {same_count}/{len(images)} frames; "
                  f"{sum(r == d.rect for r, c, d in pairs)}/{len(pairs)} boxes identical, "
                  f"min IoU {min(ious) if ious else float('nan'):.4f}, "
                  f"max |confidence diff| {max((abs(c - d.confidence) for r, c, d in pairs), default=float('nan')):.2e}")
            both = np.array([len(d) > 0 for d in onnx_dets])
            print(f"  HOG and CNN agree (face / no face) on {np.mean(both == hog_found):.1%} of frames")
    pool.shutdown()
    print(f"\nload average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
