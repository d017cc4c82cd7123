"""``insightface[:PACK]``: ArcFace descriptors from an InsightFace model pack (default ``buffalo_l``).

InsightFace ships no weights and gancheck never downloads any: the pack's .onnx files are read
from ``model_dir`` (CLI ``--insightface-dir``, environment ``GANCHECK_INSIGHTFACE_DIR``, default
``~/.insightface/models``), in ``<dir>/<pack>/``, ``<dir>/models/<pack>/`` or ``<dir>/`` itself.

Two alignment paths:

- ``detect``: the pack's SCRFD detector finds the face and its 5 landmarks; the standard ArcFace
  similarity-transform crop follows. Images with no face get ``found=False``. Needs both files.
- ``fixed``: generator frames that are already face-aligned (``frame="arcface"`` or ``"ffhq"``, see
  ``embedders.face_align``) are cropped with one fixed transform; no detector. Needs only the
  recognition file.

Both ONNX sessions are opened once (CUDA when onnxruntime-gpu is present) and the recognition
network is fed whole batches.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from embedders.base import Embedder, l2_normalise, register
from embedders.face_align import ARCFACE_112, FIXED_TEMPLATES, align_to_template, fixed_crop
from gancheck.errors import GancheckError
from gancheck.onnx_runtime import open_session
from gancheck.maths import angular_distance, radius_from_theta
from gancheck.defaults import BATCH_SIZE
from gancheck.images import to_uint8

ENV_VAR = "GANCHECK_INSIGHTFACE_DIR"
DEFAULT_DIR = Path("~/.insightface/models")
#: (detector, recognition) file of each released pack.
PACK_FILES = {
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
    "buffalo_m": ("det_2.5g.onnx", "w600k_r50.onnx"),
    "buffalo_s": ("det_500m.onnx", "w600k_mbf.onnx"),
    "buffalo_sc": ("det_500m.onnx", "w600k_mbf.onnx"),
    "antelopev2": ("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
}
#: Same identity at cosine similarity >= 0.4: InsightFace 2.1's own verification default
#: (insightface/gui/core/constants.py DEFAULT_THRESHOLD, used by compare_embeddings).
COSINE_THRESHOLD = 0.4
BATCH = BATCH_SIZE


def pack_dirs(model_dir: str | Path | None, pack: str) -> list[Path]:
    """The folders searched for ``pack``'s files, in order."""
    root = Path(model_dir or os.environ.get(ENV_VAR) or DEFAULT_DIR).expanduser()
    return [root / pack, root / "models" / pack, root]


def find_pack_files(model_dir: str | Path | None, pack: str, names: list[str]) -> list[Path]:
    """Paths of ``names`` in the first searched folder that holds them all, or a GancheckError saying
    exactly which files are needed and where."""
    folders = pack_dirs(model_dir, pack)
    for folder in folders:
        if all((folder / n).is_file() for n in names):
            return [folder / n for n in names]
    # Name the folder that already holds most of the pack, so the message lists only what is absent.
    best = min(folders, key=lambda f: sum(not (f / n).is_file() for n in names))
    missing = [n for n in names if not (best / n).is_file()]
    raise GancheckError(
        f"InsightFace pack {pack!r} needs {' and '.join(missing)} in {best} (also searched "
        f"{', '.join(str(f) for f in folders[1:])}); copy the {pack} files there or point "
        f"--insightface-dir / {ENV_VAR} at their folder (gancheck never downloads models)"
    )


def crop_template(size: int) -> np.ndarray:
    """The ArcFace 5-point template for a ``size x size`` crop (insightface ``estimate_norm``)."""
    if size % 112 == 0:
        return ARCFACE_112 * (size / 112.0)
    if size % 128 == 0:
        return ARCFACE_112 * (size / 128.0) + np.array([8.0 * size / 128.0, 0.0])
    raise GancheckError(f"ArcFace crops are 112 or 128 pixels (or multiples); the model takes {size}")


@register("insightface")
class InsightFaceEmbedder(Embedder):
    """ArcFace recognition (e.g. ``w600k_r50``) behind InsightFace's SCRFD detector or a fixed crop."""

    default_theta = float(angular_distance(COSINE_THRESHOLD))
    default_radius = radius_from_theta(default_theta)
    threshold_source = (
        f"InsightFace 2.1's verification threshold, cosine similarity {COSINE_THRESHOLD} (gui/core/constants.py "
        f"DEFAULT_THRESHOLD) for buffalo_l w600k_r50: theta = arccos({COSINE_THRESHOLD}) / pi; "
        "r = theta * 0.25/0.3 (gancheck's convention: the paper's Fig. 7 radius over its code's smallest theta); docs/thresholds.md"
    )

    def __init__(
        self,
        pack: str = "buffalo_l",
        model_dir: str | Path | None = None,
        align: str = "detect",
        frame: str = "arcface",
        device: str = "auto",
        threads: int | None = None,
        det_size: int | None = None,
        det_thresh: float = 0.5,
    ):
        if pack not in PACK_FILES:
            raise GancheckError(f"unknown InsightFace pack {pack!r}; choose one of {', '.join(PACK_FILES)}")
        if align not in ("detect", "fixed"):
            raise GancheckError(f"--align must be detect or fixed for the insightface embedder, got {align!r}")
        if frame not in FIXED_TEMPLATES:
            raise GancheckError(f"unknown face frame {frame!r}; choose one of {', '.join(FIXED_TEMPLATES)}")
        self.pack, self.align, self.frame = pack, align, frame
        det_name, rec_name = PACK_FILES[pack]
        names = [rec_name] + ([det_name] if align == "detect" else [])
        paths = find_pack_files(model_dir, pack, names)
        self.rec_path = paths[0]
        self.det_path = paths[1] if align == "detect" else None

        from insightface.model_zoo.arcface_onnx import ArcFaceONNX

        session = open_session(self.rec_path, device=device, threads=threads, what="InsightFace recognition model")
        # ArcFaceONNX reads the input normalisation the pack's converter baked in (mxnet-converted
        # models normalise inside the graph) and the crop size.
        self.rec = ArcFaceONNX(model_file=str(self.rec_path), session=session)
        self.size = int(self.rec.input_size[0])
        self.template = crop_template(self.size)
        batch, dim = session.get_inputs()[0].shape[0], session.get_outputs()[0].shape[-1]
        self.fixed_batch = batch if isinstance(batch, int) else None
        self.dim = dim if isinstance(dim, int) else 512  # ArcFace's width, for batches with no face at all
        self.det_size, self.det_thresh = det_size, float(det_thresh)
        self.det = None
        if self.det_path is not None:
            from insightface.model_zoo.scrfd import SCRFD

            det_session = open_session(self.det_path, device=device, threads=threads, what="InsightFace detector")
            self.det = SCRFD(model_file=str(self.det_path), session=det_session)
            if not self.det.use_kps:
                raise GancheckError(f"{self.det_path} gives no facial landmarks; use a pack whose detector does (e.g. buffalo_l)")
            sizes = {"input_size": (det_size, det_size)} if det_size else {}
            # ctx_id 0 keeps the providers open_session chose (a negative id would force CPU).
            self.det.prepare(0, det_thresh=self.det_thresh, **sizes)

    def detect_landmarks(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """5 landmarks (N, 5, 2) of the most prominent face in each image, and the found mask."""
        u8 = to_uint8(images)[..., ::-1]  # SCRFD takes BGR
        landmarks = np.zeros((len(images), 5, 2))
        found = np.zeros(len(images), dtype=bool)
        for i, im in enumerate(u8):
            boxes, kps = self.det.detect(np.ascontiguousarray(im), max_num=1)
            if len(boxes):
                landmarks[i], found[i] = kps[0], True
        return landmarks, found

    def describe_crops(self, crops: np.ndarray) -> np.ndarray:
        """Raw embeddings of aligned RGB crops in [0, 1], (N, size, size, 3) -> (N, D)."""
        x = (crops * 255.0 - self.rec.input_mean) / self.rec.input_std
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
        step = self.fixed_batch or BATCH
        outs = []
        for i in range(0, len(x), step):
            part = x[i : i + step]
            pad = step - len(part) if self.fixed_batch else 0
            if pad:  # fixed-batch model: pad the last batch, then drop the padding
                part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
            out = self.rec.session.run(self.rec.output_names, {self.rec.input_name: part})[0]
            outs.append(np.asarray(out, dtype=np.float32).reshape(len(part), -1)[: len(part) - pad])
        return np.concatenate(outs)

    @property
    def input_side(self) -> int:
        return self.size

    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise GancheckError(f"the insightface embedder takes RGB image batches (N, H, W, 3), got shape {images.shape}")
        if self.align == "fixed":
            crops = fixed_crop(images, self.template, self.size, self.frame)
            return l2_normalise(self.describe_crops(crops)), np.ones(len(images), dtype=bool)
        landmarks, found = self.detect_landmarks(images)
        vectors = np.zeros((len(images), self.dim), dtype=np.float32)
        if found.any():
            vectors[found] = self.describe_crops(align_to_template(images[found], landmarks[found], self.template, self.size))
        return l2_normalise(vectors), found

    def describe(self) -> dict:
        d = {
            "name": self.name,
            "pack": self.pack,
            "recognition": str(self.rec_path),
            "align": self.align,
            "crop_size": self.size,
        }
        if self.align == "fixed":
            d["frame"] = self.frame
        else:
            d.update(detector=str(self.det_path), det_size=self.det_size or "insightface default", det_thresh=self.det_thresh)
        return d
