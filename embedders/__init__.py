"""Embedders behind one registry: an embedder maps an image batch (float32, NHWC, RGB, values in
[0, 1]) to identity descriptors, unit vectors.

A built-in embedder is one file in this package: an :class:`Embedder` subclass decorated with
:func:`register`, imported below. A third-party embedder needs no edit here: its package declares an
entry point in the group ``gancheck.embedders`` (``meanrgb = "my_package.embedder:MeanRGB"``), and
:func:`load_embedder` finds it by that name.
"""

from embedders.base import EMBEDDERS, Embedder, available, load_embedder, register

from embedders import dlib_resnet, insightface_arcface, onnx_model, pixel  # noqa: E402,F401  (register the built-ins)

__all__ = ["EMBEDDERS", "Embedder", "available", "load_embedder", "register"]
