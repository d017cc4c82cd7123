"""Generator sources: ONNX signatures, TorchScript, Python callables, image folders, output formats."""

import numpy as np
import pytest
from PIL import Image

from gancheck.sources.planted import build_planted_generator
from gancheck.errors import GancheckError
from gancheck.sources import load_generator
from gancheck.images import OutputFormat


def images_of(source, n=6, seed=0):
    source.prepare(seed)
    return source.images(np.arange(n))


def test_nhwc_and_fixed_batch_models_give_the_same_images(tmp_path):
    ref = images_of(load_generator(str(build_planted_generator(tmp_path / "a.onnx"))))
    nhwc = images_of(load_generator(str(build_planted_generator(tmp_path / "b.onnx", layout="nhwc"))))
    fixed = images_of(load_generator(str(build_planted_generator(tmp_path / "c.onnx", fixed_batch=4)), batch_size=3))
    assert ref.shape == (6, 32, 32, 3) and ref.min() >= 0 and ref.max() <= 1
    np.testing.assert_allclose(nhwc, ref, atol=1e-6)
    np.testing.assert_allclose(fixed, ref, atol=1e-6)


@pytest.mark.parametrize("value_range,raw", [("-1,1", lambda x: x * 2 - 1), ("0,1", lambda x: x), ("0,255", lambda x: (x * 255).astype(np.uint8))])
def test_output_range_is_detected_and_mapped_to_unit_interval(value_range, raw):
    x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    fmt = OutputFormat().resolve(raw(x))
    assert fmt.value_range == value_range and fmt.layout == "nchw"
    np.testing.assert_allclose(fmt.convert(raw(x)), x.transpose(0, 2, 3, 1), atol=1 / 255)


def test_forced_layout_and_bad_outputs():
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    assert OutputFormat(layout="nhwc").resolve(x).layout == "nhwc"
    with pytest.raises(GancheckError, match="rank 2"):
        OutputFormat().resolve(np.zeros((2, 5)))
    with pytest.raises(GancheckError, match="constant image"):
        OutputFormat("nchw", "0,1").convert(np.ones((2, 3, 8, 8), np.float32), first_index=10)
    with pytest.raises(GancheckError, match="--layout"):
        OutputFormat().resolve(np.zeros((2, 7, 8, 9)))


def conditional_model(path, fixed_batch=None):
    """z (N, 8) plus a class label (N,) int64 and a scalar truncation: image = tanh(W z * psi + E[label])."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3 * 8 * 8)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=(10, 3 * 8 * 8)).astype(np.float32), "emb"),
             numpy_helper.from_array(np.array([-1, 3, 8, 8], np.int64), "shape")]
    nodes = [helper.make_node("MatMul", ["z", "w"], ["h"]), helper.make_node("Mul", ["h", "psi"], ["hs"]),
             helper.make_node("Gather", ["emb", "label"], ["e"]), helper.make_node("Add", ["hs", "e"], ["pre"]),
             helper.make_node("Tanh", ["pre"], ["t"]), helper.make_node("Reshape", ["t", "shape"], ["image"])]
    b = fixed_batch or "N"
    graph = helper.make_graph(nodes, "cond", [helper.make_tensor_value_info("z", TensorProto.FLOAT, [b, 8]),
                                              helper.make_tensor_value_info("label", TensorProto.INT64, [b]),
                                              helper.make_tensor_value_info("psi", TensorProto.FLOAT, [])],
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [b, 3, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


def test_extra_inputs_get_fixed_values(tmp_path):
    path = conditional_model(tmp_path / "cond.onnx")
    with pytest.raises(GancheckError, match="--input NAME=VALUE"):
        load_generator(path)
    with pytest.raises(GancheckError, match="not among the model's inputs"):
        load_generator(path, inputs={"labels": "3", "psi": "1"})
    three = images_of(load_generator(path, inputs={"label": "3", "psi": "0.7"}))
    four = images_of(load_generator(path, inputs={"label": "4", "psi": "0.7"}))
    assert not np.allclose(three, four)
    assert load_generator(path, inputs={"label": "3", "psi": "0.7"}).latent_name == "z"


# torch 2.13 deprecates TorchScript; this test makes a TorchScript file on purpose (docs/sources.md).
@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.(script|save)` is deprecated:DeprecationWarning")
def test_torchscript_and_callable_generators_match_onnx(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    onnx_path = build_planted_generator(tmp_path / "g.onnx")
    ref = images_of(load_generator(str(onnx_path)))
    import onnx
    from onnx import numpy_helper

    w = {i.name: numpy_helper.to_array(i) for i in onnx.load(onnx_path).graph.initializer}

    class Planted(torch.nn.Module):
        latent_dim = 32

        def __init__(self):
            super().__init__()
            for k in ("mix", "patterns", "planted", "t"):
                self.register_buffer(k, torch.from_numpy(w[k].copy()))

        def forward(self, z):
            tex = torch.tanh(z @ self.mix @ self.patterns)
            out = torch.where(z[:, :1] > self.t, self.planted, tex)
            return out.reshape(-1, 3, 32, 32)

    ts = tmp_path / "g.pt"
    torch.jit.save(torch.jit.script(Planted()), ts)
    np.testing.assert_allclose(images_of(load_generator(str(ts), latent_shape=(32,))), ref, atol=1e-5)
    module = tmp_path / "my_gan.py"
    module.write_text("import numpy as np\n"
                      f"W = np.load({str(tmp_path / 'w.npz')!r})\n"
                      "def generate(z):\n"
                      "    tex = np.tanh(z @ W['mix'] @ W['patterns'])\n"
                      "    return np.where(z[:, :1] > W['t'], W['planted'], tex).reshape(-1, 3, 32, 32)\n"
                      "generate.latent_shape = (32,)\n"
                      "def make():\n    return generate\n")
    np.savez(tmp_path / "w.npz", **w)
    monkeypatch.syspath_prepend(str(tmp_path))
    np.testing.assert_allclose(images_of(load_generator("my_gan:generate")), ref, atol=1e-5)
    np.testing.assert_allclose(images_of(load_generator("my_gan:make")), ref, atol=1e-5)
    with pytest.raises(GancheckError, match="no attribute"):
        load_generator("my_gan:missing")


def test_image_folder_is_split_into_disjoint_anchors_and_collection(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(30):
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{i:03d}.png")
    src = load_generator(str(tmp_path))
    src.prepare(0)
    a, c = src.anchor_indices(10), src.collection_indices(20, 10)
    assert len(set(a) | set(c)) == 30 and not set(a) & set(c)
    assert src.images(c[:3]).shape == (3, 16, 16, 3)
    with pytest.raises(GancheckError, match="lower --n"):
        src.collection_indices(25, 10)
    (tmp_path / "bad.png").write_text("not an image")
    src = load_generator(str(tmp_path))
    src.prepare(0)
    with pytest.raises(GancheckError, match="cannot read image"):
        src.images(np.arange(31))


def test_uniform_and_truncated_priors_respect_their_bound():
    from gancheck.sources.latents import LatentPrior

    for kind in ("uniform", "truncnormal"):
        z = LatentPrior((16,), kind, 1.5).sample(0, np.arange(5000))
        assert np.abs(z).max() <= 1.5 and z.std() > 0.5
    z = LatentPrior((8,)).sample(3, np.arange(20000))
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    np.testing.assert_array_equal(LatentPrior((8,)).sample(3, [12345, 7]), z[[12345, 7]])
