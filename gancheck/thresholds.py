"""Descriptor thresholds as normalised angular distances (Eq. 4), and their estimation from image pairs.

A descriptor's published verification threshold (a Euclidean distance, a cosine similarity) is
converted to ``d = arccos(cos) / pi`` so that ``theta`` (Eq. 3) and the neighbour radius ``r``
(Eq. 9) mean the same thing for every descriptor. ``docs/thresholds.md`` derives each default.

``gancheck theta PAIRS_DIR`` estimates both for any descriptor from a folder laid out as::

    PAIRS_DIR/same/<pair name>/      two images of one person
    PAIRS_DIR/different/<pair name>/ two images of two different people

(images: .png, .jpg, .jpeg, .bmp, .webp; any size; exactly two per pair folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from gancheck.errors import GancheckError

#: ``r / theta`` in the paper's code: neighbours within 0.25 (its Fig. 7) against theta = 0.3.
RADIUS_OVER_THETA = 0.25 / 0.30
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def angular_distance(cosine) -> np.ndarray:
    """Eq. (4): ``arccos(cos) / pi`` in [0, 1], from cosine similarities of unit vectors."""
    return np.arccos(np.clip(np.asarray(cosine, dtype=np.float64), -1.0, 1.0)) / np.pi


def cosine_from_angular_distance(d) -> np.ndarray:
    """The inverse of Eq. (4): the cosine similarity at normalised angular distance ``d``."""
    return np.cos(np.pi * np.asarray(d, dtype=np.float64))


def cosine_from_euclidean(e, norm_a=1.0, norm_b=None) -> np.ndarray:
    """The cosine of the angle between vectors of norms ``norm_a``, ``norm_b`` that are ``e`` apart.

    Law of cosines, ``e^2 = a^2 + b^2 - 2 a b cos``; for unit vectors ``cos = 1 - e^2 / 2``.
    ``norm_b`` defaults to ``norm_a``.
    """
    a = np.asarray(norm_a, dtype=np.float64)
    b = a if norm_b is None else np.asarray(norm_b, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    return (a**2 + b**2 - e**2) / (2 * a * b)


def angular_distance_from_euclidean(e, norm_a=1.0, norm_b=None) -> np.ndarray:
    """Eq. (4) distance between descriptors ``e`` apart in Euclidean distance with the given norms."""
    return angular_distance(cosine_from_euclidean(e, norm_a, norm_b))


def radius_from_theta(theta: float) -> float:
    """The neighbour radius ``r`` paired with ``theta``, at the paper's ratio ``r / theta = 0.25 / 0.3``."""
    return float(theta) * RADIUS_OVER_THETA


def pair_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Eq. (4) distance between row ``i`` of ``a`` and row ``i`` of ``b`` (unit vectors, (N, D) each)."""
    return angular_distance(np.einsum("ij,ij->i", np.asarray(a, np.float64), np.asarray(b, np.float64)))


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


def _build_embedder(spec: str, align: str | None, model_dir: Path | None, device: str, threads: int | None):
    from gancheck.api import load_descriptor

    return load_descriptor(spec, device=device, threads=threads, model_dir=str(model_dir) if model_dir else None, align=align)


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
        distances[kind] = pair_distances(va[ok], vb[ok])
    if len(distances["same"]) == 0 or len(distances["different"]) == 0:
        raise GancheckError(
            f"no face was found in enough pairs under {pairs_dir} ({len(skipped)} pairs skipped); "
            "use photos with visible faces or try --align fixed for pre-aligned crops"
        )
    result = estimate_thresholds(distances["same"], distances["different"])
    result["descriptor"] = embedder.describe()
    result["descriptor_defaults"] = {"theta": embedder.default_theta, "radius": embedder.default_radius}
    result["skipped_pairs_no_face"] = skipped
    return result


def theta_command(
    pairs_dir: Annotated[Path, typer.Argument(help="Folder with same/<pair>/ and different/<pair>/ sub-folders of two images each.")],
    embedder: Annotated[str, typer.Option("--embedder", "-e", help="Descriptor: dlib, insightface, pixel, onnx:PATH.")] = "dlib",
    align: Annotated[Optional[str], typer.Option("--align", help="Face descriptors: detect (find the face) or fixed (pre-aligned crops).")] = None,
    insightface_dir: Annotated[Optional[Path], typer.Option("--insightface-dir", envvar="GANCHECK_INSIGHTFACE_DIR", help="Directory holding the InsightFace model pack.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads / worker processes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
):
    """Estimate a descriptor's theta and r (normalised angular distances, Eq. 4) from image pairs."""
    model = _build_embedder(embedder, align, insightface_dir, device, threads)
    result = estimate_from_folder(pairs_dir, model)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    s, d = result["same_distance"], result["different_distance"]
    print(f"descriptor {embedder}: {result['n_same']} same-identity and {result['n_different']} different-identity pairs")
    print(f"  same pairs      d: min {s['min']:.4f}  median {s['median']:.4f}  max {s['max']:.4f}")
    print(f"  different pairs d: min {d['min']:.4f}  median {d['median']:.4f}  max {d['max']:.4f}")
    print(
        f"  theta = {result['theta']:.4f}  (best accuracy {result['accuracy_at_theta']:.3f}; "
        f"TAR {result['at_theta']['tar']:.3f}, FAR {result['at_theta']['far']:.3f})"
    )
    print(
        f"  r     = {result['radius']:.4f}  (theta x 0.25/0.3; TAR {result['at_radius']['tar']:.3f}, "
        f"FAR {result['at_radius']['far']:.3f})"
    )
    defaults = result["descriptor_defaults"]
    print(f"  descriptor defaults: theta {defaults['theta']:.4f}, r {defaults['radius']:.4f}")
    if result["skipped_pairs_no_face"]:
        print(f"  skipped (no face found): {', '.join(result['skipped_pairs_no_face'])}")
