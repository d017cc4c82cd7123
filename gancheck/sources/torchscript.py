"""A TorchScript generator (``torch.jit.save`` file); needs the ``torch`` extra. torch 2.9+
deprecates TorchScript in favour of ``torch.export`` (:mod:`gancheck.sources.torch_export`); its
files are still read."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from gancheck.errors import GancheckError
from gancheck.sources.base import LatentSource, register
from gancheck.sources.latents import LatentPrior
from gancheck.files import file_sha256
from gancheck.sources.torch_files import READ, what_file

_SHAPE_ATTRS = ("latent_shape", "z_shape", "latent_dim", "z_dim", "nz")


def import_torch():
    try:
        import torch
    except ImportError:
        raise GancheckError("this generator needs PyTorch: pip install 'gancheck[torch]' (CPU: pip install torch==2.13.0)") from None
    return torch


def latent_shape_of(obj, given) -> tuple[int, ...]:
    """``--latent-shape`` if given, else the generator's own ``latent_shape``/``z_dim``/``nz``."""
    if given:
        return tuple(int(s) for s in given)
    for attr in _SHAPE_ATTRS:
        value = getattr(obj, attr, None)
        if value is not None:
            return tuple(int(s) for s in np.atleast_1d(value))
    raise GancheckError("cannot tell the latent size of the generator; pass --latent-shape (e.g. --latent-shape 512) or give it a latent_shape attribute")


def torch_device(torch, device: str):
    if device == "cuda" and not torch.cuda.is_available():
        raise GancheckError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    return torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")


@register("torchscript")
class TorchScriptGenerator(LatentSource):
    options = ("layout", "value_range", "batch_size", "prior", "truncation", "latent_shape", "device")

    def __init__(self, path: str, prior: str = "normal", truncation: float = 2.0, latent_shape=None, device: str = "auto", **kw):
        super().__init__(**kw)
        self.path = Path(path)
        if not self.path.is_file():
            raise GancheckError(f"generator file not found: {self.path} (check the path)")
        torch = import_torch()
        what = what_file(self.path)
        if what is None or "TorchScript" not in what:  # say what it is instead: a torch.save pickle is the usual one
            raise GancheckError(f"{self.path} is {what or 'no zip archive'}, not a TorchScript file; {READ}")
        self.torch = torch
        self.device = torch_device(torch, device)
        try:
            with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript but still loads it
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as exc:
            raise GancheckError(f"{self.path} is not a loadable TorchScript module ({str(exc).splitlines()[0][:160]}); save it with torch.jit.save") from None
        self.latent_prior = LatentPrior(latent_shape_of(self.module, latent_shape), prior, truncation)

    def generate(self, z: np.ndarray):
        with self.torch.no_grad():
            return self.module(self.torch.from_numpy(z).to(self.device)).cpu().numpy()

    def describe(self) -> dict:
        d = super().describe()
        d.update(path=str(self.path), sha256=file_sha256(self.path))
        return d
