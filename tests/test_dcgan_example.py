"""The DCGAN example: export of gan-face-generate's generator to ONNX, then a small dlib audit of it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "dcgan_digiface" / "export_onnx.py"

pytest.importorskip("torch")
if importlib.util.find_spec("gan_face_generate") is None:
    pytest.skip("gan-face-generate is not installed (pip install --no-deps gan-face-generate)", allow_module_level=True)


def export_module():
    spec = importlib.util.spec_from_file_location("dcgan_export", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def face_dcgan_onnx(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dcgan") / "dcgan_digiface.onnx"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.is_file()
    return out


def test_exported_generator_matches_torch(face_dcgan_onnx):
    import onnxruntime as ort
    import torch

    net = export_module().load_generator()
    session = ort.InferenceSession(str(face_dcgan_onnx), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "z" and inp.shape[1:] == [100, 1, 1] and not isinstance(inp.shape[0], int)
    assert out.name == "image" and out.shape[1:] == [3, 64, 64]
    for n in (1, 7):  # the batch dimension is dynamic
        z = np.random.default_rng(n).standard_normal((n, 100, 1, 1)).astype(np.float32)
        got = session.run(None, {"z": z})[0]
        with torch.no_grad():
            expected = net(torch.from_numpy(z)).numpy()
        assert got.shape == (n, 3, 64, 64)
        assert np.abs(got - expected).max() < 1e-4
        assert np.abs(got).max() <= 1 + 1e-6  # tanh output


@pytest.mark.slow
def test_dlib_audit_of_the_dcgan_is_complete_and_its_worst_mode_is_a_face(face_dcgan_onnx, tmp_path):
    import onnxruntime as ort

    from embedders import load_embedder
    from gancheck.sources.latents import LatentPrior

    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-m", "gancheck", "audit", str(face_dcgan_onnx), "--embedder", "dlib", "--align", "fixed",
         "--n", "1000", "--anchors", "200", "--seed", "0", "--out", str(run), "--json", "--quiet"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert report["n_samples"] == 1000 and report["n_anchors"] == 200
    from embedders.dlib_resnet import DlibEmbedder

    assert report["theta"] == pytest.approx(DlibEmbedder.default_theta)
    assert report["radius"] == pytest.approx(DlibEmbedder.default_radius)
    assert report["mccs_form"]
    assert 0 < report["mccs"]["mean"] < 1 and report["mccs"]["std"] > 0
    worst = report["worst_mode"]
    assert worst["neighbors"] >= 1 and 0 < worst["neighbor_fraction"] <= 1
    assert report["mccs"]["mean"] <= worst["mccs"] <= 1
    assert report["modes"] and report["modes"][0]["sample_index"] == worst["sample_index"]
    assert report["no_face"]["count"] == 0 and report["no_face"]["rate"] == 0  # the fixed crop describes every image

    # The worst mode, regenerated from (seed, index), is a face by dlib's own detector.
    z = LatentPrior(shape=(100, 1, 1)).sample(0, [worst["sample_index"]])
    image = ort.InferenceSession(str(face_dcgan_onnx), providers=["CPUExecutionProvider"]).run(None, {"z": z})[0]
    image = (image.transpose(0, 2, 3, 1) + 1) / 2
    _, found = load_embedder("dlib", align="detect", threads=1).embed(image)
    assert found.all()
