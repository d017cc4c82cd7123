"""``dlib``: dlib's ResNet face descriptor (128-D), from PyPI ``face-recognition-models`` + ``dlib-bin``.

Engines (``--embedder-opt engine=...``):

- ``onnx`` (default): the network as an ONNX graph built from the user's own .dat file
  (``embedders.dlib_onnx``, cached by the file's sha256) run by onnxruntime in batches, on CUDA
  when ``--device cuda``/``auto`` finds onnxruntime-gpu and a GPU. Equal to dlib's own descriptors
  to cosine >= 0.99999 (tests/test_dlib_onnx.py).
- ``dlib``: dlib's own ``compute_face_descriptor`` in worker processes (dlib's Python binding holds
  the GIL), one per core unless ``threads`` says otherwise; the reference for the ONNX engine.

Alignment paths (``--align``):

- ``fixed``: generator frames that are already face-aligned (``frame="arcface"`` or ``"ffhq"``, see
  ``embedders.face_align``) are warped onto dlib's chip with one fixed similarity transform, one
  sparse matrix product per batch; no detector, every image is described.
- ``detect``: dlib's HOG frontal face detector and its 5-point shape predictor per image, then the
  150x150 chips (padding 0.25) of the whole batch in one vectorised warp that reproduces
  ``dlib.get_face_chip`` bit for bit (``engine=dlib`` calls ``get_face_chip`` itself). Images with
  no face found get ``found=False``.
- ``detect-cnn``: as ``detect`` with dlib's CNN (MMOD) face detector run in onnxruntime
  (``embedders.dlib_cnn_detect``, the same boxes as ``dlib.cnn_face_detection_model_v1``), one
  batch per call; it finds faces in more generator frames than HOG does.
"""

from __future__ import annotations

import importlib.util
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np

from embedders.base import Embedder, l2_normalise, register
from embedders.face_align import dlib_chip_transforms, extract_chips, fixed_crop, FIXED_TEMPLATES
from gancheck.errors import GancheckError
from gancheck.files import file_sha256
from gancheck.maths import angular_distance_from_euclidean, radius_from_theta
from gancheck.images import to_uint8

MODEL_FILES = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")
DETECTOR_FILE = "mmod_human_face_detector.dat"
INSTALL_HINT = "pip install face-recognition-models dlib-bin"
ALIGNS = ("detect", "fixed", "detect-cnn")
ENGINES = ("onnx", "dlib")
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # dlib's recognition chip (dnn_face_recognition_ex)
#: Chips per onnxruntime call: larger batches gain little on CPU (benchmarks/bench_dlib_onnx.py).
ONNX_BATCH = 64
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
        raise GancheckError(f"the dlib embedder needs the face-recognition-models package; run: {INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
    if missing:
        raise GancheckError(f"{', '.join(missing)} missing from {folder}; reinstall with: {INSTALL_HINT}")
    return folder


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise GancheckError(f"the dlib embedder needs dlib; run: {INSTALL_HINT}") from None
    return dlib


def _prepare_frame(dlib, image: np.ndarray) -> np.ndarray:
    """A uint8 frame enlarged to DETECT_MIN_SIDE and given an edge-replicated border, for detection."""
    h, w = image.shape[:2]
    factor = -(-DETECT_MIN_SIDE // min(h, w))
    if factor > 1:
        image = dlib.resize_image(np.ascontiguousarray(image), h * factor, w * factor)
    pad = int(DETECT_BORDER * min(image.shape[:2]))
    return np.ascontiguousarray(np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))


def _largest(boxes: list) -> tuple | None:
    """The (left, top, right, bottom) box of largest area (dlib's inclusive rectangles), or None."""
    return max(boxes, key=lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1)) if boxes else None


def _needs_pyramid(rect: tuple, size: int) -> bool:
    """Whether dlib's ``extract_image_chips`` reads this chip from its pyramid_down<2> image pyramid
    (it does when the halved rectangle still holds more pixels than the chip); such chips are rare
    for generator frames and are cut by ``dlib.get_face_chip`` itself."""
    left, top, right, bottom = rect
    return ((right - left) / 2 + 1) * ((bottom - top) / 2 + 1) > size * size


class _Models:
    """dlib's own detector, landmark predictor and descriptor network (``engine=dlib``), one per process."""

    def __init__(self, folder: Path, detector: str = "hog"):
        dlib = _import_dlib()
        self.dlib = dlib
        self.detector = (dlib.get_frontal_face_detector() if detector == "hog"
                         else dlib.cnn_face_detection_model_v1(str(folder / DETECTOR_FILE)))
        self.cnn = detector == "cnn"
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
        image = _prepare_frame(self.dlib, image)
        faces = [d.rect if self.cnn else d for d in self.detector(image, 0)]
        box = _largest([(f.left(), f.top(), f.right(), f.bottom()) for f in faces])
        if box is None:
            return None
        shape = self.predictor(image, self.dlib.rectangle(*box))
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


def _worker_init(folder: str, detector: str) -> None:
    global _worker_models
    _worker_models = _Models(Path(folder), detector)


def _describe(models: _Models, kind: str, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if kind == "chips":
        return models.describe_chips(batch), np.ones(len(batch), dtype=bool)
    return models.describe_frames(batch)


def _worker_run(task: tuple[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return _describe(_worker_models, *task)


class _DlibEngine:
    """``engine=dlib``: dlib's own implementation, in worker processes when there is more than one core."""

    def __init__(self, folder: Path, detector: str, workers: int):
        self.folder, self.detector, self.workers = folder, detector, workers
        self._local: _Models | None = None
        self._pool: ProcessPoolExecutor | None = None

    def run(self, kind: str, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Equal shares for every worker, at most WORKER_CHUNK images per task.
        rounds = -(-len(batch) // (self.workers * WORKER_CHUNK))
        chunks = [c for c in np.array_split(batch, self.workers * rounds) if len(c)]
        if self.workers == 1 or len(chunks) == 1:
            if self._local is None:
                self._local = _Models(self.folder, self.detector)
            results = [_describe(self._local, kind, c) for c in chunks]
        else:
            if self._pool is None:
                # fork where there is one: spawn would re-run the caller's script in every worker (a script
                # without a __main__ guard then never gets its results). Workers only call dlib, never
                # onnxruntime, so threads the parent holds are never needed in them.
                method = "fork" if "fork" in get_all_start_methods() else "spawn"
                self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context(method), initializer=_worker_init,
                                                 initargs=(str(self.folder), self.detector))
            results = list(self._pool.map(_worker_run, [(kind, c) for c in chunks]))
        return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class _OnnxEngine:
    """``engine=onnx``: detection and landmarks per image, chip warps and the network per batch."""

    def __init__(self, folder: Path, detector: str | None, threads: int | None, device: str):
        from embedders.dlib_onnx import OnnxDescriptor

        self.descriptor = OnnxDescriptor(folder / MODEL_FILES[0], threads, ONNX_BATCH, device)
        self.detector = detector
        if detector is not None:
            self.dlib = _import_dlib()
            self.predictor = self.dlib.shape_predictor(str(folder / MODEL_FILES[1]))
            if detector == "hog":
                self.hog = self.dlib.get_frontal_face_detector()
            else:
                from embedders.dlib_cnn_detect import OnnxCnnFaceDetector

                self.cnn = OnnxCnnFaceDetector(folder / DETECTOR_FILE, threads, device)

    def _boxes(self, prepared: np.ndarray) -> list:
        if self.detector == "hog":
            return [_largest([(f.left(), f.top(), f.right(), f.bottom()) for f in self.hog(im, 0)]) for im in prepared]
        return [_largest([d.rect for d in dets]) for dets in self.cnn.detect_batch(prepared)]

    def chips(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dlib's chips of the faces found in uint8 frames (N, H, W, 3), and the found mask (N,)."""
        prepared = np.stack([_prepare_frame(self.dlib, im) for im in frames])
        boxes = self._boxes(prepared)
        found = np.array([b is not None for b in boxes], dtype=bool)
        shapes = [self.predictor(prepared[i], self.dlib.rectangle(*boxes[i])) for i in np.flatnonzero(found)]
        details = [self.dlib.get_face_chip_details(s, size=CHIP_SIZE, padding=CHIP_PADDING) for s in shapes]
        rects = np.array([(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()) for d in details]).reshape(-1, 4)
        chips = extract_chips(prepared[found], dlib_chip_transforms(rects, [d.angle for d in details], CHIP_SIZE, CHIP_SIZE), CHIP_SIZE)
        for k, rect in enumerate(rects):
            if _needs_pyramid(tuple(rect), CHIP_SIZE):
                chips[k] = self.dlib.get_face_chip(prepared[found][k], shapes[k], size=CHIP_SIZE, padding=CHIP_PADDING)
        return chips, found

    def run(self, kind: str, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if kind == "chips":
            return self.descriptor.describe_chips(batch), np.ones(len(batch), dtype=bool)
        chips, found = self.chips(batch)
        vectors = np.zeros((len(batch), 128), dtype=np.float32)
        if found.any():
            vectors[found] = self.descriptor.describe_chips(chips)
        return vectors, found

    def providers(self) -> list[str]:
        return self.descriptor.session.get_providers()

    def close(self) -> None:
        pass


@register("dlib")
class DlibEmbedder(Embedder):
    """dlib's ResNet face descriptor; see the module docstring for the engines and alignment paths."""

    default_theta = float(angular_distance_from_euclidean(EUCLIDEAN_THRESHOLD, TYPICAL_NORM))
    default_radius = radius_from_theta(default_theta)
    threshold_source = (
        f"dlib's same-identity threshold, Euclidean {EUCLIDEAN_THRESHOLD} on raw descriptors (dlib "
        f"dnn_face_recognition_ex, LFW 99.38%), at the measured median descriptor norm {TYPICAL_NORM}: "
        f"theta = arccos(1 - 0.6^2 / (2 * {TYPICAL_NORM}^2)) / pi; r = theta * 0.25/0.3 (gancheck's convention: the paper's Fig. 7 radius over its code's smallest theta); "
        "docs/thresholds.md"
    )
    input_side = CHIP_SIZE

    def __init__(self, align: str = "detect", frame: str = "arcface", device: str = "auto", threads: int | None = None,
                 engine: str = "onnx"):
        if align not in ALIGNS:
            raise GancheckError(f"--align must be one of {', '.join(ALIGNS)} for the dlib embedder, got {align!r}")
        if frame not in FIXED_TEMPLATES:
            raise GancheckError(f"unknown face frame {frame!r}; choose one of {', '.join(FIXED_TEMPLATES)}")
        if engine not in ENGINES:
            raise GancheckError(f"unknown dlib engine {engine!r}; use --embedder-opt engine=onnx (default) or engine=dlib")
        if device not in ("auto", "cpu", "cuda"):
            raise GancheckError(f"--device must be auto, cpu or cuda, got {device!r}")
        self.align, self.frame, self.engine_name, self.device = align, frame, engine, device
        self.folder = model_dir()
        detector = {"fixed": None, "detect": "hog", "detect-cnn": "cnn"}[align]
        if detector == "cnn" and not (self.folder / DETECTOR_FILE).is_file():
            raise GancheckError(f"{DETECTOR_FILE} missing from {self.folder}; reinstall with: {INSTALL_HINT}")
        self.workers = max(1, int(threads) if threads else len(os.sched_getaffinity(0)))
        if engine == "dlib":
            if device == "cuda" and not _import_dlib().DLIB_USE_CUDA:
                raise GancheckError("this dlib build has no CUDA support; use --device cpu or the default engine=onnx")
            self._engine = _DlibEngine(self.folder, detector or "hog", self.workers)
        else:
            self._engine = _OnnxEngine(self.folder, detector, threads, device)
        self._hashes: dict | None = None

    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise GancheckError(f"the dlib embedder takes RGB image batches (N, H, W, 3), got shape {images.shape}")
        if len(images) == 0:
            return np.zeros((0, 128), dtype=np.float32), np.zeros(0, dtype=bool)
        if self.align == "fixed":
            raw, found = self._engine.run("chips", to_uint8(fixed_crop(images, CHIP_TEMPLATE, CHIP_SIZE, self.frame)))
        else:
            raw, found = self._engine.run("frames", to_uint8(images))
        return l2_normalise(raw), found

    def close(self) -> None:
        """Stop the worker processes of ``engine=dlib`` (they also stop when the interpreter exits)."""
        self._engine.close()

    def model_files(self) -> list[Path]:
        """The .dat files this descriptor loads."""
        files = [self.folder / MODEL_FILES[0]]
        if self.align != "fixed":
            files.append(self.folder / MODEL_FILES[1])
        if self.align == "detect-cnn":
            files.append(self.folder / DETECTOR_FILE)
        return files

    def describe(self) -> dict:
        if self._hashes is None:
            self._hashes = {p.name: file_sha256(p) for p in self.model_files()}
        d = {"name": self.name, "model": "dlib_face_recognition_resnet_model_v1.dat (face-recognition-models)",
             "engine": self.engine_name, "model_sha256": dict(self._hashes), "align": self.align}
        if self.engine_name == "onnx":
            from embedders.dlib_onnx import CONVERTER_VERSION

            d.update(onnx_converter_version=CONVERTER_VERSION, providers=self._engine.providers())
        else:
            d["workers"] = self.workers
        if self.engine_name == "dlib" or self.align != "fixed":
            d["dlib_version"] = _import_dlib().__version__
        if self.align == "fixed":
            d["frame"] = self.frame
        else:
            d["detector"] = {"detect": "dlib HOG frontal face detector", "detect-cnn": "dlib CNN (MMOD) face detector"}[self.align] \
                + " + shape_predictor_5_face_landmarks"
        return d
