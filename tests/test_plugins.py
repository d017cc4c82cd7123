"""Plug-ins by entry points, the claims table and strict generator options.

A third-party package (tests/fixtures/gancheck_plugin_demo) installed into a temporary virtual
environment adds an embedder and a generator source that the CLI uses with no edit of gancheck; a
broken plug-in stops only the run that asks for it, with one line. Which source reads a spec comes
from one table, whatever order the sources registered in; an option the chosen source does not take
is refused with its CLI flag.
"""

import importlib
import importlib.metadata
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedders import EMBEDDERS, load_embedder
from gancheck.calibrators import METHODS
from gancheck.errors import GancheckError
from gancheck.sources import SOURCES, claim, load_generator

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "fixtures" / "gancheck_plugin_demo"
DEMO = str(ROOT / "gancheck" / "data" / "demo_generator.onnx")


# -- a real third-party package, installed in a temporary venv and used from the CLI ---------------


@pytest.fixture(scope="module")
def plugin_python(tmp_path_factory):
    """The python of a fresh venv that sees this environment's packages (through a .pth file, so
    nothing here is modified) and has gancheck-plugin-demo installed from a copy of the fixture."""
    root = tmp_path_factory.mktemp("plugin")
    package = shutil.copytree(PLUGIN, root / "package")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    here = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib, "gancheck-test-parent.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in here))
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
                              str(package)], capture_output=True, text=True, cwd=root)
    assert install.returncode == 0, install.stderr[-3000:]
    return python


def run_plugin_cli(python, *args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([str(python), "-m", "gancheck", *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def one_line_error(proc, *words):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_an_installed_plugin_package_adds_an_embedder_and_a_source_to_the_cli(plugin_python, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "images.npz", images=(rng.random((240, 16, 16, 3)) * 255).astype(np.uint8))
    proc = run_plugin_cli(plugin_python, "audit", "npz:images.npz", "--embedder", "meanrgb", "--n", "200", "--anchors", "20",
                          "--out", tmp_path / "run", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    named = report["embedder"]
    assert (named if isinstance(named, str) else named["name"]) == "meanrgb"
    # The package's broken entry point stopped nothing above; asked for, it is one line naming the fix.
    proc = run_plugin_cli(plugin_python, "audit", DEMO, "--embedder", "broken", "--n", "200", "--anchors", "20",
                          "--out", tmp_path / "broken", "--quiet", cwd=tmp_path)
    one_line_error(proc, "gancheck-plugin-demo", "broken = gancheck_plugin_demo_missing:Embedder", "gancheck.embedders",
                   "pip uninstall gancheck-plugin-demo")
    # This environment did not get the package.
    EMBEDDERS.refresh(), SOURCES.refresh()
    assert "meanrgb" not in EMBEDDERS and "npz" not in SOURCES
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("gancheck-plugin-demo")


# -- plug-ins declared by distributions on sys.path, in this process -----------------------------------


@pytest.fixture
def distribution(tmp_path, monkeypatch):
    """``make(name, module_source, {group: {entry: "module:Class"}})``: a distribution (a module and its
    .dist-info) on sys.path, seen by every registry until the test ends."""
    registries = (SOURCES, EMBEDDERS, METHODS)

    def make(name, source, groups):
        module = name.replace("-", "_")
        (tmp_path / f"{module}.py").write_text(source)
        info = tmp_path / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) for group, points in groups.items()))
        importlib.invalidate_caches()
        for registry in registries:
            registry.refresh()

    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    monkeypatch.undo()
    for registry in registries:
        registry.refresh()


TWINS = """
from gancheck.sources.base import Source

class Left(Source):
    @classmethod
    def accepts(cls, spec):
        return spec.startswith("twin:")

    def images(self, indices):
        raise NotImplementedError

class Right(Left):
    pass
"""


def test_two_third_party_sources_accepting_one_spec_are_refused_naming_both(distribution):
    distribution("twin-left", TWINS, {"gancheck.sources": {"left": "twin_left:Left"}})
    distribution("twin-right", TWINS, {"gancheck.sources": {"right": "twin_right:Right"}})
    with pytest.raises(GancheckError) as err:
        load_generator("twin:a")
    message = str(err.value)
    assert "two generator sources accept twin:a" in message and "twin-left" in message and "twin-right" in message
    assert claim(DEMO).kind == "onnx"  # the built-ins' claims stand


def test_a_third_party_source_claims_what_no_builtin_does_and_takes_no_builtin_spec(distribution):
    distribution("twin-left", TWINS, {"gancheck.sources": {"left": "twin_left:Left"}})
    assert claim("twin:a").kind == "left"
    assert claim("twin:images.npz").kind == "left"  # NAME:VALUE is a callable only when NAME's package exists
    assert claim(DEMO).kind == "onnx"


def test_a_broken_plugin_stops_only_the_lookups_that_need_it(distribution):
    distribution("broken-plugins", "", {"gancheck.embedders": {"gone": "no_such_module_xyz:Embedder"},
                                        "gancheck.sources": {"gone": "no_such_module_xyz:Source"}})
    assert load_embedder("pixel").name == "pixel"
    assert load_generator(DEMO).kind == "onnx"
    for lookup in (lambda: load_embedder("gone"), lambda: load_generator("gone:x")):
        with pytest.raises(GancheckError) as err:
            lookup()
        message = str(err.value)
        assert "\n" not in message and "broken-plugins" in message and "no_such_module_xyz" in message
        assert "ModuleNotFoundError" in message and "pip uninstall broken-plugins" in message


def test_a_plugin_that_is_no_subclass_or_takes_a_builtin_name_is_refused(distribution):
    distribution("odd-plugins", "class NotAnEmbedder:\n    pass\n",
                 {"gancheck.embedders": {"odd": "odd_plugins:NotAnEmbedder", "pixel": "odd_plugins:NotAnEmbedder"}})
    with pytest.raises(GancheckError, match=r"'odd' from distribution odd-plugins .* is not a subclass of embedders\.base\.Embedder"):
        load_embedder("odd")
    with pytest.raises(GancheckError, match=r"takes the name of gancheck's own embedder 'pixel'; rename .*\(pip uninstall odd-plugins\)"):
        load_embedder("pixel")


def test_a_third_party_source_named_like_a_builtin_is_refused_when_it_is_asked(distribution):
    distribution("onnx-impostor", TWINS, {"gancheck.sources": {"onnx": "onnx_impostor:Left"}})
    assert claim(DEMO).kind == "onnx" and claim(DEMO) is SOURCES.in_process("onnx")
    with pytest.raises(GancheckError, match=r"^distribution onnx-impostor .* takes the name of gancheck's own generator source 'onnx'"):
        claim("twin:a")


def test_a_calibrator_method_can_come_from_an_entry_point(distribution):
    distribution("extra-method", "from gancheck.calibrators.gmm import GmmCalibrator\n\nclass Mine(GmmCalibrator):\n    pass\n",
                 {"gancheck.calibrators": {"mine": "extra_method:Mine"}})
    assert "mine" in METHODS and "mine" in METHODS.names()
    assert METHODS["mine"].method == "mine"
    assert METHODS["gmm"].method == "gmm"


# -- the claims table ------------------------------------------------------------------------------


@pytest.fixture(params=["as registered", "reversed"])
def registration_order(request, monkeypatch):
    if request.param == "reversed":
        monkeypatch.setattr(SOURCES, "_classes", dict(reversed(list(SOURCES._classes.items()))))
    return request.param


def test_each_builtin_spec_goes_to_its_source_whatever_the_registration_order(registration_order, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "weird.onnx").mkdir()
    (tmp_path / "weird.pt").mkdir()
    template = {"request_template": "template.json"}
    cases = [
        ("cmd:./generate --batch", {}, "cmd"),
        ("http://localhost:8000/v2/models/gan", {}, "oip"),
        ("https://host/v2/models/gan/versions/2", {}, "oip"),
        ("http://localhost:8000/v2/models/gan", template, "json"),
        ("https://host/generate", template, "json"),
        ("https://host/generate", {}, "json"),
        (str(tmp_path / "images"), {}, "folder"),
        (str(tmp_path / "weird.onnx"), {}, "folder"),
        (str(tmp_path / "weird.pt"), {}, "folder"),
        (DEMO, {}, "onnx"),
        ("missing.ONNX", {}, "onnx"),
        ("g.pt2", {}, "pt2"),
        ("missing.PT2", {}, "pt2"),
        ("g.pt", {}, "torchscript"),
        ("g.torchscript", {}, "torchscript"),
        ("gancheck.api:audit", {}, "callable"),
        ("no_such_package_xyz.gen:make", {}, "callable"),
    ]
    for spec, options, kind in cases:
        assert claim(spec, options).kind == kind, (spec, options)


def test_an_existing_file_no_source_reads_is_named_for_what_it_is_not(tmp_path):
    weights = tmp_path / "weights.pkl"
    weights.write_bytes(b"\x80\x04")
    with pytest.raises(GancheckError) as err:
        load_generator(str(weights))
    message = str(err.value)
    assert message.startswith(f"{weights} is neither an ONNX file, a PyTorch 2 file nor a TorchScript file; formats read: an ONNX file (.onnx)")
    assert "not found" not in message and "\n" not in message
    with pytest.raises(GancheckError, match="generator not found: .*nope.bin"):
        load_generator(str(tmp_path / "nope.bin"))


def test_a_missing_module_still_says_it_cannot_be_imported():
    with pytest.raises(GancheckError, match="cannot import 'no_such_package_xyz.gen' for generator no_such_package_xyz.gen:make"):
        load_generator("no_such_package_xyz.gen:make")


# -- strict generator options ----------------------------------------------------------------------


@pytest.mark.parametrize("option, value, flag, takers", [
    ("max_rps", 3, "--max-rps", "HTTP generators"),
    ("concurrency", 4, "--concurrency", "HTTP generators"),
    ("token_env", "MY_TOKEN", "--token-env", "HTTP generators"),
    ("request_template", "t.json", "--request-template", "JSON services"),
    ("latent_shape", (8,), "--latent-shape", "generator programs (cmd:), TorchScript files and Python callables"),
])
def test_an_option_the_onnx_source_does_not_take_is_refused_with_its_flag(option, value, flag, takers):
    with pytest.raises(GancheckError) as err:
        load_generator(DEMO, **{option: value})
    assert str(err.value) == f"{flag} applies to {takers}, not to an ONNX file ({DEMO}); drop it"


def test_latent_options_are_refused_for_a_folder_of_images(tmp_path):
    with pytest.raises(GancheckError, match=r"^--range applies to generators with latents, not to a folder of images"):
        load_generator(str(tmp_path), value_range="0,1")
    with pytest.raises(GancheckError, match=r"^--input applies to .*, not to a folder of images"):
        load_generator(str(tmp_path), inputs={"label": "3"})


def test_unset_options_and_run_settings_pass_to_any_source():
    unset = dict(max_rps=None, concurrency=None, request_template=None, token_env=None, ca_file=None,
                 latent_shape=None, inputs=None, latent_input=None)
    source = load_generator(DEMO, device="cpu", threads=1, batch_size=8, timeout=30.0, http_retries=3, **unset)
    assert source.kind == "onnx" and source.batch_size == 8
    assert load_generator(DEMO, layout="auto", value_range="auto", prior="normal", truncation=2.0).kind == "onnx"
