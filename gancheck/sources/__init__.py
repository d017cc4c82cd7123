"""Generator sources behind one registry: ONNX, TorchScript, a Python callable, a folder of images."""

from gancheck.sources.base import LatentSource, Source, load_generator, register
from gancheck.sources import onnx_generator, torchscript, python_callable, folder  # noqa: F401  (register)

__all__ = ["LatentSource", "Source", "load_generator", "register"]
