"""Identity descriptors behind one registry.

A descriptor maps an image batch (float32, NHWC, RGB, values in [0, 1]) to unit vectors.
Adding one is one new file in this package that subclasses :class:`Embedder` and is decorated
with :func:`register`; :func:`load_embedder` then finds it by name.
"""

from embedders.base import Embedder, available, load_embedder, register

# Built-in descriptors register themselves on import.
from embedders import pixel, onnx_model  # noqa: E402,F401

for _optional in ("dlib_resnet", "insightface_arcface"):
    try:
        __import__(f"embedders.{_optional}")
    except ModuleNotFoundError as exc:  # file not added yet
        if exc.name != f"embedders.{_optional}":
            raise

__all__ = ["Embedder", "available", "load_embedder", "register"]
