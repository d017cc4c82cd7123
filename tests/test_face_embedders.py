"""Face descriptors (dlib, insightface), face alignment and threshold conversion/estimation.

The real photographs are the ones the ``insightface`` package ships: six people in ``t1.jpg`` and
Tom Hanks in an ArcFace-aligned 112x112 crop. InsightFace's weights are not available offline, so
its loading path runs on an ONNX model with ArcFace's signature built here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from embedders import load_embedder
from embedders.face_align import ARCFACE_112, fixed_crop, fixed_landmarks, umeyama, warp_affine
from gancheck.errors import GancheckError
from gancheck import maths
from gancheck.analysis import thresholds as th
from gancheck.cli.theta import theta_command

pytest.importorskip("dlib")
PHOTOS = Path(importlib.util.find_spec("insightface").submodule_search_locations[0]) / "data" / "images"
# (centre x, centre y, width) of the six faces in t1.jpg, as dlib's HOG detector boxes them.
T1_FACES = [(117, 336, 105), (786, 417, 104), (1166, 336, 104), (515, 363, 126), (319, 223, 88), (935, 141, 105)]


def load_rgb(path: Path, size: int | None = None) -> np.ndarray:
    from PIL import Image

    im = Image.open(path).convert("RGB")
    if size:
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def load_rgb_array(x: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray((x * 255).round().astype(np.uint8)).resize((size, size), Image.BILINEAR), np.float32) / 255


@pytest.fixture(scope="module")
def face_people() -> np.ndarray:
    """Seven different people, one 256x256 photo each (a face with some context around it)."""
    from PIL import Image

    t1 = Image.open(PHOTOS / "t1.jpg").convert("RGB")
    crops = []
    for cx, cy, w in T1_FACES:
        s = int(1.4 * w)
        crops.append(np.asarray(t1.crop((cx - s, cy - s, cx + s, cy + s)).resize((256, 256), Image.BILINEAR), np.float32) / 255)
    crops.append(load_rgb(PHOTOS / "Tom_Hanks_54745.png", 256))
    return np.stack(crops)


@pytest.fixture(scope="module")
def face_dlib():
    e = load_embedder("dlib", align="detect", threads=2)
    yield e
    e.close()


def augment(x: np.ndarray) -> list[np.ndarray]:
    """Horizontal flip, two crops (re-sized back), brighter and darker copies of one photo."""
    from PIL import Image

    def back(a):
        return np.asarray(Image.fromarray((a * 255).round().astype(np.uint8)).resize(x.shape[:2][::-1], Image.BILINEAR), np.float32) / 255

    return [x[:, ::-1], back(x[12:-12, 12:-12]), back(x[20:, :-20]), np.clip(x * 1.3, 0, 1), x * 0.7]


# ----------------------------------------------------------------------------------------------
# Alignment


def test_umeyama_recovers_a_known_similarity_transform():
    rng = np.random.default_rng(0)
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    lin = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = rng.uniform(0, 100, (3, 5, 2))
    m = umeyama(src, src[0] @ lin.T + shift)
    np.testing.assert_allclose(m[0], np.hstack([lin, shift[:, None]]), atol=1e-9)


def test_warp_affine_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    images = rng.random((3, 90, 80, 3)).astype(np.float32)
    landmarks = np.array([[30, 40], [55, 39], [42, 55], [33, 70], [52, 69]], float) + rng.normal(0, 2, (3, 5, 2))
    m = umeyama(landmarks, ARCFACE_112)
    ours = warp_affine(images, m, 112)
    ref = np.stack([cv2.warpAffine(im, mi, (112, 112), borderValue=0.0) for im, mi in zip(images, m)])
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    shared = warp_affine(images, m[0], 112)
    np.testing.assert_allclose(shared, np.stack([cv2.warpAffine(im, m[0], (112, 112)) for im in images]), atol=1e-4)


def test_fixed_crop_of_an_arcface_frame_is_the_identity_at_112():
    x = np.random.default_rng(2).random((2, 112, 112, 3)).astype(np.float32)
    np.testing.assert_allclose(fixed_crop(x, ARCFACE_112, 112, "arcface"), x, atol=1e-6)
    np.testing.assert_allclose(fixed_landmarks(112, 112), ARCFACE_112, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# Thresholds


def test_euclidean_conversion_agrees_with_the_angle_between_vectors():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 100, 16))
    for na, nb in ((1.0, 1.0), (1.5, 1.5), (1.3, 1.6)):
        ua = a / np.linalg.norm(a, axis=1, keepdims=True)
        ub = b / np.linalg.norm(b, axis=1, keepdims=True)
        e = np.linalg.norm(na * ua - nb * ub, axis=1)
        np.testing.assert_allclose(maths.angular_distance_from_euclidean(e, na, nb), maths.paired_distance(ua, ub), atol=1e-9)
    assert maths.cosine_from_euclidean(0.6) == pytest.approx(1 - 0.36 / 2)


def test_best_accuracy_threshold_lies_between_separated_classes():
    theta, acc = th.best_accuracy_threshold([0.05, 0.1, 0.2], [0.4, 0.5])
    assert acc == 1.0 and theta == pytest.approx(0.3)
    theta, acc = th.best_accuracy_threshold([0.1, 0.2, 0.45], [0.3, 0.5, 0.6])
    assert acc == pytest.approx(5 / 6) and 0.2 < theta < 0.3


def test_descriptor_defaults_follow_their_published_thresholds():
    from embedders.dlib_resnet import DlibEmbedder, TYPICAL_NORM
    from embedders.insightface_arcface import InsightFaceEmbedder

    # dlib: Euclidean 0.6 between raw descriptors of norm TYPICAL_NORM.
    cos = np.cos(np.pi * DlibEmbedder.default_theta)
    assert np.sqrt(2 * TYPICAL_NORM**2 * (1 - cos)) == pytest.approx(0.6)
    assert np.cos(np.pi * InsightFaceEmbedder.default_theta) == pytest.approx(0.4)
    for cls in (DlibEmbedder, InsightFaceEmbedder):
        assert cls.default_radius == pytest.approx(cls.default_theta * 0.25 / 0.3)
        assert "docs/thresholds.md" in cls.threshold_source


# ----------------------------------------------------------------------------------------------
# dlib on real photographs


def test_dlib_same_face_under_flip_crop_and_brightness_is_within_radius(face_dlib, face_people):
    originals, found = face_dlib.embed(face_people)
    assert found.all()
    variants = [a for x in face_people for a in augment(x)]
    vectors, vfound = face_dlib.embed(np.stack(variants))
    assert vfound.all()
    d = maths.paired_distance(np.repeat(originals, 5, axis=0), vectors)
    assert d.max() < face_dlib.default_radius, d.round(3)


def test_dlib_different_people_are_farther_than_theta(face_dlib, face_people):
    vectors, found = face_dlib.embed(face_people)
    assert found.all()
    d = maths.angular_distance(vectors @ vectors.T)[np.triu_indices(len(vectors), 1)]
    assert d.min() > face_dlib.default_theta, d.round(3)


def test_dlib_reports_no_face_for_images_without_faces(face_dlib):
    rng = np.random.default_rng(4)
    ramp = np.linspace(0, 1, 96, dtype=np.float32)
    images = np.stack(
        [rng.random((96, 96, 3), dtype=np.float32)]
        + [np.broadcast_to(ramp[:, None, None], (96, 96, 3))]
        + [np.broadcast_to(ramp[None, :, None] * np.array([1, 0.5, 0.2], np.float32), (96, 96, 3))]
        + [np.full((96, 96, 3), v, np.float32) for v in (0.0, 0.5, 1.0)]
    )
    vectors, found = face_dlib.embed(images)
    assert vectors.shape == (6, 128) and not found.any()


def test_dlib_fixed_crop_agrees_with_detection_on_an_aligned_face(face_dlib):
    tom = load_rgb(PHOTOS / "Tom_Hanks_54745.png")[None]  # an ArcFace-aligned 112x112 crop
    fixed = load_embedder("dlib", align="fixed", frame="arcface", threads=1)
    v_fixed, f_fixed = fixed.embed(tom)
    v_det, f_det = face_dlib.embed(tom)
    assert f_fixed.all() and f_det.all()
    assert maths.paired_distance(v_fixed, v_det)[0] < face_dlib.default_radius


@pytest.mark.parametrize("engine", ["onnx", "dlib"])
def test_dlib_results_do_not_depend_on_batching_or_workers(face_people, engine):
    pooled = load_embedder("dlib", align="fixed", threads=2, engine=engine)
    single = load_embedder("dlib", align="fixed", threads=1, engine=engine)
    x = np.concatenate([face_people] * 6)  # 42 images: several worker tasks
    a, _ = pooled.embed(x)
    b = np.concatenate([single.embed(x[i : i + 5])[0] for i in range(0, len(x), 5)])
    pooled.close()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_dlib_missing_models_error_names_the_install(monkeypatch):
    import embedders.dlib_resnet as mod

    monkeypatch.setattr(mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GancheckError, match="pip install face-recognition-models dlib-bin"):
        mod.model_dir()


# ----------------------------------------------------------------------------------------------
# insightface on a model with ArcFace's signature


def build_arcface_signature_onnx(path: Path, seed: int = 0) -> Path:
    """An ONNX model with ArcFace's interface: input (N, 3, 112, 112) float, output (N, 512)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    conv = numpy_helper.from_array(rng.normal(0, 0.05, (8, 3, 8, 8)).astype(np.float32), "conv_w")
    fc = numpy_helper.from_array(rng.normal(0, 0.02, (8 * 14 * 14, 512)).astype(np.float32), "fc_w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input.1", "conv_w"], ["c"], name="conv0", strides=[8, 8]),
            helper.make_node("Relu", ["c"], ["r"], name="relu0"),
            helper.make_node("Flatten", ["r"], ["f"], name="flatten0"),
            helper.make_node("MatMul", ["f", "fc_w"], ["683"], name="fc0"),
        ],
        "arcface_signature",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])],
        [conv, fc],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def face_insightface_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("insightface")
    build_arcface_signature_onnx(root / "models" / "buffalo_l" / "w600k_r50.onnx")
    return root


def test_insightface_fixed_path_matches_insightface_reference(face_insightface_root, face_people):
    cv2 = pytest.importorskip("cv2")
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.utils.face_align import norm_crop

    e = load_embedder("insightface", model_dir=str(face_insightface_root), align="fixed", device="cpu")
    ref_model = ArcFaceONNX(model_file=str(e.rec_path))
    tom = load_rgb(PHOTOS / "Tom_Hanks_54745.png")
    # 112 (the crop itself) and 192 pixels (enlarged frames; at 256 and more our crop box-filters
    # first, which insightface's norm_crop does not, so the two would differ by design).
    for frames in (tom[None], np.stack([load_rgb_array(x, 192) for x in face_people[:3]])):
        vectors, found = e.embed(frames)
        assert found.all() and vectors.shape == (len(frames), 512)
        h, w = frames.shape[1:3]
        bgr = [cv2.cvtColor((f * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR) for f in frames]
        crops = [norm_crop(b, fixed_landmarks(h, w, "arcface"), 112) for b in bgr]
        ref = ref_model.get_feat(crops)  # swaps BGR to RGB and normalises as the real pack expects
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        assert (vectors * ref).sum(axis=1).min() > 0.999


def test_insightface_batches_and_layouts(face_insightface_root, face_people, monkeypatch):
    monkeypatch.setenv("GANCHECK_INSIGHTFACE_DIR", str(face_insightface_root))
    e = load_embedder("insightface", align="fixed")  # found through the environment variable, models/<pack> layout
    x = np.concatenate([face_people] * 10)  # 70 images: more than one recognition batch
    a, _ = e.embed(x)
    b = np.concatenate([e.embed(x[i : i + 7])[0] for i in range(0, len(x), 7)])
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert e.describe()["pack"] == "buffalo_l"


def test_insightface_missing_files_error_names_them(tmp_path, face_insightface_root):
    with pytest.raises(GancheckError, match=r"needs w600k_r50\.onnx in .*buffalo_l"):
        load_embedder("insightface", model_dir=str(tmp_path), align="fixed")
    # The detector path needs the pack's detector as well; only the recognition file is present.
    with pytest.raises(GancheckError, match=r"needs det_10g\.onnx in .*buffalo_l.*never downloads"):
        load_embedder("insightface", model_dir=str(face_insightface_root), align="detect")
    with pytest.raises(GancheckError, match=r"needs w600k_mbf\.onnx and det_500m\.onnx"):
        load_embedder("insightface:buffalo_s", model_dir=str(tmp_path))


# ----------------------------------------------------------------------------------------------
# gancheck theta


def test_theta_command_estimates_from_a_folder_of_pairs(tmp_path, face_people, capsys):
    from PIL import Image

    def save(folder: Path, *images):
        folder.mkdir(parents=True)
        for i, im in enumerate(images):
            Image.fromarray((im * 255).round().astype(np.uint8)).save(folder / f"{i}.png")

    for i, x in enumerate(face_people):
        save(tmp_path / "same" / f"p{i}", x, augment(x)[0])
        save(tmp_path / "different" / f"p{i}", x, face_people[(i + 1) % len(face_people)][:, ::-1])
    save(tmp_path / "same" / "noface", np.full((96, 96, 3), 0.5, np.float32), face_people[0])
    theta_command(tmp_path, embedder="dlib", align="detect", insightface_dir=None, device="cpu", threads=1, as_json=True)
    result = json.loads(capsys.readouterr().out)
    assert result["n_same"] == 7 and result["n_different"] == 7
    assert result["skipped_pairs_no_face"] == ["same/noface"]
    assert result["same_distance"]["max"] < result["theta"] < result["different_distance"]["min"]
    assert result["accuracy_at_theta"] == 1.0
    assert result["radius"] == pytest.approx(result["theta"] * 0.25 / 0.3)


def test_theta_command_rejects_a_bad_layout(tmp_path):
    (tmp_path / "same" / "a").mkdir(parents=True)
    with pytest.raises(GancheckError, match="holds 0 images"):
        th.read_pairs(tmp_path)
