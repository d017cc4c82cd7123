"""Face alignment shared by the face descriptors: 5-point templates, similarity transforms, warping.

Landmark order everywhere is the ArcFace one: image-left eye centre, image-right eye centre, nose
tip, image-left mouth corner, image-right mouth corner; coordinates are (x, y) in pixels with pixel
centres at integers (OpenCV's convention, so crops match ``cv2.warpAffine``).
"""

from __future__ import annotations

import functools

import numpy as np

from gancheck.errors import GancheckError

#: The standard ArcFace 5-point template of a 112x112 crop (insightface ``face_align.arcface_dst``).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def ffhq_frame(landmarks: np.ndarray) -> np.ndarray:
    """Where ``landmarks`` (5, 2) land, as fractions of the side, in a crop made by FFHQ's alignment rule.

    FFHQ (and CelebA-HQ, which uses the same rule) centres a square on ``eye_avg + 0.1 * eye_to_mouth``
    with side ``2 * max(2 * |eye_to_eye|, 1.8 * |eye_to_mouth|)``, rotated so the eyes are level.
    """
    p = np.asarray(landmarks, dtype=np.float64)
    eye_avg = (p[0] + p[1]) / 2
    eye_to_eye = p[1] - p[0]
    eye_to_mouth = (p[3] + p[4]) / 2 - eye_avg
    side = 2 * max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    centre = eye_avg + 0.1 * eye_to_mouth
    return (p - centre) / side + 0.5


#: Landmark positions of face-aligned generator frames, as fractions of (width, height).
#: ``arcface``: the frame is an ArcFace crop (insightface training data, DigiFace-1M; the DCGAN
#: example's mean detected landmarks are within 0.02 of it). ``ffhq``: FFHQ / CelebA-HQ alignment.
FIXED_TEMPLATES = {
    "arcface": (ARCFACE_112 + 0.5) / 112.0,
    "ffhq": ffhq_frame(ARCFACE_112),
}


def fixed_landmarks(height: int, width: int, template: str = "arcface") -> np.ndarray:
    """The 5 landmark positions (5, 2) in pixels of an ``height x width`` frame aligned as ``template``."""
    if template not in FIXED_TEMPLATES:
        raise GancheckError(f"unknown face template {template!r}; choose one of {', '.join(FIXED_TEMPLATES)}")
    # Fractions refer to the continuous frame [0, W] x [0, H]; pixel centres sit at half-integers there.
    return FIXED_TEMPLATES[template] * np.array([width, height]) - 0.5


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transforms (rotation, uniform scale, translation) taking ``src`` to ``dst``.

    Umeyama (1991), vectorised over a batch. src: (N, K, 2); dst: (K, 2) or (N, K, 2).
    Returns (N, 2, 3) matrices ``M`` with ``dst ~= src @ M[:, :, :2].T + M[:, :, 2]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.broadcast_to(np.asarray(dst, dtype=np.float64), src.shape)
    mu_s, mu_d = src.mean(axis=1, keepdims=True), dst.mean(axis=1, keepdims=True)
    s, d = src - mu_s, dst - mu_d
    cov = np.einsum("nki,nkj->nij", d, s) / src.shape[1]
    u, sig, vt = np.linalg.svd(cov)
    # A reflection would mirror the face; flip the weakest axis instead (Umeyama's S matrix).
    sign = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)
    fix = np.stack([np.ones_like(sign), sign], axis=1)
    rot = np.einsum("nij,nj,njk->nik", u, fix, vt)
    var_s = (s**2).sum(axis=(1, 2)) / src.shape[1]
    scale = (sig * fix).sum(axis=1) / np.maximum(var_s, 1e-12)
    lin = rot * scale[:, None, None]
    shift = mu_d[:, 0] - np.einsum("nij,nj->ni", lin, mu_s[:, 0])
    return np.concatenate([lin, shift[:, :, None]], axis=2)


def _box_downsample(images: np.ndarray, k: int) -> np.ndarray:
    n, h, w, c = images.shape
    h2, w2 = h // k, w // k
    return images[:, : h2 * k, : w2 * k].reshape(n, h2, k, w2, k, c).mean(axis=(2, 4), dtype=np.float32)


def _sampling_operator(matrices: np.ndarray, h: int, w: int, size: int):
    """Sparse bilinear sampling operator of shape (M*size*size, M*h*w) for M input-to-output matrices."""
    import scipy.sparse

    n_mats = len(matrices)
    lin_inv = np.linalg.inv(matrices[:, :, :2])
    off = -np.einsum("nij,nj->ni", lin_inv, matrices[:, :, 2])
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    src = lin_inv @ np.stack([xs.ravel(), ys.ravel()]) + off[:, :, None]  # (M, 2, S*S) source coordinates
    x0, y0 = np.floor(src[:, 0]), np.floor(src[:, 1])
    fx, fy = src[:, 0] - x0, src[:, 1] - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    row = np.arange(n_mats * size * size).reshape(n_mats, -1)
    base = (np.arange(n_mats) * h * w)[:, None]
    rows, cols, vals = [], [], []
    for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)  # outside the frame reads as 0 (black)
        rows.append(row[inside])
        cols.append((base + yy * w + xx)[inside])
        vals.append(wgt[inside])
    shape = (n_mats * size * size, n_mats * h * w)
    data = (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols)))
    return scipy.sparse.csr_matrix(data, shape=shape)


def warp_affine(images: np.ndarray, matrices: np.ndarray, size: int) -> np.ndarray:
    """Crop ``size x size`` images: output pixel ``q`` takes input pixel ``M^-1 q`` (bilinear, zero border).

    images: (N, H, W, C) float32; matrices: (N, 2, 3), or one (2, 3) shared by the batch, mapping input
    to output pixels as for ``cv2.warpAffine``. The warp is one sparse matrix product for the whole
    batch. Strong reductions are box-averaged first so that small crops of large frames do not alias.
    """
    images = np.asarray(images, dtype=np.float32)
    m = np.asarray(matrices, dtype=np.float64)
    shared = m.ndim == 2
    m = m.reshape(-1, 2, 3)
    scale = np.sqrt(np.abs(np.linalg.det(m[:, :, :2]))).max()
    k = int(1.0 / scale) if scale < 0.5 else 1
    if k > 1 and min(images.shape[1:3]) >= 2 * k:
        images = _box_downsample(images, k)
        # Reduced pixel x covers original pixels k*x .. k*x+k-1, centred at k*x + (k-1)/2.
        m = m.copy()
        m[:, :, 2] += m[:, :, :2] @ np.full(2, (k - 1) / 2)
        m[:, :, :2] *= k
    n, h, w, c = images.shape
    if shared:  # one operator for all images (cached: a fixed crop reuses it every batch): images become columns
        op = _shared_operator(tuple(m.ravel()), h, w, size)
        cols = images.transpose(1, 2, 0, 3).reshape(h * w, n * c)
        return np.asarray(op @ cols).reshape(size, size, n, c).transpose(2, 0, 1, 3)
    op = _sampling_operator(m, h, w, size)
    return np.asarray(op @ images.reshape(n * h * w, c)).reshape(n, size, size, c)


@functools.lru_cache(maxsize=8)
def _shared_operator(matrix: tuple, h: int, w: int, size: int):
    return _sampling_operator(np.array(matrix, dtype=np.float64).reshape(1, 2, 3), h, w, size)


def align_to_template(images: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """Warp each image so its landmarks (N, 5, 2) fall on ``template`` (5, 2) of a ``size x size`` crop."""
    return warp_affine(images, umeyama(landmarks, template), size)


def fixed_crop(images: np.ndarray, template: np.ndarray, size: int, frame: str = "arcface") -> np.ndarray:
    """Crop pre-aligned images (frame ``frame``, see :data:`FIXED_TEMPLATES`) onto ``template``; no detector."""
    n, h, w, _ = np.shape(images)
    m = umeyama(fixed_landmarks(h, w, frame)[None], template)[0]
    return warp_affine(images, m, size)


def dlib_chip_transforms(rects: np.ndarray, angles: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Chip-to-image affine maps (N, 2, 3) of dlib ``chip_details`` (``rects``: (N, 4) left, top,
    right, bottom of the drectangle; ``angles``: (N,) radians), as ``extract_image_chips`` builds them:
    the chip's top-left, top-right and bottom-left pixel centres go to the corners of the rectangle
    rotated by ``angle`` about its centre (dlib/image_transforms/interpolation.h)."""
    r = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    centre = np.stack([(r[:, 0] + r[:, 2]) / 2, (r[:, 1] + r[:, 3]) / 2], axis=1)
    cos, sin = np.cos(a)[:, None], np.sin(a)[:, None]

    def rotated(x, y):
        p = np.stack([x, y], axis=1) - centre
        return np.concatenate([cos * p[:, :1] - sin * p[:, 1:], sin * p[:, :1] + cos * p[:, 1:]], axis=1) + centre

    tl, tr, bl = rotated(r[:, 0], r[:, 1]), rotated(r[:, 2], r[:, 1]), rotated(r[:, 0], r[:, 3])
    return np.stack([(tr - tl) / (cols - 1), (bl - tl) / (rows - 1), tl], axis=2)


def extract_chips(images: np.ndarray, chip_to_image: np.ndarray, size: int) -> np.ndarray:
    """``size x size`` uint8 chips of uint8 images (N, H, W, C), chip pixel ``q`` read at ``M q``.

    dlib's ``interpolate_bilinear`` for the whole batch at once: the four neighbours weighted in
    float64 in dlib's order, truncated to uint8; a sample whose 2x2 neighbourhood leaves the image
    is 0. With the maps of :func:`dlib_chip_transforms` this is ``dlib.get_face_chip`` for chips
    that dlib extracts without its image pyramid (see ``embedders.dlib_resnet``)."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    m = np.asarray(chip_to_image, dtype=np.float64).reshape(n, 2, 3)
    ys, xs = np.mgrid[0:size, 0:size].reshape(2, 1, -1).astype(np.float64)
    px = m[:, 0, 0, None] * xs + m[:, 0, 1, None] * ys + m[:, 0, 2, None]
    py = m[:, 1, 0, None] * xs + m[:, 1, 1, None] * ys + m[:, 1, 2, None]
    left, top = np.floor(px), np.floor(py)
    inside = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    lr, tb = (px - left)[..., None], (py - top)[..., None]
    idx = (np.clip(top, 0, h - 2) * w + np.clip(left, 0, w - 2)).astype(np.int64) + (np.arange(n) * h * w)[:, None]
    flat = images.reshape(n * h * w, c)

    def at(offset):
        return flat[idx + offset].astype(np.float64)

    value = (1 - tb) * ((1 - lr) * at(0) + lr * at(1)) + tb * ((1 - lr) * at(w) + lr * at(w + 1))
    out = np.where(inside[..., None], value, 0.0)
    return out.astype(np.uint8).reshape(n, size, size, c)
