"""Generator sources: ONNX, PyTorch 2 (torch.export programs, AOTInductor packages), TorchScript,
a Python callable, a folder of images, an inference server or JSON service over HTTP, a program
over its standard input and output.

Which source reads a spec comes from one ordered table, :data:`gancheck.sources.claims.CLAIMS`, not
from the order of the imports below. A third-party source is a :class:`Source` subclass declared by an
entry point in the group ``gancheck.sources`` (``npz = "my_package.source:NpzSource"``); its
``accepts(spec)`` states its claim, asked only when no built-in rule claims the spec.
"""

from gancheck.sources.base import SOURCES, LatentSource, Source, register
from gancheck.sources import executable, folder, http, onnx_generator, python_callable, torch_export, torchscript  # noqa: F401  (register the built-ins)
from gancheck.sources.claims import CLAIMS, claim, load_generator

__all__ = ["CLAIMS", "SOURCES", "LatentSource", "Source", "claim", "load_generator", "register"]
