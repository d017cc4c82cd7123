"""Generator sources behind one registry: ONNX, TorchScript, a Python callable, a folder of images,
an inference server or JSON service over HTTP, a program over its standard input and output."""

from gancheck.sources.base import LatentSource, Source, load_generator, register
from gancheck.sources import executable, http  # noqa: F401  (register first: 'cmd:...' must not be read as a callable)
from gancheck.sources import onnx_generator, torchscript, python_callable, folder  # noqa: F401  (register)

__all__ = ["LatentSource", "Source", "load_generator", "register"]
