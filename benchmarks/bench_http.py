"""Black-box generators: an inference server over HTTP against the same ONNX file read directly,
and a class sweep against one audit.

    python benchmarks/bench_http.py            # 64x64 generator, 8192 images; 8-class sweep at n = 4000
    python benchmarks/bench_http.py --quick    # smaller, for a smoke run

(1) Generation throughput of a 64x64 ONNX generator: read directly (onnxruntime, batch 64) and
served by a real Open Inference Protocol server (KServe's model server, extra ``serve``) on this
machine, asked in batches of 64 with 4 requests in flight, with the binary tensor extension and
in plain JSON. Goal: HTTP within 1.5x of the direct time. (2) A sweep over 8 classes of a
conditional generator against one audit of one class at the same settings. Goal: at most 8x one
audit plus 10%. Prints figures and ratios as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "fixtures")]

import gancheck  # noqa: E402
from gancheck.sources import load_generator  # noqa: E402
from gancheck.sources.planted import build_planted_generator  # noqa: E402


def throughput(source, n: int, per_call: int) -> float:
    """Images per second of ``source.images`` over ``n`` collection indices, ``per_call`` at a time."""
    source.prepare(0)
    source.images(np.arange(per_call, dtype=np.int64))  # warm up connections and kernels
    start = time.perf_counter()
    for i in range(0, n, per_call):
        source.images(np.arange(i, min(n, i + per_call), dtype=np.int64))
    return n / (time.perf_counter() - start)


def bench_http(folder: Path, n: int, threads: int) -> dict:
    from kserve_onnx import start_server, stop_server

    model = build_planted_generator(folder / "g64.onnx", latent_dim=128, size=64)
    direct = throughput(load_generator(str(model), batch_size=64, threads=threads), n, 256)
    proc, url = start_server(model, folder / "server.log", threads=threads)
    try:
        binary = throughput(load_generator(url, batch_size=64, concurrency=4, binary="on"), n, 256)
        plain = throughput(load_generator(url, batch_size=64, concurrency=4, binary="off"), max(n // 4, 256), 256)
    finally:
        stop_server(proc)
    return {"images": n, "image": "3x64x64 float32", "onnxruntime_threads": threads, "direct_img_per_s": round(direct, 1),
            "http_binary_img_per_s": round(binary, 1), "http_json_img_per_s": round(plain, 1),
            "binary_slowdown": round(direct / binary, 3), "json_slowdown": round(direct / plain, 3), "goal_binary_slowdown": 1.5}


def bench_sweep(folder: Path, n: int, anchors: int) -> dict:
    from conditional import build_conditional_generator

    model = build_conditional_generator(folder / "cond.onnx", fractions=tuple([0.02] * 7 + [0.2]), latent_dim=64, size=32)
    common = dict(n=n, anchors=anchors, batch_size=128)
    start = time.perf_counter()
    gancheck.audit(str(model), out=folder / "one", generator_options={"inputs": {"label": ",".join(["1"] + ["0"] * 7)}}, **common)
    one = time.perf_counter() - start
    start = time.perf_counter()
    table = gancheck.sweep(str(model), "label=onehot:8", out=folder / "sweep", **common)
    sweep = time.perf_counter() - start
    return {"n": n, "anchors": anchors, "one_audit_s": round(one, 2), "sweep_8_classes_s": round(sweep, 2),
            "sweep_over_one": round(sweep / one, 3), "goal_sweep_over_one": 8.8, "most_collapsed": table["most_collapsed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out = {"http": bench_http(folder, 1024 if args.quick else 8192, args.threads),
               "sweep": bench_sweep(folder, 1000 if args.quick else 4000, 100 if args.quick else 400)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
