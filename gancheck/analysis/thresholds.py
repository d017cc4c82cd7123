"""Descriptor thresholds as normalised angular distances (Eq. 4), and their estimation from image pairs.

An embedder's published verification threshold (a Euclidean distance, a cosine similarity) is
converted to ``d = arccos(cos) / pi`` so that ``theta`` (Eq. 3) and the neighbour radius ``r``
(Eq. 9) mean the same thing for every embedder. ``docs/thresholds.md`` derives each default.

``gancheck theta PAIRS_DIR`` estimates both for any embedder from a folder laid out as::

    PAIRS_DIR/same/<pair name>/      two images of one person
    PAIRS_DIR/different/<pair name>/ two images of two different people

(images: .png, .jpg, .jpeg, .bmp, .webp; any size; exactly two per pair folder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gancheck.errors import GancheckError
from gancheck.maths import paired_distance, radius_from_theta

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def best_accuracy_threshold(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """The distance threshold that best separates same-identity from different-identity pairs.

    A pair is called "same" when its distance is <= the threshold. Returns ``(threshold, accuracy)``,
    the threshold being the middle of the widest range of best accuracy (the usual way verification
    thresholds such as dlib's 0.6 are chosen on LFW).
    """
    same = np.sort(np.asarray(same, dtype=np.float64))
    different = np.sort(np.asarray(different, dtype=np.float64))
    if len(same) == 0 or len(different) == 0:
        raise GancheckError("estimating theta needs at least one same-identity and one different-identity pair")
    cuts = np.unique(np.concatenate([same, different, [0.0, 1.0]]))
    candidates = np.concatenate([[0.0], (cuts[:-1] + cuts[1:]) / 2, [1.0]])
    correct = np.searchsorted(same, candidates, side="right") + (
        len(different) - np.searchsorted(different, candidates, side="right")
    )
    best = np.flatnonzero(correct == correct.max())
    # Tied thresholds form runs of consecutive candidates; the middle of the widest run leaves the
    # largest margin on both sides.
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    widest = max(runs, key=lambda run: candidates[run[-1]] - candidates[run[0]])
    threshold = (candidates[widest[0]] + candidates[widest[-1]]) / 2
    return float(threshold), float(correct.max() / (len(same) + len(different)))


def rates_at(threshold: float, same: np.ndarray, different: np.ndarray) -> dict:
    """True-accept rate on same pairs and false-accept rate on different pairs at ``d <= threshold``."""
    return {
        "tar": float(np.mean(np.asarray(same) <= threshold)),
        "far": float(np.mean(np.asarray(different) <= threshold)),
    }


def estimate_thresholds(same: np.ndarray, different: np.ndarray) -> dict:
    """``theta`` (best-accuracy threshold) and ``r`` (theta times the paper's ratio) from pair distances."""
    theta, accuracy = best_accuracy_threshold(same, different)
    radius = radius_from_theta(theta)
    return {
        "theta": theta,
        "radius": radius,
        "accuracy_at_theta": accuracy,
        "at_theta": rates_at(theta, same, different),
        "at_radius": rates_at(radius, same, different),
        "n_same": int(len(same)),
        "n_different": int(len(different)),
        "same_distance": _summary(same),
        "different_distance": _summary(different),
    }


def _summary(x) -> dict:
    x = np.asarray(x, dtype=np.float64)
    return {"min": float(x.min()), "median": float(np.median(x)), "max": float(x.max())}


# ----------------------------------------------------------------------------------------------
# Reading a folder of pairs.


def read_pairs(pairs_dir: Path) -> dict[str, list[tuple[str, Path, Path]]]:
    """``{"same": [(name, image_a, image_b), ...], "different": [...]}`` from the folder layout above."""
    pairs_dir = Path(pairs_dir)
    out: dict[str, list[tuple[str, Path, Path]]] = {"same": [], "different": []}
    for kind in out:
        root = pairs_dir / kind
        if not root.is_dir():
            raise GancheckError(
                f"{root} is missing; put each pair of images in its own folder under {pairs_dir}/same/ "
                f"and {pairs_dir}/different/"
            )
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if len(images) != 2:
                raise GancheckError(f"pair folder {folder} holds {len(images)} images; put exactly two images in it")
            out[kind].append((folder.name, images[0], images[1]))
        if not out[kind]:
            raise GancheckError(f"{root} holds no pair folders; add at least one folder with two images")
    return out


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except OSError as exc:
        raise GancheckError(f"cannot read image {path} ({exc}); replace or remove it") from None


def embed_files(embedder, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Embed image files of any sizes: files of one size go through ``embed`` together."""
    images = [_load_rgb(p) for p in paths]
    vectors: list[np.ndarray | None] = [None] * len(paths)
    found = np.zeros(len(paths), dtype=bool)
    by_shape: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        by_shape.setdefault(im.shape, []).append(i)
    for idx in by_shape.values():
        v, f = embedder.embed(np.stack([images[i] for i in idx]))
        for j, i in enumerate(idx):
            vectors[i], found[i] = v[j], bool(f[j])
    return np.stack(vectors), found


def build_embedder(spec: str, align: str | None, model_dir: Path | None, device: str, threads: int | None):
    from embedders import load_embedder

    return load_embedder(spec, device=device, threads=threads, model_dir=str(model_dir) if model_dir else None, align=align)


def estimate_from_folder(pairs_dir: Path, embedder) -> dict:
    """Embed every pair under ``pairs_dir`` and estimate ``theta`` and ``r`` for ``embedder``."""
    pairs = read_pairs(pairs_dir)
    distances: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    for kind, items in pairs.items():
        vectors, found = embed_files(embedder, [p for _, a, b in items for p in (a, b)])
        va, vb = vectors[0::2], vectors[1::2]
        ok = found[0::2] & found[1::2]
        skipped += [f"{kind}/{name}" for (name, _, _), good in zip(items, ok) if not good]
        distances[kind] = paired_distance(va[ok], vb[ok])
    if len(distances["same"]) == 0 or len(distances["different"]) == 0:
        raise GancheckError(
            f"no face was found in enough pairs under {pairs_dir} ({len(skipped)} pairs skipped); "
            "use photos with visible faces or try --align fixed for pre-aligned crops"
        )
    result = estimate_thresholds(distances["same"], distances["different"])
    result["embedder"] = embedder.describe()
    result["embedder_defaults"] = {"theta": embedder.default_theta, "radius": embedder.default_radius}
    result["descriptor"], result["descriptor_defaults"] = result["embedder"], result["embedder_defaults"]  # names before 0.2, kept for one release
    result["skipped_pairs_no_face"] = skipped
    return result
