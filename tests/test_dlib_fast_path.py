"""The dlib descriptor's fast path (engine=onnx, the default) against dlib's own (engine=dlib).

- the batched chip warp of ``--align detect`` equals ``dlib.get_face_chip`` bit for bit on real DCGAN
  frames and the insightface photos;
- both engines find the same faces and give descriptors to cosine >= 0.99999 on all three alignment
  paths (fixed, detect with HOG, detect-cnn with the CNN detector);
- a small real DCGAN audit gives the same MCCS per anchor with both engines, to 1e-4;
- the execution provider is chosen from what onnxruntime offers (CUDA is tested by pretending, as
  no CI machine has a GPU), and describe() records the engine and every model file's sha256;
- ``gancheck export-descriptor`` and bad .dat files through the CLI: one line, exit status 2; a
  corrupt cache entry is rebuilt by an audit.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli

dlib = pytest.importorskip("dlib")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face-recognition-models is not installed", allow_module_level=True)

from embedders.base import load_embedder  # noqa: E402
from embedders.dlib_dat import model_path  # noqa: E402
from embedders.dlib_resnet import CHIP_PADDING, CHIP_SIZE, _prepare_frame, model_dir  # noqa: E402
from embedders.face_align import dlib_chip_transforms, extract_chips  # noqa: E402
from gancheck.errors import GancheckError  # noqa: E402
from gancheck.files import file_sha256  # noqa: E402

EXAMPLE = ROOT / "examples" / "dcgan_digiface"


@functools.lru_cache(maxsize=1)
def dcgan() -> Path:
    """The real DCGAN as ONNX: the example's export when present, else exported now into a temporary
    folder (needs torch and gan-face-generate, which the test command installs)."""
    if (EXAMPLE / "dcgan_digiface.onnx").is_file():
        return EXAMPLE / "dcgan_digiface.onnx"
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("gan_face_generate") is None:
        pytest.skip("the real DCGAN needs torch and gan-face-generate (pip install --no-deps gan-face-generate)")
    out = Path(tempfile.mkdtemp(prefix="gancheck-dcgan-")) / "dcgan_digiface.onnx"
    done = subprocess.run([sys.executable, str(EXAMPLE / "export_onnx.py"), "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GANCHECK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def _frames(n: int, seed: int = 7) -> np.ndarray:
    """``n`` real DCGAN frames, float32 (n, 64, 64, 3) in [0, 1]."""
    import onnxruntime as ort

    z = np.random.default_rng(seed).standard_normal((n, 100, 1, 1)).astype(np.float32)
    images = ort.InferenceSession(str(dcgan()), providers=["CPUExecutionProvider"]).run(None, {"z": z})[0]
    return ((images.transpose(0, 2, 3, 1) + 1) / 2).astype(np.float32)


def _photos() -> list[np.ndarray]:
    import insightface
    from PIL import Image

    folder = Path(insightface.__file__).parent / "data" / "images"
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.jpg"))]


def test_batched_chip_warp_is_get_face_chip_bit_for_bit():
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_dir() / "shape_predictor_5_face_landmarks.dat"))
    frames = np.clip(_frames(48) * 255 + 0.5, 0, 255).astype(np.uint8)
    images = [_prepare_frame(dlib, f) for f in frames] + _photos()
    ref, got = [], []
    for image in images:
        details, shapes = [], []
        for face in detector(image, 0):
            shapes.append(predictor(image, face))
            details.append(dlib.get_face_chip_details(shapes[-1], size=CHIP_SIZE, padding=CHIP_PADDING))
        if not details:
            continue
        rects = [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()) for d in details]
        small = [k for k, r in enumerate(rects) if (r[2] - r[0]) / 2 + 1 <= CHIP_SIZE]  # no pyramid level
        maps = dlib_chip_transforms(np.array(rects)[small], [details[k].angle for k in small], CHIP_SIZE, CHIP_SIZE)
        got.extend(extract_chips(np.repeat(image[None], len(small), 0), maps, CHIP_SIZE))
        ref.extend(dlib.get_face_chip(image, shapes[k], size=CHIP_SIZE, padding=CHIP_PADDING) for k in small)
    assert len(ref) >= 35  # ~70% of 48 DCGAN frames, and faces of the photos
    assert np.array_equal(np.stack(got), np.stack(ref))


@pytest.mark.parametrize("align, n", [("fixed", 24), ("detect", 32), ("detect-cnn", 12)])
def test_onnx_engine_matches_dlibs_own(align, n):
    frames = _frames(n, seed=11)
    out = {}
    for engine in ("onnx", "dlib"):
        model = load_embedder("dlib", device="cpu", threads=2, align=align, engine=engine)
        out[engine] = model.embed(frames)
        model.close()
    (v1, f1), (v2, f2) = out["onnx"], out["dlib"]
    assert np.array_equal(f1, f2)
    assert f1.sum() >= (n if align == "fixed" else n // 2)
    cos = (v1[f1] * v2[f1]).sum(axis=1)
    assert cos.min() >= 0.99999, cos.min()


def test_audit_with_onnx_engine_gives_dlibs_mccs(tmp_path):
    import gancheck.api as api
    from gancheck.analysis.report import load_run

    runs = {}
    for engine in ("onnx", "dlib"):
        out = tmp_path / engine
        report = api.audit(str(dcgan()), n=240, anchors=40, seed=3, embedder="dlib", out=out, html=False, device="cpu",
                           threads=2, embedder_options={"align": "fixed", "engine": engine})
        runs[engine] = (report, load_run(out))
    (r1, run1), (r2, run2) = runs["onnx"], runs["dlib"]
    m1, m2 = np.asarray(run1.mccs), np.asarray(run2.mccs)
    assert m1.shape == (40,) and np.abs(m1 - m2).max() <= 1e-4
    for key in ("mean", "std"):
        assert abs(r1["mccs"][key] - r2["mccs"][key]) <= 1e-4
    assert run1.manifest["embedder"]["engine"] == "onnx" and run2.manifest["embedder"]["engine"] == "dlib"
    assert run1.manifest["embedder"]["model_sha256"] == run2.manifest["embedder"]["model_sha256"]


def test_provider_selection(monkeypatch):
    import onnxruntime as ort

    from gancheck.onnx_runtime import providers_for

    assert providers_for("cpu") == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert providers_for("auto") == ["CPUExecutionProvider"]
        with pytest.raises(GancheckError, match="--device cuda") as exc:
            load_embedder("dlib", device="cuda", align="fixed")
        assert "\n" not in str(exc.value) and "gpu" in str(exc.value)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers_for("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for("cpu") == ["CPUExecutionProvider"]


def test_describe_records_engine_and_model_hashes():
    model = load_embedder("dlib", device="cpu", align="detect-cnn")
    d = model.describe()
    assert d["engine"] == "onnx" and d["providers"] == ["CPUExecutionProvider"]
    folder = model_dir()
    names = {"dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat", "mmod_human_face_detector.dat"}
    assert set(d["model_sha256"]) == names
    assert all(d["model_sha256"][n] == file_sha256(folder / n) for n in names)
    fixed = load_embedder("dlib", device="cpu", align="fixed", engine="dlib").describe()
    assert fixed["engine"] == "dlib" and list(fixed["model_sha256"]) == ["dlib_face_recognition_resnet_model_v1.dat"]
    json.dumps(d)
    with pytest.raises(GancheckError, match="engine=onnx"):
        load_embedder("dlib", align="fixed", engine="torch")
    with pytest.raises(GancheckError, match="detect-cnn"):
        load_embedder("dlib", align="mtcnn")


def test_export_embedder_cli_writes_the_graph_and_the_old_name_still_works_with_a_notice(tmp_path):
    import onnxruntime as ort

    out = tmp_path / "dlib_resnet.onnx"
    done = run_cli("export-embedder", "dlib", "--out", out)
    assert done.returncode == 0, done.stderr
    old = run_cli("export-descriptor", "dlib", "--out", tmp_path / "old.onnx")
    assert old.returncode == 0 and "export-embedder" in old.stderr and (tmp_path / "old.onnx").read_bytes() == out.read_bytes()
    chips = np.random.default_rng(0).integers(0, 256, (3, 150, 150, 3)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"chips": chips})[0]
    ref = dlib.face_recognition_model_v1(str(model_path("resnet"))).compute_face_descriptor(list(chips.astype(np.uint8)))
    ref = np.asarray([np.asarray(v) for v in ref])
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert got.shape == (3, 128) and cos.min() >= 0.99999


def _bad_files(tmp_path) -> dict:
    data = model_path("resnet").read_bytes()
    files = {"random": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
             "truncated": data[: len(data) // 2]}
    for name, content in files.items():
        (tmp_path / f"{name}.dat").write_bytes(content)
    return {"random": ("not a dlib network", tmp_path / "random.dat"),
            "truncated": ("truncated", tmp_path / "truncated.dat"),
            "architecture": ("another architecture", model_path("mmod"))}


def test_bad_dat_files_through_the_cli(tmp_path):
    for what, (phrase, path) in _bad_files(tmp_path).items():
        done = run_cli("export-embedder", "dlib", "--out", tmp_path / "x.onnx", "--model", path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (what, done.stderr)
        assert phrase in lines[0] and str(path) in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "x.onnx").exists()
    done = run_cli("export-embedder", "arcface", "--out", tmp_path / "x.onnx")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "export-embedder dlib" in done.stderr


def test_corrupt_cache_entry_is_rebuilt_by_an_audit(tmp_path, planted_onnx):
    from embedders.dlib_onnx import cached_onnx

    cache = tmp_path / "cache"
    env = {"GANCHECK_CACHE_DIR": str(cache)}
    args = ("audit", planted_onnx, "--embedder", "dlib", "--align", "fixed", "--n", 40, "--anchors", 8, "--device", "cpu",
            "--quiet", "--overwrite")
    first = run_cli(*args, "--out", tmp_path / "a", env=env)
    assert first.returncode == 0, first.stderr
    (entry,) = (cache / "dlib_onnx").glob("dlib_resnet_*.onnx")
    good = entry.read_bytes()
    entry.write_bytes(good[: len(good) // 3])  # a torn write
    second = run_cli(*args, "--out", tmp_path / "b", env=env)
    assert second.returncode == 0, second.stderr
    assert entry.read_bytes() == good
    a = json.loads((tmp_path / "a" / "report.json").read_text())["mccs"]
    b = json.loads((tmp_path / "b" / "report.json").read_text())["mccs"]
    assert a["mean"] == b["mean"] and a["std"] == b["std"]
    assert cached_onnx.__module__ == "embedders.dlib_onnx"
