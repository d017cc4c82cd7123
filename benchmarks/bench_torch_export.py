"""The DCGAN face generator as ONNX (onnxruntime), as a torch.export program and as an AOTInductor
package: images/s through gancheck's sources, side by side in one run, on the same threads.

    python benchmarks/bench_torch_export.py [--n 1024] [--batch 64] [--threads 2] [--repeats 5]

The three files are made from the same torch module (gan-face-generate's weights, rebuilt as in
examples/dcgan_digiface/export_onnx.py): the ONNX file with a dynamic batch, the program with a
dynamic batch, the package compiled for a fixed batch of ``--batch`` (the audit's batch size).
Each repeat times the three in turn on the same latents (so a load change on a shared machine hits
all three alike); the best wall-clock rate and the median CPU time per image are printed, then
each rate's ratio to ONNX's and the largest difference between their images.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gancheck.sources import load_generator  # noqa: E402


def dcgan_module():
    """examples/dcgan_digiface/export_onnx.py, imported by path (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("export_onnx", ROOT / "examples" / "dcgan_digiface" / "export_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_files(out: Path, batch: int) -> dict[str, Path]:
    """The ONNX file, the ExportedProgram and the AOTInductor package of the DCGAN, in ``out``."""
    import torch

    example = dcgan_module()
    files = {"onnx": out / "dcgan.onnx", "program": out / "dcgan.pt2", "aoti": out / "dcgan_aoti.pt2"}
    example.export(files["onnx"])
    net = example.load_generator()
    z = torch.zeros(batch, example.NZ, 1, 1)
    program = torch.export.export(net, (z,), dynamic_shapes={"z": {0: torch.export.Dim("batch", min=1)}})
    torch.export.save(program, files["program"])
    start = time.perf_counter()
    # A fixed batch: the package is compiled for the audit's batch size, the last batch padded.
    torch._inductor.aoti_compile_and_package(torch.export.export(net, (z,)), package_path=str(files["aoti"]))
    print(f"AOTInductor compile: {time.perf_counter() - start:.1f} s")
    return files


def time_once(source, indices: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(wall seconds, CPU seconds of this process, images) for one pass over ``indices``."""
    wall, cpu = time.perf_counter(), time.process_time()
    images = source.images(indices)
    return time.perf_counter() - wall, time.process_time() - cpu, images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="images per timed pass")
    parser.add_argument("--batch", type=int, default=64, help="batch size (the package is compiled for it)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of onnxruntime and torch")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes of each format")
    args = parser.parse_args(argv)
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} threads, batch {args.batch}, "
          f"{args.n} images a pass, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), args.batch)
        sources = {name: load_generator(str(path), device="cpu", threads=args.threads, batch_size=args.batch) for name, path in files.items()}
        indices = np.arange(args.n)
        for source in sources.values():
            source.prepare(0)
            source.images(indices[: args.batch])  # warm-up
        walls, cpus, images = {k: [] for k in sources}, {k: [] for k in sources}, {}
        for _ in range(args.repeats):
            for name, source in sources.items():
                wall, cpu, images[name] = time_once(source, indices)
                walls[name].append(wall)
                cpus[name].append(cpu)
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    onnx_rate = args.n / min(walls["onnx"])
    print(f"{'format':<10}{'images/s (best)':>17}{'CPU ms/image':>14}{'vs ONNX':>9}{'max |diff|':>12}")
    for name in sources:
        rate = args.n / min(walls[name])
        diff = float(np.abs(images[name] - images["onnx"]).max())
        print(f"{name:<10}{rate:>17.1f}{1000 * statistics.median(cpus[name]) / args.n:>14.2f}{rate / onnx_rate:>9.2f}{diff:>12.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
