"""``dlib``: dlib's ResNet face descriptor (128-D), from PyPI ``face-recognition-models`` + ``dlib-bin``.

Two alignment paths:

- ``detect``: dlib's HOG frontal face detector, its 5-point shape predictor and ``get_face_chip``
  (150x150, padding 0.25), exactly dlib's own recognition pipeline. Images with no face detected get
  ``found=False``.
- ``fixed``: generator frames that are already face-aligned (``frame="arcface"`` or ``"ffhq"``, see
  ``embedders.face_align``) are warped onto dlib's chip with one fixed similarity transform; no
  detector, every image is described.

dlib's Python binding holds the GIL while it computes descriptors, so both cores are used through
worker processes (one per core unless ``threads`` says otherwise), each with its own model copy.
"""

from __future__ import annotations

import importlib.util
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np

from embedders.base import Embedder, l2_normalise, register
from embedders.face_align import fixed_crop, FIXED_TEMPLATES
from gancheck.errors import GancheckError
from gancheck.maths import angular_distance_from_euclidean, radius_from_theta
from gancheck.images import to_uint8

MODEL_FILES = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")
INSTALL_HINT = "pip install face-recognition-models dlib-bin"
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # dlib's recognition chip (dnn_face_recognition_ex)
#: dlib's same-identity rule: raw descriptors less than this Euclidean distance apart (LFW 99.38%).
EUCLIDEAN_THRESHOLD = 0.6
#: Median L2 norm of raw dlib descriptors of real faces (measured, docs/thresholds.md); they are not unit vectors.
TYPICAL_NORM = 1.47
# The HOG detector's window is 80x80 with some context: small frames are enlarged and every frame
# gets an edge-replicated border so faces that fill the frame are still found.
DETECT_MIN_SIDE = 128
DETECT_BORDER = 0.25
WORKER_CHUNK = 16

# dlib's mean face shape (dlib/image_transforms/interpolation.h, get_face_chip_details, unpadded unit
# square) reduced to the ArcFace 5 points: eye centres (means of points 36-41 and 42-47), nose tip
# (30), mouth corners (48, 54). Placed in the padded 150x150 chip, it is where the fixed path puts
# the template landmarks, so fixed crops match the chips of the detect path.
_EYE_L = np.array([[0.121737, 0.216423], [0.187122, 0.178758], [0.265825, 0.179852],
                   [0.334606, 0.231733], [0.260918, 0.245099], [0.182743, 0.244077]])
_EYE_R = np.array([[0.645647, 0.231733], [0.714428, 0.179852], [0.793132, 0.178758],
                   [0.858516, 0.216423], [0.79751, 0.244077], [0.719335, 0.245099]])
_MEAN_FACE_5 = np.array([_EYE_L.mean(0), _EYE_R.mean(0), [0.490127, 0.515625], [0.254149, 0.780233], [0.726104, 0.780233]])
CHIP_TEMPLATE = (CHIP_PADDING + _MEAN_FACE_5) / (2 * CHIP_PADDING + 1) * CHIP_SIZE


def model_dir() -> Path:
    """The folder of face-recognition-models' .dat files, found without importing the package
    (its ``__init__`` imports ``pkg_resources``, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise GancheckError(f"the dlib descriptor needs the face-recognition-models package; run: {INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
    if missing:
        raise GancheckError(f"{', '.join(missing)} missing from {folder}; reinstall with: {INSTALL_HINT}")
    return folder


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise GancheckError(f"the dlib descriptor needs dlib; run: {INSTALL_HINT}") from None
    return dlib


class _Models:
    """dlib's detector, landmark predictor and descriptor network, loaded once per process."""

    def __init__(self, folder: Path):
        dlib = _import_dlib()
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))

    def describe_chips(self, chips: np.ndarray) -> np.ndarray:
        """Raw 128-D descriptors of aligned uint8 chips (N, 150, 150, 3)."""
        if len(chips) == 0:
            return np.zeros((0, 128), dtype=np.float32)
        out = self.net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.asarray([np.asarray(v) for v in out], dtype=np.float32)

    def find_chip(self, image: np.ndarray) -> np.ndarray | None:
        """dlib's 150x150 chip of the largest face in a uint8 RGB image, or None if none is found."""
        h, w = image.shape[:2]
        factor = -(-DETECT_MIN_SIDE // min(h, w))
        if factor > 1:
            image = self.dlib.resize_image(np.ascontiguousarray(image), h * factor, w * factor)
        pad = int(DETECT_BORDER * min(image.shape[:2]))
        image = np.ascontiguousarray(np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
        faces = self.detector(image, 0)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda r: r.area())
        shape = self.predictor(image, face)
        return self.dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING)

    def describe_frames(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw descriptors and found mask for uint8 frames (N, H, W, 3) via detect + align."""
        chips = [self.find_chip(im) for im in images]
        found = np.array([c is not None for c in chips], dtype=bool)
        vectors = np.zeros((len(images), 128), dtype=np.float32)
        if found.any():
            vectors[found] = self.describe_chips(np.stack([c for c in chips if c is not None]))
        return vectors, found


_worker_models: _Models | None = None


def _worker_init(folder: str) -> None:
    global _worker_models
    _worker_models = _Models(Path(folder))


def _describe(models: _Models, kind: str, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if kind == "chips":
        return models.describe_chips(batch), np.ones(len(batch), dtype=bool)
    return models.describe_frames(batch)


def _worker_run(task: tuple[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return _describe(_worker_models, *task)


@register("dlib")
class DlibEmbedder(Embedder):
    """dlib's ResNet face descriptor; see the module docstring for the alignment paths."""

    default_theta = float(angular_distance_from_euclidean(EUCLIDEAN_THRESHOLD, TYPICAL_NORM))
    default_radius = radius_from_theta(default_theta)
    threshold_source = (
        f"dlib's same-identity threshold, Euclidean {EUCLIDEAN_THRESHOLD} on raw descriptors (dlib "
        f"dnn_face_recognition_ex, LFW 99.38%), at the measured median descriptor norm {TYPICAL_NORM}: "
        f"theta = arccos(1 - 0.6^2 / (2 * {TYPICAL_NORM}^2)) / pi; r = theta * 0.25/0.3 (gancheck's convention: the paper's Fig. 7 radius over its code's smallest theta); "
        "docs/thresholds.md"
    )

    def __init__(self, align: str = "detect", frame: str = "arcface", device: str = "auto", threads: int | None = None):
        if align not in ("detect", "fixed"):
            raise GancheckError(f"--align must be detect or fixed for the dlib descriptor, got {align!r}")
        if frame not in FIXED_TEMPLATES:
            raise GancheckError(f"unknown face frame {frame!r}; choose one of {', '.join(FIXED_TEMPLATES)}")
        dlib = _import_dlib()
        if device == "cuda" and not dlib.DLIB_USE_CUDA:
            raise GancheckError("this dlib build has no CUDA support; use --device cpu (dlib-bin is CPU-only)")
        self.align = align
        self.frame = frame
        self.folder = model_dir()
        self.workers = max(1, int(threads) if threads else len(os.sched_getaffinity(0)))
        self._local: _Models | None = None
        self._pool: ProcessPoolExecutor | None = None

    def _run(self, kind: str, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Equal shares for every worker, at most WORKER_CHUNK images per task.
        rounds = -(-len(batch) // (self.workers * WORKER_CHUNK))
        chunks = [c for c in np.array_split(batch, self.workers * rounds) if len(c)]
        if self.workers == 1 or len(chunks) == 1:
            if self._local is None:
                self._local = _Models(self.folder)
            results = [_describe(self._local, kind, c) for c in chunks]
        else:
            if self._pool is None:
                # fork where there is one: spawn would re-run the caller's script in every worker (a script
                # without a __main__ guard then never gets its results). Workers only call dlib, so
                # threads the parent holds (onnxruntime, OpenMP) are never needed in them.
                method = "fork" if "fork" in get_all_start_methods() else "spawn"
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=get_context(method), initializer=_worker_init, initargs=(str(self.folder),)
                )
            results = list(self._pool.map(_worker_run, [(kind, c) for c in chunks]))
        return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])

    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise GancheckError(f"the dlib descriptor takes RGB image batches (N, H, W, 3), got shape {images.shape}")
        if len(images) == 0:
            return np.zeros((0, 128), dtype=np.float32), np.zeros(0, dtype=bool)
        if self.align == "fixed":
            raw, found = self._run("chips", to_uint8(fixed_crop(images, CHIP_TEMPLATE, CHIP_SIZE, self.frame)))
        else:
            raw, found = self._run("frames", to_uint8(images))
        return l2_normalise(raw), found

    def close(self) -> None:
        """Stop the worker processes (they also stop when the interpreter exits)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def describe(self) -> dict:
        d = {
            "name": self.name,
            "model": "dlib_face_recognition_resnet_model_v1.dat (face-recognition-models)",
            "dlib_version": _import_dlib().__version__,
            "align": self.align,
            "workers": self.workers,
        }
        if self.align == "fixed":
            d["frame"] = self.frame
        else:
            d["detector"] = "dlib HOG frontal face detector + shape_predictor_5_face_landmarks"
        return d
