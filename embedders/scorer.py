"""ONNX image models that score images instead of describing them: a GAN's discriminator (one
logit or probability per image) or a user's attribute classifier (one score per attribute).

gancheck's images are float32 (N, H, W, 3) in [0, 1]. A scorer feeds them as its model expects:
the layout (NCHW or NHWC) and channel count (1: the mean of R, G, B; 3: RGB) are read from the
model's first input, the spatial size from its fixed dimensions (images are resized to it), and
the value range (``-1,1`` for a GAN's tanh images, ``0,1`` or ``0,255``) is given by the user.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedders.onnx_model import run_batches
from embedders.pixel import area_resize
from gancheck.errors import GancheckError
from gancheck.files import file_sha256
from gancheck.onnx_runtime import open_session

INPUT_RANGES = {"-1,1": (-1.0, 1.0), "0,1": (0.0, 1.0), "0,255": (0.0, 255.0)}
#: How a scorer's output is read: ``auto`` looks at the graph's last operator.
OUTPUT_KINDS = ("auto", "logit", "probability")


class ImageScorer:
    """``scores(images) -> (N, K)`` float64 for an ONNX model from an image batch to K scores."""

    def __init__(self, path: str | Path, input_range: str = "-1,1", output: str = "auto", device: str = "auto",
                 threads: int | None = None, what: str = "discriminator"):
        self.path, self.what = Path(path), what
        if input_range not in INPUT_RANGES:
            raise GancheckError(f"the {what}'s input range must be one of {', '.join(INPUT_RANGES)}, got {input_range!r}")
        if output not in OUTPUT_KINDS:
            raise GancheckError(f"the {what}'s output must be one of {', '.join(OUTPUT_KINDS)}, got {output!r}")
        self.session = open_session(self.path, device=device, threads=threads, what=what)
        inp = self.session.get_inputs()[0]
        self.input_name, self.input_range = inp.name, input_range
        self.layout, self.channels, self.size = input_layout(inp.shape, self.path, what)
        self.output = last_operator_kind(self.path) if output == "auto" else output
        batch = inp.shape[0]
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None

    @property
    def input_shape(self) -> tuple:
        """(layout, channels, size): what two scorers must share to be compared."""
        return self.layout, self.channels, self.size

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        if self.size is not None:
            x = area_resize(x, self.size)
        if self.channels == 1:
            x = x.mean(axis=3, keepdims=True)
        lo, hi = INPUT_RANGES[self.input_range]
        x = lo + x * (hi - lo)
        if self.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def scores(self, images: np.ndarray) -> np.ndarray:
        """float64 (N, K): the model's first output, one row per image."""
        outs = run_batches(self._run, self.preprocess(images), self.fixed_batch)
        scores = np.concatenate(outs) if outs else np.zeros((0, 1))
        if not np.isfinite(scores).all():
            raise GancheckError(f"{self.what} {self.path} returned NaN or Inf; check its input range (--input-range)")
        return scores

    def _run(self, part: np.ndarray) -> np.ndarray:
        """The model's first output for one batch, float64, one row per image (or a one-line error)."""
        try:
            out = np.asarray(self.session.run(None, {self.input_name: part})[0], dtype=np.float64)
        except Exception as exc:  # onnxruntime's own shape or type error: name it in one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise GancheckError(f"{self.what} {self.path} failed on images of shape {part.shape[1:]} ({first}); "
                                "check that it takes an image batch") from None
        if out.ndim == 0 or out.shape[0] != len(part):
            raise GancheckError(f"{self.what} {self.path} returned shape {out.shape} for {len(part)} images; it must return one row per image")
        return out

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N,) the log density ratio log(D / (1 - D)) of a one-output discriminator (its logit as is)."""
        s = self.scores(images)
        if s.shape[1] != 1:
            raise GancheckError(f"{self.what} {self.path} returns {s.shape[1]} values per image; a discriminator returns one (a logit or a probability)")
        s = s[:, 0]
        if self.output == "logit":
            return s
        if ((s < 0) | (s > 1)).any():
            raise GancheckError(f"{self.what} {self.path} was read as a probability but returned values outside [0, 1]; pass --output logit")
        p = np.clip(s, 1e-12, 1 - 1e-12)  # a saturated sigmoid: the ratio is finite but beyond float precision
        return np.log(p) - np.log1p(-p)

    def describe(self) -> dict:
        return {"path": str(self.path.resolve()), "sha256": file_sha256(self.path), "input_range": self.input_range,
                "output": self.output, "layout": self.layout, "channels": self.channels, "size": self.size}


def input_layout(shape, path: Path, what: str) -> tuple[str, int, int | None]:
    """(layout, channels, size) of an ONNX image input's shape; one-line error if it is no image batch."""
    if len(shape) != 4:
        raise GancheckError(f"{what} {path} takes an input of rank {len(shape)} (shape {shape}); it must take an image batch "
                            "(N, C, H, W) or (N, H, W, C)")
    if shape[1] in (1, 3):
        layout, channels, spatial = "nchw", shape[1], shape[2:]
    elif shape[3] in (1, 3):
        layout, channels, spatial = "nhwc", shape[3], shape[1:3]
    else:
        raise GancheckError(f"{what} {path} takes input of shape {shape}: no axis of 1 or 3 channels; export it with a fixed channel axis")
    fixed = [s for s in spatial if isinstance(s, int) and s > 0]
    if len(fixed) == 2 and fixed[0] != fixed[1]:
        raise GancheckError(f"{what} {path} takes {fixed[0]}x{fixed[1]} images; only square inputs are supported")
    return layout, int(channels), (int(fixed[0]) if fixed else None)


#: Operators that only reshape or relabel values: the kind of output is decided before them.
_PASS_THROUGH = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Transpose")


def last_operator_kind(path: Path) -> str:
    """``probability`` when the model's first output comes from a Sigmoid or Softmax (through any
    reshaping), else ``logit``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    producer = {out: node for node in model.graph.node for out in node.output}
    name = model.graph.output[0].name if model.graph.output else None
    node = producer.get(name)
    while node is not None and node.op_type in _PASS_THROUGH and node.input:
        node = producer.get(node.input[0])
    return "probability" if node is not None and node.op_type in ("Sigmoid", "Softmax") else "logit"
