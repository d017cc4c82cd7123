"""The calibrator file is portable: docs/calibrator-format.md alone is enough to sample from it.

A program written from that document (below, run in a subprocess in which ``import gancheck``
fails) draws latents from gancheck's calibrator files with numpy, safetensors and, for the
rejection method, onnxruntime; they must match gancheck's own sampler. Damaged files and files
built for another generator must be refused with one clear line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import audited_run, run_cli, one_line_error
from gancheck.sources.planted import build_planted_generator, in_planted_region

FRACTION = 0.15
SEED = 4

# Written from docs/calibrator-format.md, without gancheck's code. Usage: FILE SEED FIRST COUNT OUT.npy [GENERATOR.onnx]
REFERENCE_SAMPLER = r'''
import hashlib
import json
import sys

sys.modules["gancheck"] = None  # any `import gancheck` fails: this program knows only the document
sys.modules["embedders"] = None
import numpy as np
from safetensors import safe_open


def read(path):
    with safe_open(path, framework="np") as f:
        header = json.loads(f.metadata()["gancheck"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert header["format"] == "gancheck-calibrator" and header["format_version"] == 1
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<")).tobytes())
    assert digest.hexdigest() == header["tensors_sha256"], "corrupt file"
    return header, tensors


def candidates(rng, latent, count):
    dim, kind, bound = int(np.prod(latent["shape"])), latent["kind"], latent["bound"]
    if kind == "uniform":
        return rng.uniform(-bound, bound, size=(count, dim))
    z = rng.standard_normal((count, dim))
    if kind == "truncnormal":
        while (np.abs(z) > bound).any():
            bad = np.abs(z) > bound
            z[bad] = rng.standard_normal(int(bad.sum()))
    return z


def in_modes_to_acceptance(inside, p):
    a = np.ones(len(inside))
    for m in range(inside.shape[1]):
        a = np.where(inside[:, m], np.minimum(a, p[m]), a)
    return a


def acceptance(header, tensors, generator):
    p = tensors["mode_acceptance"]
    method = header["method"]
    if "decision_onnx" in tensors:  # a learned region: the stored graph decides (latent z in, keep_probability out)
        import onnxruntime as ort

        graph = ort.InferenceSession(tensors["decision_onnx"].tobytes(), providers=["CPUExecutionProvider"])
        return lambda z: graph.run(["keep_probability"], {"z": z.astype(np.float32)})[0].astype(np.float64)
    if method == "gmm":
        c = tensors["centroids"]
        return lambda z: tensors["cell_acceptance"][np.argmin(((z[:, None, :] - c[None, :, :]) ** 2).sum(axis=2), axis=1)]
    if method == "is":
        if header["params"]["region"] == "hull":
            def inside(z):
                cols = []
                for m in range(len(p)):
                    h = tensors[f"hull_facets_{m}"]
                    cols.append(np.max(z @ h[:, :-1].T + h[:, -1], axis=1) <= 1e-9)
                return np.stack(cols, axis=1)
        else:
            w, q, b = tensors["region_weights"], tensors["region_quadratic"], tensors["region_bias"]
            inside = lambda z: (z @ w.T + (z * z).sum(axis=1)[:, None] * q + b) >= 0
        return lambda z: in_modes_to_acceptance(inside(z), p)
    if method == "rejection":
        import onnxruntime as ort

        assert header["embedder"]["spec"] == "pixel", "this program implements only the pixel embedder"
        size = header["embedder"]["describe"]["size"]
        session = ort.InferenceSession(generator, providers=["CPUExecutionProvider"])
        modes = tensors["mode_vectors"].astype(np.float64)
        modes /= np.linalg.norm(modes, axis=1, keepdims=True)
        shape = tuple(header["latent"]["shape"])

        def accept(z):
            raw = session.run(None, {session.get_inputs()[0].name: z.astype(np.float32).reshape((-1, *shape))})[0]
            # this generator's output: NCHW in [-1, 1] -> NHWC in [0, 1]
            img = np.clip((raw.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0).transpose(0, 2, 3, 1)
            n, h, w, ch = img.shape
            # the pixel descriptor: box-average to size x size, flatten, centre, unit length
            x = img.reshape(n, size, h // size, size, w // size, ch).mean(axis=(2, 4)).reshape(n, -1)
            x = x - x.mean(axis=1, keepdims=True)
            x = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
            d = np.arccos(np.clip(x @ modes.T, -1.0, 1.0)) / np.pi
            return in_modes_to_acceptance(d <= header["r0"], p)

        return accept
    raise SystemExit(f"unknown method {method}")


def sample(header, tensors, a, seed, indices):
    dim = int(np.prod(header["latent"]["shape"]))
    out = np.empty((len(indices), dim), np.float32)
    for block in np.unique(indices // 256):
        rows = np.flatnonzero(indices // 256 == block)
        pos = indices[rows] - block * 256
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, int(block), 51729])))
        pending = np.ones(len(rows), bool)
        for _ in range(1000):
            z = candidates(rng, header["latent"], 256)
            u = rng.random(256)
            todo = np.flatnonzero(pending)
            keep = u[pos[todo]] < a(z[pos[todo]])
            out[rows[todo[keep]]] = z[pos[todo[keep]]].astype(np.float32)
            pending[todo[keep]] = False
            if not pending.any():
                break
    return out


path, seed, first, count, dest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
header, tensors = read(path)
a = acceptance(header, tensors, sys.argv[6] if len(sys.argv) > 6 else None)
np.save(dest, sample(header, tensors, a, seed, np.arange(first, first + count, dtype=np.int64)))
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A planted generator, an audit of it, and one calibrator file per method (fitted without the proof)."""
    from gancheck.calibration.build import build_calibrator
    from gancheck.calibration.fitdata import load_fit_data

    d = tmp_path_factory.mktemp("format")
    model = build_planted_generator(d / "planted.onnx", fraction=FRACTION)
    audited_run(model, d / "run", "--n", "5000", "--anchors", "100", "--seed", str(SEED), "--embedder-opt", "size=8", "--quiet")
    data = load_fit_data(d / "run")
    out = {"model": model, "dir": d}
    for method in ("gmm", "is", "rejection"):
        build_calibrator(data, method, d / f"{method}.safetensors")
        out[method] = d / f"{method}.safetensors"
    return out


def reference_sample(path, seed, first, count, tmp_path, generator=None):
    script = tmp_path / "reference_sampler.py"
    script.write_text(REFERENCE_SAMPLER)
    dest = tmp_path / "latents.npy"
    args = [sys.executable, "-I", str(script), str(path), str(seed), str(first), str(count), str(dest)] + ([str(generator)] if generator else [])
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return np.load(dest)


@pytest.mark.parametrize("method", ["gmm", "is"])
def test_sampling_from_the_document_alone_matches_gancheck(method, files, tmp_path):
    from scipy import stats

    from gancheck.calibrators import load_calibrator

    cal = load_calibrator(files[method])
    ours = reference_sample(files[method], 21, 0, 4000, tmp_path)
    theirs = cal.sample(21, np.arange(4000)).reshape(4000, -1)
    # The document fixes the random stream, so the latents are the same ones, not just alike.
    assert np.mean(np.all(ours == theirs, axis=1)) >= 0.999
    # ... and in distribution: an independent stream (other seed) of gancheck against the document's
    other = cal.sample(22, np.arange(4000)).reshape(4000, -1)
    for j in (0, 1, 31):
        assert stats.ks_2samp(ours[:, j], other[:, j]).pvalue > 1e-3
    share_doc, share_gc = in_planted_region(ours, FRACTION).mean(), in_planted_region(other, FRACTION).mean()
    assert share_doc < 0.5 * FRACTION and abs(share_doc - share_gc) < 0.02
    # anchors (indices from 2**40) too
    anchors = reference_sample(files[method], 21, 1 << 40, 300, tmp_path)
    assert np.mean(np.all(anchors == cal.sample(21, (1 << 40) + np.arange(300)).reshape(300, -1), axis=1)) >= 0.99


def test_rejection_sampling_from_the_document_alone_matches_gancheck(files, tmp_path):
    from gancheck.inputs import calibrated_generator

    ours = reference_sample(files["rejection"], 9, 0, 600, tmp_path, generator=files["model"])
    source = calibrated_generator(str(files["model"]), files["rejection"], seed=9)
    theirs = source.latents(np.arange(600)).reshape(600, -1)
    assert np.mean(np.all(ours == theirs, axis=1)) >= 0.99
    assert in_planted_region(ours, FRACTION).mean() < 0.01


def test_header_records_what_the_document_promises(files):
    from safetensors import safe_open

    with safe_open(str(files["is"]), framework="np") as f:
        header = json.loads(f.metadata()["gancheck"])
        names = set(f.keys())
    assert header["format"] == "gancheck-calibrator" and header["format_version"] == 1 and header["method"] == "is"
    assert header["latent"] == {"shape": [32], "kind": "normal", "bound": 2.0}
    assert len(header["generator"]["sha256"]) == 64 and header["embedder"]["spec"] == "pixel" and header["descriptor"] == header["embedder"]
    assert header["stream"]["block"] == 256 and header["stream"]["seed_words"][2] == 0xCA11
    (mode,) = header["dense_modes"]
    assert mode["sample_index"] >= 1 << 40 and 0 <= mode["acceptance"] < 0.01
    assert names == {"mode_vectors", "mode_acceptance", "decision_onnx", "region_thresholds"}
    assert header["params"]["region"] in ("logistic", "boosting", "mlp", "knn")
    assert files["is"].read_bytes().find(b"pickle") == -1


def sample_cli(model, calibrator, tmp_path, *extra):
    return run_cli("sample", model, "--calibrator", calibrator, "--n", "4", "--out", tmp_path / "g.png", "--quiet", *extra)


def test_truncated_file_is_refused(files, tmp_path):
    from gancheck.calibrators import load_calibrator
    from gancheck.errors import GancheckError

    data = files["is"].read_bytes()
    for cut in (len(data) // 2, 12, len(data) - 3):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(GancheckError, match="not a usable calibrator file"):
            load_calibrator(bad)
    one_line_error(sample_cli(files["model"], tmp_path / f"cut{len(data) // 2}.safetensors", tmp_path), "truncated", "re-run gancheck calibrate")


def test_corrupt_file_is_refused(files, tmp_path):
    from gancheck.calibrators import load_calibrator
    from gancheck.errors import GancheckError

    data = bytearray(files["gmm"].read_bytes())
    data[-100] ^= 0x55  # one flipped byte in the tensor data: still valid safetensors
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(GancheckError, match="corrupt"):
        load_calibrator(bad)
    one_line_error(run_cli("audit", files["model"], "--out", tmp_path / "r", "--n", "100", "--anchors", "10", "--calibrator", bad, "--quiet"),
                   "corrupt", "flipped.safetensors")
    text = tmp_path / "text.safetensors"
    text.write_text("not a calibrator at all")
    one_line_error(sample_cli(files["model"], text, tmp_path), "not a usable calibrator file")
    one_line_error(sample_cli(files["model"], tmp_path / "missing.safetensors", tmp_path), "not found")


def test_foreign_or_future_files_are_refused(files, tmp_path):
    from safetensors.numpy import save, save_file

    from gancheck.calibrators import load_calibrator
    from gancheck.errors import GancheckError

    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(GancheckError, match="without a gancheck header"):
        load_calibrator(tmp_path / "plain.safetensors")
    from safetensors import safe_open

    with safe_open(str(files["is"]), framework="np") as f:
        header = json.loads(f.metadata()["gancheck"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    (tmp_path / "v2.safetensors").write_bytes(save(tensors, metadata={"gancheck": json.dumps(dict(header, format_version=2))}))
    with pytest.raises(GancheckError, match="format version 2"):
        load_calibrator(tmp_path / "v2.safetensors")
    (tmp_path / "m.safetensors").write_bytes(save(tensors, metadata={"gancheck": json.dumps(dict(header, method="magic"))}))
    with pytest.raises(GancheckError, match="unknown to this gancheck"):
        load_calibrator(tmp_path / "m.safetensors")


def test_calibrator_for_another_generator_is_refused_unless_forced(files, tmp_path):
    other = build_planted_generator(tmp_path / "other.onnx", fraction=FRACTION, seed=99)  # same shape, other weights
    msg = one_line_error(sample_cli(other, files["is"], tmp_path), "built for another generator", "sha256", "--force")
    assert "is.safetensors" in msg
    forced = sample_cli(other, files["is"], tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    one_line_error(run_cli("audit", other, "--out", tmp_path / "r", "--n", "100", "--anchors", "10", "--calibrator", files["is"], "--quiet"),
                   "built for another generator")
    small = build_planted_generator(tmp_path / "small.onnx", latent_dim=16, fraction=FRACTION)
    one_line_error(sample_cli(small, files["is"], tmp_path), "latent shape is [16]", "[32]")
    one_line_error(sample_cli(small, files["is"], tmp_path, "--force"), "even with --force")
    # its own generator is accepted
    assert sample_cli(files["model"], files["is"], tmp_path).returncode == 0
