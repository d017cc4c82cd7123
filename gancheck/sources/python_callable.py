"""A Python callable given as ``package.module:attr``: a function from a latent batch to an image
batch, or a zero-argument factory (a class or function) that returns one."""

from __future__ import annotations

import importlib
import inspect

import numpy as np

from gancheck.errors import GancheckError
from gancheck.sources.base import LatentSource, register
from gancheck.sources.torchscript import latent_shape_of, torch_device
from gancheck.sources.latents import LatentPrior


def import_attr(spec: str):
    module_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself failing on import
        raise GancheckError(f"cannot import {module_name!r} for generator {spec} ({type(exc).__name__}: {exc}); check the module path and PYTHONPATH") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise GancheckError(f"module {module_name!r} has no attribute {attr!r} (generator {spec})")
        obj = getattr(obj, part)
    return obj


def _is_factory(obj) -> bool:
    if inspect.isclass(obj):
        return True
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    return not any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


@register("callable")
class CallableGenerator(LatentSource):
    options = ("layout", "value_range", "batch_size", "prior", "truncation", "latent_shape", "device")

    def __init__(self, spec: str, prior: str = "normal", truncation: float = 2.0, latent_shape=None, device: str = "auto", **kw):
        super().__init__(**kw)
        self.spec = spec
        obj = import_attr(spec)
        if not callable(obj):
            raise GancheckError(f"{spec} is not callable; give a function from a latent batch to images, or a factory returning one")
        self.fn = obj() if _is_factory(obj) else obj
        if not callable(self.fn):
            raise GancheckError(f"the factory {spec} returned a {type(self.fn).__name__}, which is not callable")
        self.torch = None
        if type(self.fn).__module__.startswith("torch") or any(c.__module__.startswith("torch.nn") for c in type(self.fn).__mro__):
            import torch

            self.torch = torch
            self.device = torch_device(torch, device)
            self.fn = self.fn.to(self.device).eval()
        self.latent_prior = LatentPrior(latent_shape_of(self.fn, latent_shape), prior, truncation)

    def generate(self, z: np.ndarray):
        if self.torch is None:
            return self.fn(z)
        with self.torch.no_grad():
            return self.fn(self.torch.from_numpy(z).to(self.device))

    def describe(self) -> dict:
        d = super().describe()
        d.update(callable=self.spec)
        return d
