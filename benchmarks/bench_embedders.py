"""Images per second of the face descriptors, each alignment path next to the bare model call.

    python benchmarks/bench_embedders.py [--n 128] [--size 64] [--threads N] [--insightface-dir DIR]

Frames are the ArcFace-aligned Tom Hanks photo that ships with ``insightface``, resized to
``--size`` (64 = the DCGAN example's output) with a little brightness jitter, so detectors find a
face in every one. "bare" is the descriptor network alone on ready-made crops, with the same
workers/threads as the full path; "overhead" is how much the full path adds on top of it:
``time(path) / time(bare) - 1``. All figures come from one run, in one process.

Without a real InsightFace pack (``--insightface-dir`` / ``GANCHECK_INSIGHTFACE_DIR``), the
recognition model is a stand-in with ArcFace's signature and w600k_r50's IResNet-50 layout and
random weights (needs torch to build), so its speed is that of the real network; the detect path
then cannot run and is reported as skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedders import load_embedder  # noqa: E402
from gancheck.errors import GancheckError  # noqa: E402


def frames(n: int, size: int) -> np.ndarray:
    from PIL import Image

    photo = Path(importlib.util.find_spec("insightface").submodule_search_locations[0]) / "data/images/Tom_Hanks_54745.png"
    base = np.asarray(Image.open(photo).convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255
    gain = np.random.default_rng(0).uniform(0.85, 1.15, (n, 1, 1, 1)).astype(np.float32)
    return np.clip(base[None] * gain, 0, 1)


def timed(fns: dict, rounds: int = 3) -> dict[str, float]:
    """Best wall time of each call over ``rounds``, after one warm-up call each (pool start, session
    warm-up). The calls take turns within a round so that load from other processes on the machine
    weighs on all of them alike."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def report(name: str, n: int, bare: float, paths: dict[str, float | str], alone: dict[str, float]) -> None:
    """One line per path: throughput, end-to-end overhead over the bare call, and the preprocessing's
    own time as a share of the bare call (timed separately, so it does not drown in machine noise)."""
    print(f"{name:<12} bare model call      {n / bare:8.1f} img/s")
    for path, t in paths.items():
        if isinstance(t, str):
            print(f"{name:<12} {path:<20} skipped: {t}")
            continue
        share = f"   preprocessing alone {100 * alone[path] / bare:5.1f}% of the bare call" if path in alone else ""
        print(f"{name:<12} {path:<20} {n / t:8.1f} img/s   end-to-end overhead {100 * (t / bare - 1):+6.1f}%{share}")


def bench_dlib(x: np.ndarray, threads: int | None) -> None:
    from embedders.dlib_resnet import CHIP_SIZE, CHIP_TEMPLATE, _Models, model_dir, to_uint8
    from embedders.face_align import fixed_crop

    fixed = load_embedder("dlib", align="fixed", threads=threads)
    detect = load_embedder("dlib", align="detect", threads=threads)
    chips = to_uint8(fixed_crop(x, CHIP_TEMPLATE, CHIP_SIZE))
    found = detect.embed(x)[1].mean()
    detect_name = f"detect ({100 * found:.0f}% found)"
    t = timed({"bare": lambda: fixed._run("chips", chips), "fixed crop": lambda: fixed.embed(x), detect_name: lambda: detect.embed(x)})
    # Detection, landmarks and chip extraction run inside the workers, in parallel like the model.
    models = _Models(model_dir())
    alone = timed({"fixed crop": lambda: to_uint8(fixed_crop(x, CHIP_TEMPLATE, CHIP_SIZE)),
                   detect_name: lambda: [models.find_chip(im) for im in to_uint8(x)]})
    alone[detect_name] /= detect.workers
    report(f"dlib ({fixed.workers}p)", len(x), t.pop("bare"), t, alone)
    fixed.close()
    detect.close()


def iresnet50_standin(path: Path) -> str:
    """w600k_r50's architecture (insightface arcface_torch IResNet-50) with random weights, as ONNX."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout),
                nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
            )
            self.down = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return self.body(x) + (x if self.down is None else self.down(x))

    layers, cin = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)], 64
    for cout, blocks in ((64, 3), (128, 4), (256, 14), (512, 3)):
        for i in range(blocks):
            layers.append(Block(cin, cout, 2 if i == 0 else 1))
            cin = cout
    layers += [nn.BatchNorm2d(512), nn.Flatten(), nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512)]
    net = nn.Sequential(*layers).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, (torch.zeros(2, 3, 112, 112),), str(path), input_names=["input.1"], output_names=["fc1"],
                      dynamic_axes={"input.1": {0: "N"}, "fc1": {0: "N"}}, opset_version=17, dynamo=False)
    return "stand-in: w600k_r50's IResNet-50 layout, random weights (no real pack found)"


def bench_insightface(x: np.ndarray, threads: int | None, model_dir: str | None) -> None:
    try:
        load_embedder("insightface", model_dir=model_dir, align="fixed")
    except GancheckError:
        with tempfile.TemporaryDirectory() as tmp:
            note = iresnet50_standin(Path(tmp) / "buffalo_l" / "w600k_r50.onnx")
            return run_insightface(x, threads, tmp, note)
    run_insightface(x, threads, model_dir, "real pack")


def run_insightface(x: np.ndarray, threads: int | None, model_dir: str | None, note: str) -> None:
    from embedders.face_align import fixed_crop

    fixed = load_embedder("insightface", model_dir=model_dir, align="fixed", threads=threads)
    ready = fixed_crop(x, fixed.template, fixed.size, fixed.frame)  # bare: the network on ready-made crops
    x_norm = ((ready * 255.0 - fixed.rec.input_mean) / fixed.rec.input_std).transpose(0, 3, 1, 2).astype(np.float32)
    calls = {
        "bare": lambda: [fixed.rec.session.run(fixed.rec.output_names, {fixed.rec.input_name: x_norm[i : i + 64]})
                         for i in range(0, len(x_norm), 64)],
        "fixed crop": lambda: fixed.embed(x),
    }
    skipped = {}
    try:
        detect = load_embedder("insightface", model_dir=model_dir, align="detect", threads=threads)
        found = detect.embed(x)[1].mean()
        calls[f"detect ({100 * found:.0f}% found)"] = lambda: detect.embed(x)
    except GancheckError as exc:
        skipped["detect"] = str(exc).split(" (also")[0]
    t = timed(calls)
    alone = timed({"fixed crop": lambda: (fixed_crop(x, fixed.template, fixed.size, fixed.frame) * 255.0 - fixed.rec.input_mean)
                   .transpose(0, 3, 1, 2).astype(np.float32)})
    print(f"insightface: {note}")
    report("insightface", len(x), t.pop("bare"), {**t, **skipped}, alone)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="images per timed call")
    parser.add_argument("--size", type=int, default=64, help="frame size in pixels")
    parser.add_argument("--threads", type=int, default=None, help="worker processes / onnxruntime threads")
    parser.add_argument("--insightface-dir", default=None)
    parser.add_argument("--only", choices=["dlib", "insightface"], default=None)
    args = parser.parse_args()
    x = frames(args.n, args.size)
    print(f"{args.n} frames of {args.size}x{args.size}; best of 3 interleaved timed calls after a warm-up")
    if args.only in (None, "dlib"):
        bench_dlib(x, args.threads)
    if args.only in (None, "insightface"):
        bench_insightface(x, args.threads, args.insightface_dir)


if __name__ == "__main__":
    main()
