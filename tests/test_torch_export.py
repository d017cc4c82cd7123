"""PyTorch 2 files (issue 27): a torch.export program and an AOTInductor package of one small conv
generator, made here, audit to the same figures as the same module's ONNX export, from the CLI and
the API; the errors say what a file is. The package is compiled once (gcc: the slow part)."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gancheck.errors import GancheckError  # noqa: E402
from gancheck.sources import claim, load_generator  # noqa: E402
from conftest import run_cli  # noqa: E402

LATENT = 8
AOTI_BATCH = 16
AUDIT = dict(n=200, anchors=20, embedder="pixel")


class Tiny(torch.nn.Module):
    """z (N, 8, 1, 1) -> images (N, 3, 16, 16) in [-1, 1]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.ConvTranspose2d(LATENT, 16, 4, 1, 0), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(16, 8, 4, 2, 1), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(8, 3, 4, 2, 1), torch.nn.Tanh())

    def forward(self, z):
        return self.net(z)


class Labelled(torch.nn.Module):
    """(z, label) -> images: a conditional generator with a second input."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.w = torch.nn.Parameter(torch.randn(LATENT, 192))
        self.b = torch.nn.Parameter(torch.randn(1, 192))

    def forward(self, z, label):
        return torch.tanh(z @ self.w + label * self.b).reshape(-1, 3, 8, 8)


def export(module, example, path, dynamic=True):
    names = list(__import__("inspect").signature(module.forward).parameters)
    shapes = {n: {0: torch.export.Dim("batch", min=1)} for n in names} if dynamic else None
    program = torch.export.export(module.eval(), example, dynamic_shapes=shapes)
    torch.export.save(program, path)
    return program


def rewrite(src, dst, change):
    """A copy of the zip ``src`` at ``dst`` with each entry's bytes passed through ``change(name, data)``."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            b.writestr(info, change(info.filename, a.read(info.filename)))
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same module as ONNX, as a program (dynamic batch) and as a package (fixed batch 16)."""
    out, net, z = tmp_path_factory.mktemp("pt2"), Tiny().eval(), torch.zeros(2, LATENT, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy ONNX exporter's deprecation notice (onnxscript is not installed)
        torch.onnx.export(net, (z,), str(out / "tiny.onnx"), input_names=["z"], output_names=["image"],
                          dynamic_axes={"z": {0: "batch"}, "image": {0: "batch"}}, opset_version=17, dynamo=False)
    export(net, (z,), out / "tiny.pt2")
    fixed = torch.export.export(net, (torch.zeros(AOTI_BATCH, LATENT, 1, 1),))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own FutureWarning from the compiler's pytree use
        torch._inductor.aoti_compile_and_package(fixed, package_path=str(out / "tiny_aoti.pt2"))
    return {"dir": out, "onnx": out / "tiny.onnx", "program": out / "tiny.pt2", "aoti": out / "tiny_aoti.pt2"}


def images_of(spec, batch_size=64, n=37, **options):
    source = load_generator(str(spec), batch_size=batch_size, **options)
    source.prepare(0)
    return source.images(np.arange(n))


def same_figures(a: dict, b: dict):
    assert abs(a["mccs"]["mean"] - b["mccs"]["mean"]) <= 1e-6
    assert a["worst_mode"]["sample_index"] == b["worst_mode"]["sample_index"]


# -- the two kinds, against ONNX ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["program", "aoti"])
def test_both_kinds_give_the_onnx_images_whatever_the_batch_size(files, kind):
    ref = images_of(files["onnx"])
    for batch_size in (64, 5, 1):  # 5 and 1: the package's fixed batch of 16 is padded
        np.testing.assert_allclose(images_of(files[kind], batch_size=batch_size), ref, atol=1e-5)


def test_a_program_exported_for_a_fixed_batch_is_padded(files, tmp_path):
    export(Tiny(), (torch.zeros(4, LATENT, 1, 1),), tmp_path / "fixed.pt2", dynamic=False)
    assert load_generator(str(tmp_path / "fixed.pt2")).fixed_batch == 4
    np.testing.assert_allclose(images_of(tmp_path / "fixed.pt2", batch_size=7), images_of(files["onnx"]), atol=1e-5)


def test_program_and_package_are_told_apart_by_contents_not_suffix(files, tmp_path):
    program, package = load_generator(str(files["program"])), load_generator(str(files["aoti"]))
    assert (program.format_kind, program.latent_name, program.fixed_batch) == ("program", "z", None)
    assert (package.format_kind, package.fixed_batch) == ("aoti", AOTI_BATCH)
    assert program.latent_prior.to_dict()["shape"] == package.latent_prior.to_dict()["shape"] == [LATENT, 1, 1]
    renamed = tmp_path / "model.pt"  # torch.export.save writes whatever name it is given
    renamed.write_bytes(files["program"].read_bytes())
    assert claim(str(renamed)).kind == "pt2" and load_generator(str(renamed)).format_kind == "program"
    manifest = package.describe()
    assert manifest["torch"] == torch.__version__ and len(manifest["sha256"]) == 64 and manifest["format"] == "aoti"


def test_the_cli_audits_a_program_to_the_onnx_figures(files, tmp_path):
    reports = {}
    for kind in ("onnx", "program"):
        proc = run_cli("audit", files[kind], "--n", 200, "--anchors", 20, "--embedder", "pixel", "--out", tmp_path / kind, "--json")
        assert proc.returncode == 0, proc.stderr
        reports[kind] = json.loads((tmp_path / kind / "report.json").read_text())
    same_figures(reports["program"], reports["onnx"])
    generator = json.loads((tmp_path / "program" / "manifest.json").read_text())["generator"]
    assert generator["kind"] == "pt2" and generator["torch"] == torch.__version__ and len(generator["sha256"]) == 64


def test_the_api_audits_a_package_to_the_onnx_figures(files):
    import gancheck

    onnx = gancheck.audit(str(files["onnx"]), **AUDIT)
    same_figures(gancheck.audit(str(files["aoti"]), **AUDIT), onnx)
    same_figures(gancheck.audit(str(files["program"]), **AUDIT), onnx)


def test_a_programs_other_inputs_take_fixed_and_per_sample_values(tmp_path):
    path = tmp_path / "labelled.pt2"
    export(Labelled(), (torch.zeros(2, LATENT), torch.zeros(2, 1)), path)
    three, four = images_of(path, inputs={"label": "3"}), images_of(path, inputs={"label": "4"})
    assert three.shape == (37, 8, 8, 3) and not np.allclose(three, four)
    mixed = images_of(path, inputs={"label": "random:values:3,4"}, batch_size=7)
    np.testing.assert_allclose(mixed, images_of(path, inputs={"label": "random:values:3,4"}), atol=1e-5)  # per sample, not per batch
    is_three = [np.allclose(m, t, atol=1e-5) for m, t in zip(mixed, three)]
    assert 0 < sum(is_three) < len(mixed) and all(t or np.allclose(m, f, atol=1e-5) for m, f, t in zip(mixed, four, is_three))
    with pytest.raises(GancheckError, match=r"has inputs label besides the latent 'z'; give each a fixed value with --input"):
        load_generator(str(path))
    with pytest.raises(GancheckError, match=r"--input names colour not among the program's inputs: z, label"):
        load_generator(str(path), inputs={"label": "3", "colour": "1"})


# -- errors: one line, exit 2 ------------------------------------------------------------------


def one_line_error(spec, match, **options):
    with pytest.raises(GancheckError, match=match) as err:
        load_generator(str(spec), **options)
    message = str(err.value)
    assert "\n" not in message and "not found" not in message, message
    return message


def test_a_file_that_is_no_generator_says_what_it_is_and_which_formats_are_read(files, tmp_path):
    weights = tmp_path / "weights.pt2"
    torch.save(Tiny().state_dict(), weights)
    message = one_line_error(weights, r"weights.pt2 is a torch.save pickle \(weights or a pickled module, not a program\), not a torch.export program")
    assert "gancheck reads torch.export programs (torch.export.save) and AOTInductor packages" in message
    scripted = tmp_path / "scripted.pt2"
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; this file is made on purpose
        warnings.filterwarnings("ignore", r"`torch\.jit\.(script|save)` is deprecated", DeprecationWarning)
        torch.jit.save(torch.jit.script(Tiny()), scripted)
    one_line_error(scripted, r"is a TorchScript archive \(torch.jit.save\), not a torch.export program")
    (tmp_path / "weights.pt").write_bytes(weights.read_bytes())  # the TorchScript suffix: the same answer
    one_line_error(tmp_path / "weights.pt", r"weights.pt is a torch.save pickle .*, not a TorchScript file; gancheck reads torch.export")
    (tmp_path / "empty.pt2").write_bytes(b"")
    one_line_error(tmp_path / "empty.pt2", r"is an empty file, not a torch.export program")
    other = tmp_path / "weights.bin"
    other.write_bytes(weights.read_bytes())
    message = one_line_error(other, r"is neither an ONNX file, a PyTorch 2 file nor a TorchScript file \(it is a torch.save pickle")
    assert "a torch.export program or AOTInductor package (.pt2)" in message


def test_a_program_saved_by_a_newer_torch_is_refused_in_one_line_with_exit_2(files, tmp_path):
    def newer(name, data):
        if not name.endswith("/models/model.json"):
            return data
        saved = json.loads(data)
        saved["schema_version"]["major"] += 1
        saved["torch_version"] = "9.1.0"
        return json.dumps(saved).encode()

    path = rewrite(files["program"], tmp_path / "newer.pt2", newer)
    one_line_error(path, r"newer.pt2 was saved by torch 9.1.0 \(export schema \d+\.\d+\), newer than the installed torch .*; upgrade torch")
    proc = run_cli("audit", path, "--n", 50, "--anchors", 10, "--embedder", "pixel", "--out", tmp_path / "run")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "saved by torch 9.1.0" in proc.stderr


def test_a_program_whose_input_is_not_a_latent_batch_is_refused(tmp_path):
    class Unbatched(torch.nn.Module):
        def forward(self, z):
            return torch.tanh(z).reshape(1, 3, 2, 2).repeat(2, 1, 1, 1)

    class Indexed(torch.nn.Module):
        def forward(self, idx):
            return torch.tanh(idx.float()).reshape(-1, 1, 1, 1).repeat(1, 3, 4, 4)

    export(Unbatched(), (torch.zeros(12),), tmp_path / "unbatched.pt2", dynamic=False)
    one_line_error(tmp_path / "unbatched.pt2", r"has shape \[12\], which is not a latent batch; a generator's latent input must be \(N, d\)")
    export(Indexed(), (torch.zeros(4, dtype=torch.long),), tmp_path / "indexed.pt2")
    one_line_error(tmp_path / "indexed.pt2", r"has no floating-point input, so no latent batch \(inputs: idx int64\)")


def test_a_package_compiled_for_another_device_is_refused(files, tmp_path):
    def cuda(name, data):
        return data.replace(b'"AOTI_DEVICE_KEY": "cpu"', b'"AOTI_DEVICE_KEY": "cuda"') if name.endswith("_metadata.json") else data

    path = rewrite(files["aoti"], tmp_path / "cuda.pt2", cuda)
    if not torch.cuda.is_available():
        one_line_error(path, r"is an AOTInductor package compiled for cuda, but torch sees no CUDA GPU here; compile it for cpu")
    one_line_error(files["aoti"], r"compiled for cpu, but --device cuda was asked for; use --device cpu", device="cuda")
    one_line_error(files["aoti"], r"is an AOTInductor package, whose inputs have no names; --input and --latent-input need",
                   inputs={"label": "3"})
