"""dlib's face networks as ONNX graphs built from the user's .dat files (embedders.dlib_dat / dlib_onnx
/ dlib_cnn_detect), checked against dlib itself on real images.

- Descriptor exactness: ONNX vs ``dlib.face_recognition_model_v1.compute_face_descriptor`` on >= 500
  real 150x150 chips (the insightface photos through dlib's own HOG + 5-point + get_face_chip at
  several paddings, each with dlib.jitter_image variants, plus frames of the real DCGAN of
  gan-face-generate through the fixed-template crop): cosine >= 0.99999 for every chip.
- Detector: the ONNX CNN detector vs ``dlib.cnn_face_detection_model_v1`` on the insightface photos
  (upsample 0 on all, 1 on the small ones): same faces, boxes IoU > 0.9, confidences within 1e-3.
- Bad input: random bytes, truncated files, the detector given to the descriptor builder, a corrupt or
  foreign cache entry, an unwritable cache.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face-recognition-models is not installed", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from face_chips import aligned_chips, box_iou, dcgan_frames  # noqa: E402
from gancheck.errors import GancheckError  # noqa: E402
from embedders import dlib_onnx  # noqa: E402
from embedders.dlib_cnn_detect import OnnxCnnFaceDetector  # noqa: E402
from embedders.dlib_dat import model_path, read_network  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_INSIGHTFACE = importlib.util.find_spec("insightface")
PHOTOS = Path(_INSIGHTFACE.submodule_search_locations[0]) / "data" / "images" if _INSIGHTFACE else None
MIN_CHIPS = 500
PADDINGS = (0.2, 0.25, 0.3, 0.35)
DCGAN_FRAMES = 240
WORKERS = 2


def _photos() -> list[tuple[str, np.ndarray]]:
    if PHOTOS is None or not PHOTOS.is_dir():
        pytest.skip("insightface (its photos in insightface/data/images) is not installed")
    from PIL import Image

    return [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in sorted(PHOTOS.iterdir())
            if p.suffix.lower() in (".jpg", ".png")]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GANCHECK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "gancheck_cache"))


# ---------------------------------------------------------------------------------------------
# dlib's own results, computed in worker processes (dlib holds the GIL).

_worker = {}


def _dlib_descriptors(chips: np.ndarray) -> np.ndarray:
    net = _worker.get("net")
    if net is None:
        net = _worker["net"] = dlib.face_recognition_model_v1(str(model_path("resnet")))
    return np.array([np.asarray(v) for v in net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])],
                    dtype=np.float32)


def _dlib_cnn(task):
    image, upsample = task
    det = _worker.get("cnn")
    if det is None:
        det = _worker["cnn"] = dlib.cnn_face_detection_model_v1(str(model_path("mmod")))
    return [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence) for d in det(image, upsample)]


def _pool():
    # fork: the workers only call dlib. (spawn would need this module importable by name.)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context(method))


# ---------------------------------------------------------------------------------------------
# Real chips.


def _photo_chips(jitters: int) -> np.ndarray:
    """dlib's own alignment of every face dlib's HOG detector finds in the insightface photos, at
    several paddings (scales), each followed by ``jitters`` dlib.jitter_image variants (shifts,
    rotations, scales, flips)."""
    chips = []
    for chip in aligned_chips([image for _, image in _photos()], PADDINGS):
        chips.append(chip)
        chips.extend(dlib.jitter_image(chip, num_jitters=jitters))
    return np.stack(chips).astype(np.uint8)


def _dcgan_frames(n: int) -> np.ndarray | None:
    """``n`` frames (uint8, 64x64) of the real DCGAN face generator, or None if unavailable."""
    return dcgan_frames(n, seed=7)


@pytest.fixture(scope="module")
def real_chips() -> dict:
    from embedders.dlib_resnet import CHIP_SIZE, CHIP_TEMPLATE
    from embedders.face_align import fixed_crop

    parts = {}
    frames = _dcgan_frames(DCGAN_FRAMES)
    if frames is not None:
        crops = fixed_crop(frames.astype(np.float32) / 255.0, CHIP_TEMPLATE, CHIP_SIZE, "arcface")
        parts["dcgan"] = np.clip(crops * 255.0 + 0.5, 0, 255).astype(np.uint8)
    have = sum(len(v) for v in parts.values())
    n_faces = 7  # faces dlib's HOG finds in the insightface photos (6 in t1.jpg, Tom Hanks)
    jitters = max(4, -(-(MIN_CHIPS - have) // (n_faces * len(PADDINGS))) - 1)
    parts["photos"] = _photo_chips(jitters)
    return parts


# ---------------------------------------------------------------------------------------------


def test_descriptor_graph_matches_dlib_on_500_real_chips(real_chips):
    chips = np.concatenate(list(real_chips.values()))
    assert chips.shape[1:] == (150, 150, 3) and chips.dtype == np.uint8
    assert len(chips) >= MIN_CHIPS, {k: len(v) for k, v in real_chips.items()}
    assert len(np.unique(chips.reshape(len(chips), -1), axis=0)) == len(chips)  # all distinct

    with _pool() as pool:
        expected = np.concatenate(list(pool.map(_dlib_descriptors, np.array_split(chips, 4 * WORKERS))))
    got = dlib_onnx.OnnxDescriptor(threads=WORKERS).describe_chips(chips)

    assert got.shape == expected.shape == (len(chips), 128)
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    worst = int(np.argmin(cos))
    print(f"\n{len(chips)} chips ({', '.join(f'{k}: {len(v)}' for k, v in real_chips.items())}): "
          f"cosine min {cos.min():.8f}, max |diff| {np.abs(got - expected).max():.2e}, "
          f"norms {np.linalg.norm(expected, axis=1).min():.3f}..{np.linalg.norm(expected, axis=1).max():.3f}")
    assert cos.min() >= 0.99999, f"chip {worst}: cosine {cos[worst]}"
    # raw (unnormalised) descriptors: same length too, so dlib's Euclidean 0.6 rule carries over
    assert np.abs(np.linalg.norm(got, axis=1) - np.linalg.norm(expected, axis=1)).max() < 1e-4


def test_unfolded_graph_and_exported_file_agree(real_chips, tmp_path):
    import onnxruntime as ort

    chips = real_chips["photos"][::13][:24].astype(np.float32)
    out = dlib_onnx.export_descriptor(tmp_path / "dlib_resnet.onnx")
    folded = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"chips": chips})[0]
    plain = dlib_onnx.build_resnet_onnx(fold_affine=False)
    unfolded = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"chips": chips})[0]
    assert np.abs(folded - unfolded).max() < 1e-5
    meta = dlib_onnx.metadata(__import__("onnx").load(str(out)))
    assert meta["kind"] == "resnet" and meta["source_sha256"] == dlib_onnx._sha256(model_path("resnet"))


def test_residual_blocks_zero_extend_like_dlib():
    """dlib's add_prev adds tensors of different sizes by zero-extending the smaller one (tt::add):
    the pooled skip path of each ares_down has half the channels of the strided path (alevel3, 2, 1),
    and in alevel1 / alevel0 the strided path is 3x3 / 1x1 against a 4x4 / 2x2 skip path. So the
    graph pads 3 skip paths (channels) and 2 strided paths (spatially), and the descriptor is the
    average of a 2x2 map whose last row and column hold the skip path alone."""
    import onnx

    model = onnx.shape_inference.infer_shapes(dlib_onnx.build_resnet_onnx())
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    grown = sorted((shapes[n.input[0]][1:], shapes[n.output[0]][1:]) for n in pads)
    assert grown == [
        ([32, 17, 17], [64, 17, 17]),
        ([64, 8, 8], [128, 8, 8]),
        ([128, 4, 4], [256, 4, 4]),
        ([256, 1, 1], [256, 2, 2]),
        ([256, 3, 3], [256, 4, 4]),
    ]
    pool = next(n for n in model.graph.node if n.op_type == "GlobalAveragePool")
    assert shapes[pool.input[0]][1:] == [256, 2, 2]
    layers = read_network(model_path("resnet"), "resnet")
    assert [layer.kind for layer in layers[:2]] == ["input_rgb_image_sized", "con"] and layers[-1].kind == "loss_metric"
    assert layers[0].params["nr"] == 150 and round(layers[0].params["avg_red"], 3) == 122.782


@pytest.fixture(scope="module")
def detector_cases():
    cases = [(name, image, 0) for name, image in _photos()]
    cases += [(name, image, 1) for name, image in _photos() if max(image.shape[:2]) <= 200]
    order = sorted(range(len(cases)), key=lambda i: -cases[i][1].size * 4 ** cases[i][2])  # big first
    with _pool() as pool:
        results = dict(zip(order, pool.map(_dlib_cnn, [(cases[i][1], cases[i][2]) for i in order])))
    return [(name, image, up, results[i]) for i, (name, image, up) in enumerate(cases)]


def test_cnn_detector_matches_dlib_on_real_photos(detector_cases):
    detector = OnnxCnnFaceDetector(threads=WORKERS)
    total, exact, worst_iou, worst_conf = 0, 0, 1.0, 0.0
    for name, image, upsample, expected in detector_cases:
        got = detector(image, upsample)
        assert len(got) == len(expected), f"{name} (upsample {upsample}): {len(got)} faces vs dlib's {len(expected)}"
        for (rect, conf), det in zip(expected, got):
            iou = box_iou(rect, det.rect)
            assert iou > 0.9, f"{name}: box {det.rect} vs dlib's {rect}"
            assert abs(det.confidence - conf) < 1e-3, f"{name}: confidence {det.confidence} vs dlib's {conf}"
            total += 1
            exact += det.rect == rect
            worst_iou, worst_conf = min(worst_iou, iou), max(worst_conf, abs(det.confidence - conf))
    print(f"\n{total} faces in {len(detector_cases)} image runs: {exact} identical rectangles, "
          f"min IoU {worst_iou:.4f}, max |confidence diff| {worst_conf:.2e}")
    assert total >= 8  # 6 faces in t1.jpg, Tom Hanks at upsample 0 and 1


@pytest.mark.parametrize("shape", [(107, 189, 89, 157), (886, 1280, 738, 1066), (20, 7, 16, 5), (10, 10, 21, 22)])
def test_pyramid_resize_is_dlibs_resize_bit_for_bit(shape):
    """The pyramid levels (float) and pyramid_up (uint8 RGB) use an emulation of dlib's SIMD bilinear
    resize; dlib.resize_image runs the same C++ code."""
    from embedders.dlib_cnn_detect import _bilinear, resize_bilinear_float

    h, w, oh, ow = shape
    rng = np.random.default_rng(h * w)
    x = (rng.standard_normal((h, w)) * 50).astype(np.float32)
    assert np.array_equal(resize_bilinear_float(x[None], oh, ow)[0], np.asarray(dlib.resize_image(x, oh, ow)))
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours = _bilinear(rgb.transpose(2, 0, 1), oh, ow, to_uint8=True).transpose(1, 2, 0)
    assert np.array_equal(ours, np.asarray(dlib.resize_image(rgb, oh, ow)))


def test_detector_options_come_from_the_file():
    model, options = dlib_onnx.build_mmod_onnx()
    assert options["detector_windows"] == [{"width": 80, "height": 80, "label": ""}]
    assert 0.3 < options["overlaps_nms"]["iou_thresh"] < 0.4
    assert options["output_to_input"] == {"ax": 8.0, "bx": 14.0, "ay": 8.0, "by": 14.0}
    assert dlib_onnx.detector_options(model) == options


# ---------------------------------------------------------------------------------------------
# Bad input.


def _message(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_random_bytes_are_not_a_dlib_network(tmp_path):
    bad = tmp_path / "random.dat"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    for kind, builder in (("resnet", dlib_onnx.build_resnet_onnx), ("mmod", dlib_onnx.build_mmod_onnx)):
        with pytest.raises(GancheckError) as exc:
            builder(bad)
        msg = _message(exc)
        assert str(bad) in msg and "not a dlib network" in msg and "face-recognition-models" in msg
    with pytest.raises(GancheckError, match="cannot read"):
        dlib_onnx.build_resnet_onnx(tmp_path / "missing.dat")


@pytest.mark.parametrize("kind", ["resnet", "mmod"])
def test_truncated_files_are_reported(tmp_path, kind):
    data = model_path(kind).read_bytes()
    for cut in (3, 40, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.dat"
        bad.write_bytes(data[:cut])
        with pytest.raises(GancheckError) as exc:
            read_network(bad, kind)
        msg = _message(exc)
        assert str(bad) in msg and ("truncated" in msg or "not a dlib network" in msg), msg
        if cut > 40:
            assert "truncated" in msg


def test_detector_file_given_to_descriptor_builder():
    with pytest.raises(GancheckError) as exc:
        dlib_onnx.build_resnet_onnx(model_path("mmod"))
    msg = _message(exc)
    assert "another architecture" in msg and "loss_mmod_" in msg and "dlib_face_recognition_resnet_model_v1.dat" in msg
    with pytest.raises(GancheckError, match="another architecture"):
        dlib_onnx.build_mmod_onnx(model_path("resnet"))


def test_altered_layer_is_another_architecture(tmp_path):
    data = bytearray(model_path("mmod").read_bytes())
    at = data.index(b"\x05con_")  # the first stored con_ layer (its name is 5 characters long)
    data[at + 5] = ord("9")  # an unknown con_ version
    bad = tmp_path / "altered.dat"
    bad.write_bytes(bytes(data))
    with pytest.raises(GancheckError, match="another architecture"):
        read_network(bad, "mmod")


def test_corrupt_or_foreign_cache_entries_are_rebuilt(tmp_path, monkeypatch):
    import onnx

    monkeypatch.setenv("GANCHECK_CACHE_DIR", str(tmp_path / "cache"))
    path = dlib_onnx.cached_onnx(kind="mmod")
    assert path.parent == tmp_path / "cache" / "dlib_onnx"
    sha = dlib_onnx._sha256(model_path("mmod"))
    assert sha in path.name
    first = path.read_bytes()
    assert dlib_onnx.cached_onnx(kind="mmod") == path and path.read_bytes() == first  # a hit

    path.write_bytes(first[: len(first) // 3])  # truncated entry
    assert dlib_onnx.cached_onnx(kind="mmod") == path and path.read_bytes() == first

    path.write_bytes(b"garbage")
    assert dlib_onnx.cached_onnx(kind="mmod") == path and path.read_bytes() == first

    foreign = onnx.load(str(path))  # parses, but records another source file
    for prop in foreign.metadata_props:
        if prop.key == "source_sha256":
            prop.value = "0" * 64
    path.write_bytes(foreign.SerializeToString())
    assert dlib_onnx.cached_onnx(kind="mmod") == path
    assert dlib_onnx.metadata(onnx.load(str(path)))["source_sha256"] == sha
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temp files left


def test_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GANCHECK_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(GancheckError) as exc:
        dlib_onnx.cached_onnx(kind="mmod")
    assert "GANCHECK_CACHE_DIR" in _message(exc)
