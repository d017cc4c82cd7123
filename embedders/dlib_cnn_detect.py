"""dlib's CNN (MMOD) face detector run through onnxruntime, decoded as dlib decodes it.

``OnnxCnnFaceDetector(dat_path)(image, upsample_num_times)`` returns what
``dlib.cnn_face_detection_model_v1(dat_path)(image, upsample_num_times)`` returns: a list of
detections with an integer rectangle (left, top, right, bottom; inclusive, dlib's convention) and
the detection confidence, best first.

What is reproduced (dlib 19.x/20.x sources):

- ``tools/python/src/cnn_face_detector.cpp``: ``upsample_num_times`` x ``pyramid_up`` with
  ``pyramid_down<2>`` before detection (output size rect_up of the image rectangle; bilinear
  resize of the uint8 RGB image, SIMD path truncating to uint8), and ``rect_down`` of the results.
- ``input_rgb_image_pyramid<pyramid_down<6>>`` (``dnn/input.h``, ``image_pyramid.h``): levels of
  ``floor(5/6 * size)`` down to a height of 5 px, tiled into one image by
  ``compute_tiled_image_pyramid_details`` (padding 10, outer padding 11 as stored in the file), the
  first level written as ``(pixel - avg) / 256`` into a zero tensor and each further level a
  bilinear resize of the previous one (``tt::resize_bilinear`` -> ``resize_image`` of float
  images; its float32 SIMD arithmetic is emulated step by step).
- ``loss_mmod_::to_label`` (``dnn/loss.h``): every score-map cell with score > 0 becomes a
  detector-window-sized box centred at ``output_tensor_to_input_tensor`` of the cell, mapped from the
  tiled image to the original image with ``tiled_pyramid_to_image`` (nearest pyramid tile, then
  ``point_up`` 6/5 per level), rounded to an integer rectangle; sorted by score (descending) and
  kept unless it overlaps an already kept box per ``test_box_overlap`` (IoU against the bounding
  box of both, or percent covered) with the thresholds stored in the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedders.dlib_onnx import DETECTOR_INPUT, cached_onnx, detector_options, open_session
from gancheck.errors import GancheckError


@dataclass(frozen=True)
class Detection:
    left: int
    top: int
    right: int
    bottom: int
    confidence: float

    @property
    def rect(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)


def _lround(x):
    """C's lround: round half away from zero."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, np.floor(x + 0.5), -np.floor(-x + 0.5)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Image pyramid.


def tiled_pyramid_rects(nr: int, nc: int, n: int = 6, padding: int = 10, outer_padding: int = 11):
    """dlib's ``impl::compute_tiled_image_pyramid_details`` for ``pyramid_down<n>``.

    Returns (rects, pyramid_nr, pyramid_nc) with rects as (left, top, right, bottom) inclusive."""
    if nr * nc == 0:
        return [], 0, 0
    rate = (n - 1.0) / n
    sizes = [(nc, nr)]  # (width, height)
    while True:
        nr, nc = int(np.floor(rate * nr)), int(np.floor(rate * nc))
        if nr * nc == 0 or nr < 5:
            break
        sizes.append((nc, nr))
    w0, h0 = sizes[0]
    total_height = sum(h + padding for _, h in sizes) - padding * 2
    height, prev_width = 0, 0
    for w, h in sizes:
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= (total_height - h0):
            break
        height += h + padding
        prev_width = w
    height -= padding
    width = w0
    pyr_nr, pyr_nc = height + outer_padding * 2, width + outer_padding * 2
    rects: list[tuple[int, int, int, int]] = []
    y, i = outer_padding, 0
    while y < height + outer_padding and i < len(sizes):
        w, h = sizes[i]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    l0, t0, r0, b0 = rects[0]
    while i < len(sizes):
        w, h = sizes[i]
        p1 = (outer_padding + width - 1, y - 1)
        p2 = (p1[0] - (w - 1), p1[1] - (h - 1))
        rect = (min(p1[0], p2[0]), min(p1[1], p2[1]), max(p1[0], p2[0]), max(p1[1], p2[1]))
        # stop if it would intersect the original image
        if max(l0, rect[0]) <= min(r0, rect[2]) and max(t0, rect[1]) <= min(b0, rect[3]):
            break
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, pyr_nr, pyr_nc


def _bilinear(src: np.ndarray, out_h: int, out_w: int, to_uint8: bool) -> np.ndarray:
    """dlib's ``resize_image(in, out, interpolate_bilinear())`` of (C, h, w) planes, step by step.

    interpolation.h's SIMD paths (the float grayscale one and the uint8 RGB one share the scheme):
    rows at double ``y`` accumulated by ``y_scale``; columns in blocks of 4 float32 lanes starting at
    ``float(-4*x_scale + j*x_scale)`` and accumulated by ``float(4*x_scale)``, truncated to the left
    index, weights and sum in float32 (``((tl + tr) + bl) + br``); the block loop stops at the first
    block whose last right index would pass the edge, and the remaining columns go through the scalar
    tail (double positions, clamped right index, float32 horizontal weights for float images, double
    for RGB). uint8 output is truncated (``_mm_cvttps_epi32`` / ``static_cast``)."""
    src = np.asarray(src, dtype=np.float32)
    c, in_h, in_w = src.shape
    out = np.zeros((c, out_h, out_w), dtype=np.uint8 if to_uint8 else np.float32)
    if out_h == 0 or out_w == 0 or in_h == 0 or in_w == 0:
        return out
    xs = (in_w - 1) / float(max(out_w - 1, 1))
    ys = (in_h - 1) / float(max(out_h - 1, 1))
    y = np.add.accumulate(np.concatenate([[-ys], np.full(out_h, ys)]))[1:]  # sequential double sums
    top = np.floor(y).astype(np.int64)
    bottom = np.minimum(top + 1, in_h - 1)
    tb = y - top
    tb32, itb32 = tb.astype(np.float32)[:, None], (1 - tb).astype(np.float32)[:, None]
    st, sb = src[:, top], src[:, bottom]

    x0 = -4 * xs
    n_blocks = out_w // 4 + 1
    start = np.array([x0, x0 + xs, x0 + 2 * xs, x0 + 3 * xs], dtype=np.float32)
    steps = np.vstack([start[None], np.full((n_blocks, 4), np.float32(4 * xs), np.float32)])
    lanes = np.add.accumulate(steps, axis=0, dtype=np.float32)[1:]
    left = lanes.astype(np.int32)  # truncation
    stop = np.nonzero(left[:, 3] + 1 >= in_w)[0]
    blocks = min(int(stop[0]) if len(stop) else n_blocks, (out_w + 3) // 4)
    n_simd = min(blocks * 4, out_w)
    if n_simd:
        xl = lanes[:blocks].reshape(-1)[:n_simd]
        li = left[:blocks].reshape(-1)[:n_simd].astype(np.int64)
        lr = xl - li.astype(np.float32)
        ilr = np.float32(1) - lr
        v = (((itb32 * ilr) * st[:, :, li] + (itb32 * lr) * st[:, :, li + 1]) + (tb32 * ilr) * sb[:, :, li]) \
            + (tb32 * lr) * sb[:, :, li + 1]
        out[:, :, :n_simd] = np.clip(v.astype(np.int32), 0, 255) if to_uint8 else v
    if n_simd < out_w:
        xd = np.add.accumulate(np.concatenate([[-xs + n_simd * xs], np.full(out_w - n_simd, xs)]))[1:]
        li = np.floor(xd).astype(np.int64)
        ri = np.minimum(li + 1, in_w - 1)
        lr = xd - li
        if to_uint8:  # vector_to_pixel of doubles: static_cast<unsigned char>
            st64, sb64 = st.astype(np.float64), sb.astype(np.float64)
            v = (1 - tb)[:, None] * ((1 - lr) * st64[:, :, li] + lr * st64[:, :, ri]) \
                + tb[:, None] * ((1 - lr) * sb64[:, :, li] + lr * sb64[:, :, ri])
            out[:, :, n_simd:] = np.clip(v.astype(np.int64), 0, 255)
        else:  # float lr_frac and pixels, double tb_frac, float result
            lr32 = lr.astype(np.float32)
            upper = ((np.float32(1) - lr32) * st[:, :, li] + lr32 * st[:, :, ri]).astype(np.float64)
            lower = ((np.float32(1) - lr32) * sb[:, :, li] + lr32 * sb[:, :, ri]).astype(np.float64)
            out[:, :, n_simd:] = (1 - tb)[:, None] * upper + tb[:, None] * lower
    return out


def resize_bilinear_float(src: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """dlib's ``resize_image`` of float images (C, h, w) -> (C, out_h, out_w), as ``tt::resize_bilinear``
    on the CPU does it for the pyramid levels."""
    return _bilinear(src, out_h, out_w, to_uint8=False)


def build_pyramid(images: np.ndarray, options: dict) -> tuple[np.ndarray, list]:
    """The tensor dlib's ``input_rgb_image_pyramid`` makes from uint8 RGB images (N, H, W, 3)."""
    images = np.asarray(images)
    n, h, w, _ = images.shape
    rects, pyr_nr, pyr_nc = tiled_pyramid_rects(h, w, options["pyramid_down"], options["pyramid_padding"],
                                                options["pyramid_outer_padding"])
    data = np.zeros((n, 3, pyr_nr, pyr_nc), dtype=np.float32)
    if not rects:
        return data, rects
    avg = np.asarray(options["avg_rgb"], dtype=np.float32).reshape(1, 3, 1, 1)
    l, t, r, b = rects[0]
    data[:, :, t : b + 1, l : r + 1] = (images.transpose(0, 3, 1, 2).astype(np.float32) - avg) / np.float32(256)
    for i in range(1, len(rects)):
        pl, pt, pr, pb = rects[i - 1]
        l, t, r, b = rects[i]
        src = data[:, :, pt : pb + 1, pl : pr + 1].reshape(n * 3, pb - pt + 1, pr - pl + 1)
        data[:, :, t : b + 1, l : r + 1] = resize_bilinear_float(src, b - t + 1, r - l + 1).reshape(n, 3, b - t + 1, r - l + 1)
    return data, rects


def pyramid_up_rgb(image: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_up(img, pyramid_down<2>)`` of a uint8 RGB image (H, W, 3).

    The output size is ``rect_up`` of the image rectangle (2H+1 rows, 2W+2 columns); the resize is
    the uint8 RGB ``resize_image`` (see :func:`_bilinear`)."""
    h, w, _ = image.shape
    out_h = int(_lround((h - 1 + 0.75) * 2)) + 1
    out_w = int(_lround((w - 1 + 1.25) * 2)) + 1
    return _bilinear(image.transpose(2, 0, 1), out_h, out_w, to_uint8=True).transpose(1, 2, 0)


# --------------------------------------------------------------------------------------------
# Decoding.


def _box_overlap(a, b, iou_thresh: float, covered_thresh: float) -> bool:
    """dlib's ``test_box_overlap`` on integer inclusive rectangles (union = bounding box of both)."""
    il, it, ir, ib = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inner = (ir - il + 1) * (ib - it + 1) if ir >= il and ib >= it else 0
    if inner == 0:
        return False
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1) if r[2] >= r[0] and r[3] >= r[1] else 0
    outer = area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
    return inner / outer > iou_thresh or inner / area(a) > covered_thresh or inner / area(b) > covered_thresh


def _nearest_rect(rects: list, px: int, py: int) -> int:
    best, best_d = 0, np.inf
    for i, (l, t, r, b) in enumerate(rects):
        if l <= px <= r and t <= py <= b:
            return i
        nx, ny = min(max(px, l), r), min(max(py, t), b)
        d = np.hypot(nx - px, ny - py)
        if d < best_d:
            best, best_d = i, d
    return best


def decode_scores(scores: np.ndarray, rects: list, options: dict, adjust_threshold: float = 0.0) -> list[Detection]:
    """dlib's ``loss_mmod_::to_label`` for one image's score map (K, Hs, Ws)."""
    m = options["output_to_input"]
    n = options["pyramid_down"]
    windows = options["detector_windows"]
    nms = options["overlaps_nms"]
    if options.get("use_bounding_box_regression"):
        raise GancheckError("detectors with bounding-box regression are not supported by the ONNX decoder")
    dets = []
    for k, win in enumerate(windows):
        rows, cols = np.nonzero(scores[k] > adjust_threshold)
        for r, c in zip(rows.tolist(), cols.tolist()):
            px, py = m["ax"] * c + m["bx"], m["ay"] * r + m["by"]
            hw, hh = (win["width"] - 1) / 2, (win["height"] - 1) / 2
            box = (px - hw, py - hh, px + hw, py + hh)
            # tiled_pyramid_to_image: the tile nearest the box centre (rounded to a point), then point_up.
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            level = _nearest_rect(rects, int(np.floor(cx + 0.5)), int(np.floor(cy + 0.5)))
            ox, oy = rects[level][0], rects[level][1]
            pts = [box[0] - ox, box[1] - oy, box[2] - ox, box[3] - oy]
            for _ in range(level):
                pts = [v * (n / (n - 1.0)) + 0.3 for v in pts]
            l, t, rr, b = (int(v) for v in _lround(pts))
            # drectangle(p1, p2) is the bounding box of the two corners
            rect = (min(l, rr), min(t, b), max(l, rr), max(t, b))
            dets.append((float(scores[k, r, c]), rect))
    dets.sort(key=lambda d: d[0], reverse=True)
    final: list[Detection] = []
    for conf, rect in dets:
        if any(_box_overlap(f.rect, rect, nms["iou_thresh"], nms["percent_covered_thresh"]) for f in final):
            continue
        final.append(Detection(*rect, conf))
    return final


def _rect_down2(det: Detection, levels: int) -> Detection:
    """``pyramid_down<2>::rect_down(rect, levels)`` then rounding to a rectangle."""
    pts = [float(det.left), float(det.top), float(det.right), float(det.bottom)]
    for _ in range(levels):
        pts = [pts[0] / 2.0 - 1.25, pts[1] / 2.0 - 0.75, pts[2] / 2.0 - 1.25, pts[3] / 2.0 - 0.75]
    l, t, r, b = (int(v) for v in _lround(pts))
    return Detection(min(l, r), min(t, b), max(l, r), max(t, b), det.confidence)


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise GancheckError(f"the CNN face detector takes uint8 images, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise GancheckError(f"the CNN face detector takes (H, W, 3) RGB or (H, W) gray images, got shape {image.shape}")
    return np.ascontiguousarray(image)


class OnnxCnnFaceDetector:
    """dlib's ``cnn_face_detection_model_v1`` through onnxruntime; see the module docstring."""

    def __init__(self, dat_path=None, threads: int | None = None, device: str = "cpu"):
        self.path = cached_onnx(dat_path, "mmod")
        self.options = detector_options(self.path)
        self.session = open_session(self.path, threads, device)

    def scores(self, pyramid: np.ndarray) -> np.ndarray:
        return self.session.run(None, {DETECTOR_INPUT: np.ascontiguousarray(pyramid, dtype=np.float32)})[0]

    def detect_batch(self, images, upsample_num_times: int = 0, adjust_threshold: float = 0.0) -> list[list[Detection]]:
        """Detections for images of one size (N, H, W, 3) uint8, run as one batch."""
        ims = [_as_rgb_uint8(im) for im in images]
        if not ims:
            return []
        for _ in range(int(upsample_num_times)):
            ims = [pyramid_up_rgb(im) for im in ims]
        if any(im.shape != ims[0].shape for im in ims):
            raise GancheckError("detect_batch needs images of one size; call the detector per image otherwise")
        data, rects = build_pyramid(np.stack(ims), self.options)
        if not rects:
            return [[] for _ in ims]
        out = self.scores(data)
        results = []
        for s in out:
            dets = decode_scores(s, rects, self.options, adjust_threshold)
            results.append([_rect_down2(d, int(upsample_num_times)) for d in dets])
        return results

    def __call__(self, image, upsample_num_times: int = 0) -> list[Detection]:
        return self.detect_batch([image], upsample_num_times)[0]
