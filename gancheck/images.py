"""Turning whatever a generator returns into the canonical image batch: float32 NHWC RGB in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gancheck.errors import GancheckError

LAYOUTS = ("auto", "nchw", "nhwc")
RANGES = ("auto", "-1,1", "0,1", "0,255")


def to_numpy(batch) -> np.ndarray:
    if hasattr(batch, "detach"):  # a torch tensor
        batch = batch.detach().cpu().numpy()
    return np.asarray(batch)


def detect_layout(batch: np.ndarray) -> str:
    """NCHW when the second axis looks like channels and the last does not."""
    if batch.ndim == 3:
        return "nhw"
    if batch.shape[1] in (1, 3, 4) and batch.shape[3] not in (1, 3, 4):
        return "nchw"
    if batch.shape[3] in (1, 3, 4):
        return "nhwc"
    raise GancheckError(f"cannot tell the channel axis of generator output of shape {batch.shape}; pass --layout nchw or --layout nhwc")


def detect_range(batch: np.ndarray) -> str:
    if batch.dtype == np.uint8:
        return "0,255"
    lo, hi = float(np.min(batch)), float(np.max(batch))
    if hi > 1.5:
        return "0,255"
    if lo < -0.05:
        return "-1,1"
    return "0,1"


@dataclass
class OutputFormat:
    """How raw generator output maps to images; fixed once per run (from a probe batch that does
    not depend on the batch size) so results never depend on batching."""

    layout: str = "auto"
    value_range: str = "auto"

    def __post_init__(self):
        if self.layout not in LAYOUTS + ("nhw",):
            raise GancheckError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.value_range not in RANGES:
            raise GancheckError(f"--range must be one of {', '.join(RANGES)}, got {self.value_range!r}")

    def resolve(self, probe, allow_nan: bool = False) -> "OutputFormat":
        """The format detected on a probe batch; with ``allow_nan`` its NaN/Inf images are left out."""
        probe = check_raw(to_numpy(probe), first_index=None, allow_nan=allow_nan)
        if allow_nan and probe.dtype.kind == "f":
            probe = probe[np.isfinite(probe.reshape(len(probe), -1)).all(axis=1)]
            if not len(probe):
                raise GancheckError("every image of the generator's probe batch holds NaN or Inf; fix the model (--on-nan skip "
                                    "skips some such images, not all)")
        layout = detect_layout(probe) if self.layout == "auto" else self.layout
        value_range = detect_range(probe) if self.value_range == "auto" else self.value_range
        return OutputFormat(layout, value_range)

    def convert(self, raw, first_index: int | None = None, allow_nan: bool = False) -> np.ndarray:
        """Raw output batch -> float32 (N, H, W, 3) in [0, 1]. With ``allow_nan`` an image holding
        NaN or Inf comes back all NaN (for the caller to skip and count) instead of an error."""
        x = check_raw(to_numpy(raw), first_index, allow_nan)
        if x.ndim == 3:
            x = x[..., None]
        elif self.layout == "nchw":
            x = x.transpose(0, 2, 3, 1)
        x = x.astype(np.float32, copy=True)
        if allow_nan:
            x[~np.isfinite(x.reshape(len(x), -1)).all(axis=1)] = np.nan
        lo, hi = {"-1,1": (-1.0, 1.0), "0,1": (0.0, 1.0), "0,255": (0.0, 255.0)}[self.value_range]
        x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        channels = x.shape[-1]
        if channels == 1:
            x = np.repeat(x, 3, axis=-1)
        elif channels == 4:
            x = x[..., :3]
        elif channels != 3:
            raise GancheckError(f"generator output has {channels} channels; expected 1, 3 or 4 (wrong --layout?)")
        flat = x.reshape(len(x), -1)
        constant = np.flatnonzero(flat.max(axis=1) - flat.min(axis=1) == 0)
        if len(constant):
            where = f"sample {first_index + constant[0]}" if first_index is not None else "the probe batch"
            raise GancheckError(f"generator produced a constant image ({where}); check the model's output or its extra inputs")
        return np.ascontiguousarray(x)

    def to_dict(self) -> dict:
        return {"layout": self.layout, "range": self.value_range}


def check_raw(x: np.ndarray, first_index: int | None, allow_nan: bool = False) -> np.ndarray:
    if x.ndim not in (3, 4):
        raise GancheckError(f"generator output has rank {x.ndim} (shape {x.shape}); expected an image batch of rank 4 (N, C, H, W) or (N, H, W, C)")
    if x.dtype.kind == "f" and not allow_nan:
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            where = f"sample {first_index + int(np.flatnonzero(bad)[0])}" if first_index is not None else "the probe batch"
            raise GancheckError(f"generator output contains NaN or Inf ({where}, {int(bad.sum())} of {len(x)} images in the batch); "
                                "fix the model, or pass --on-nan skip to skip and count such samples")
    return x


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Images with values in [0, 1] as uint8 (0..255, rounded to nearest): the one conversion every
    descriptor, picture and PNG uses."""
    x = np.multiply(np.asarray(images, dtype=np.float32), np.float32(255.0))  # in place from here: no temporaries
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)
