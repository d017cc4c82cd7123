"""Export the DCGAN face generator shipped in PyPI ``gan-face-generate`` to ONNX.

    pip install --no-deps gan-face-generate==1.1.1
    python examples/dcgan_digiface/export_onnx.py [--out examples/dcgan_digiface/dcgan_digiface.onnx]

The ONNX file takes ``z`` (N, 100, 1, 1) float32 and returns ``image`` (N, 3, 64, 64) in [-1, 1]
(tanh output), with a dynamic batch dimension. After export the script checks that onnxruntime
reproduces torch's output to 1e-4 and exits with status 1 if it does not.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np

NZ, NGF, NC = 100, 64, 3
DEFAULT_OUT = Path(__file__).resolve().parent / "dcgan_digiface.onnx"
TOLERANCE = 1e-4


def package_weights() -> Path:
    """Path of ``gan_face_generate/weights.tar``, found without importing the package's extras."""
    spec = importlib.util.find_spec("gan_face_generate")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("gan-face-generate is not installed; run: pip install --no-deps gan-face-generate==1.1.1")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights.tar"
    if not path.is_file():
        sys.exit(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall gan-face-generate==1.1.1")
    return path


def build_generator():
    """The DCGAN generator of gan-face-generate's models.py (PyTorch DCGAN tutorial), rebuilt here so
    that none of the package's training dependencies (wandb, torchvision) are needed."""
    from torch import nn

    def up(cin, cout, stride, pad):
        return [nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            # Layer indices must match the checkpoint's "main.<i>.*" keys.
            self.main = nn.Sequential(
                *up(NZ, NGF * 8, 1, 0),
                *up(NGF * 8, NGF * 4, 2, 1),
                *up(NGF * 4, NGF * 2, 2, 1),
                *up(NGF * 2, NGF, 2, 1),
                nn.ConvTranspose2d(NGF, NC, 4, 2, 1, bias=False),
                nn.Tanh(),
            )

        def forward(self, z):
            return self.main(z)

    return Generator()


def load_generator(weights: Path | None = None):
    """The generator with the packaged weights, in eval mode (batch norm uses its running statistics)."""
    import torch

    checkpoint = torch.load(weights or package_weights(), map_location="cpu", weights_only=True)
    net = build_generator()
    net.load_state_dict(checkpoint["netG_state_dict"])
    return net.eval()


def export(out: Path, weights: Path | None = None) -> float:
    """Write the ONNX file and return the max abs difference between onnxruntime and torch outputs."""
    import onnxruntime as ort
    import torch

    net = load_generator(weights)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, NZ, 1, 1)
    # The legacy TorchScript exporter needs no onnxscript and handles this plain conv stack; its
    # deprecation notice is expected.
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
    torch.onnx.export(
        net,
        (example,),
        str(out),
        input_names=["z"],
        output_names=["image"],
        dynamic_axes={"z": {0: "batch"}, "image": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    z = np.random.default_rng(0).standard_normal((5, NZ, 1, 1)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(z)).numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"z": z})[0]
    return float(np.abs(got - expected).max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the .onnx file")
    parser.add_argument("--weights", type=Path, default=None, help="weights.tar (default: the installed package's)")
    args = parser.parse_args(argv)
    diff = export(args.out, args.weights)
    print(f"wrote {args.out}; max |onnxruntime - torch| = {diff:.2e}")
    if diff >= TOLERANCE:
        print(f"export check failed: difference {diff:.2e} is not below {TOLERANCE:.0e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
