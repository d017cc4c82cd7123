"""``onnx:PATH``: any ONNX model from an image batch to vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedders.base import Embedder, l2_normalise, register
from embedders.pixel import area_resize
from gancheck.errors import GancheckError
from gancheck.onnx_runtime import open_session


def run_batches(run, x: np.ndarray, fixed_batch: int | None) -> list[np.ndarray]:
    """``run(part)`` (a model's first output, one row per image of ``part``) on ``x`` whole, or, for a
    model whose batch dimension is fixed, on slices of ``fixed_batch``: the last slice is padded by
    repeating its last image and the padding's rows are dropped. Returns the outputs, (n, -1) each."""
    step = fixed_batch or max(len(x), 1)
    outs = []
    for i in range(0, len(x), step):
        part = x[i : i + step]
        pad = step - len(part)
        if pad:
            part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
        outs.append(run(part).reshape(len(part), -1)[: step - pad])
    return outs


@register("onnx")
class OnnxEmbedder(Embedder):
    """An ONNX embedder: images are resized to ``input_size``, normalised as
    ``(x * 255 - mean) / std`` per channel, laid out as ``layout`` and fed to the model's first
    input; the first output (N, D) is L2-normalised."""

    default_theta = 0.3
    default_radius = 0.25
    threshold_source = "generic default; estimate the embedder's own with `gancheck theta`"

    def __init__(
        self,
        path: str,
        input_size: int | None = None,
        mean: float | tuple[float, float, float] = 127.5,
        std: float | tuple[float, float, float] = 127.5,
        layout: str = "nchw",
        device: str = "auto",
        threads: int | None = None,
    ):
        self.path = Path(path)
        self.session = open_session(self.path, device=device, threads=threads, what="embedder")
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4:
            raise GancheckError(
                f"embedder {self.path} takes input {inp.name!r} of rank {len(inp.shape)}; "
                "an ONNX embedder needs a rank-4 image batch (N, C, H, W) or (N, H, W, C)"
            )
        self.input_name = inp.name
        self.layout = layout.lower()
        if self.layout not in ("nchw", "nhwc"):
            raise GancheckError(f"embedder layout must be nchw or nhwc, got {layout!r}")
        spatial = inp.shape[2:] if self.layout == "nchw" else inp.shape[1:3]
        fixed = [s for s in spatial if isinstance(s, int)]
        self.input_size = int(input_size or (fixed[0] if fixed else 112))
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        batch = inp.shape[0]
        self.fixed_batch = batch if isinstance(batch, int) else None

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        x = area_resize(np.asarray(images, dtype=np.float32), self.input_size)
        x = (x * 255.0 - self.mean) / self.std
        if self.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    @property
    def input_side(self) -> int:
        return self.input_size

    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.preprocess(images)
        outs = run_batches(lambda part: np.asarray(self.session.run(None, {self.input_name: part})[0]), x, self.fixed_batch)
        vecs = np.concatenate(outs)
        if not np.isfinite(vecs).all():
            raise GancheckError(f"embedder {self.path} returned NaN or Inf; check its input normalisation (--embedder-mean/--embedder-std)")
        return l2_normalise(vecs), np.ones(len(vecs), dtype=bool)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "input_size": self.input_size,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "layout": self.layout,
        }
