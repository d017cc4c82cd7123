"""Run integrity (issue 11): a run's numbers come from one set of inputs, or the run says no.

One test per defect of the issue, each through the real command line (a subprocess) or the real
files it writes; docs/run-directory.md lists which test checks which promise."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

SMALL = ("--n", "400", "--anchors", "40", "--shard-size", "100", "--quiet")


def one_line_error(proc, *words, code=2):
    """The command failed with ``code`` and exactly one line on stderr holding ``words``, no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "╭" not in proc.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    return lines[0]


def tree_digest(path: Path) -> dict:
    """{relative path: bytes} of every file under ``path`` (to prove a run was left untouched)."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(Path(path).rglob("*")) if p.is_file()}


def descriptor_model(path: Path, dim: int, seed: int) -> Path:
    """A real ONNX descriptor: a fixed random projection of 8x8 RGB pixels to ``dim`` numbers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).standard_normal((3 * 8 * 8, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["images"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["vectors"])],
        "descriptor", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["N", dim])], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def generator_module(tmp_path: Path, name: str, body: str) -> dict:
    """Write ``body`` as module ``name`` in ``tmp_path``; returns the env that makes it importable."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def finished_run(planted_onnx, tmp_path_factory):
    """One finished audit of the planted generator, written by the CLI; tests copy it before changing it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = run_cli("audit", planted_onnx, "--out", out, *SMALL)
    assert proc.returncode == 0, proc.stderr
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


SMOOTH = """
import numpy as np
W = np.random.default_rng(5).standard_normal((16, 3 * 16 * 16)).astype(np.float32)
def images(z):
    z = np.asarray(z, np.float32).reshape(len(z), -1)
    return np.tanh(z @ W).reshape(len(z), 3, 16, 16)
"""


# 1 and 6 ------------------------------------------------------------------------------------

def test_a_replaced_descriptor_file_is_named_by_resume_compare_and_report(planted_onnx, tmp_path):
    model = descriptor_model(tmp_path / "d.onnx", 16, seed=1)
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("audit", planted_onnx, "--embedder", f"onnx:{model}", "--out", a, *SMALL).returncode == 0
    before = tree_digest(a)
    descriptor_model(model, 16, seed=2)  # another model, same name, same output size
    one_line_error(run_cli("audit", planted_onnx, "--embedder", f"onnx:{model}", "--out", a, "--resume", *SMALL),
                   "cannot resume", "embedder.models")
    assert run_cli("audit", planted_onnx, "--embedder", f"onnx:{model}", "--out", b, *SMALL).returncode == 0
    one_line_error(run_cli("compare", a, b), "embedder.models")
    assert run_cli("compare", a, b, "--force", "--json").returncode == 0
    one_line_error(run_cli("report", b, "--before", a, "--quiet"), "embedder.models", "--force")
    descriptor_model(model, 24, seed=1)  # another output size: once a traceback
    one_line_error(run_cli("audit", planted_onnx, "--embedder", f"onnx:{model}", "--out", a, "--resume", *SMALL), "embedder.models")
    assert tree_digest(a) == before


# 2 -------------------------------------------------------------------------------------------

def test_resume_refuses_a_changed_calibrator(planted_onnx, tmp_path):
    from gancheck.api import audit
    from gancheck.calibration.build import build_calibrator
    from gancheck.calibration.fitdata import load_fit_data

    base = tmp_path / "base"
    audit(str(planted_onnx), n=2000, anchors=100, out=base, html=False)
    data = load_fit_data(base)
    build_calibrator(data, "gmm", tmp_path / "a.safetensors", clusters=4)
    build_calibrator(data, "gmm", tmp_path / "b.safetensors", clusters=8)
    out = tmp_path / "calibrated"
    assert run_cli("audit", planted_onnx, "--calibrator", tmp_path / "a.safetensors", "--out", out, *SMALL).returncode == 0
    line = one_line_error(run_cli("audit", planted_onnx, "--calibrator", tmp_path / "b.safetensors", "--out", out, "--resume", *SMALL),
                          "calibrator differs")
    assert "b.safetensors" not in line  # named by content hash, not by file name
    one_line_error(run_cli("audit", planted_onnx, "--out", out, "--resume", *SMALL), "calibrator differs")


# 3 -------------------------------------------------------------------------------------------

def test_overwrite_with_a_typo_keeps_the_old_run(planted_onnx, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    before = tree_digest(out)
    one_line_error(run_cli("audit", planted_onnx, "--embedder", "onnx:typo.onnx", "--out", out, "--overwrite", *SMALL), "typo.onnx")
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["run"]  # no staging left behind


# 4 -------------------------------------------------------------------------------------------

def test_demo_does_not_replace_another_run(finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    before = tree_digest(out)
    one_line_error(run_cli("demo", "--out", out, "--n", "300", "--anchors", "30", "--quiet"), "already holds a run")
    assert tree_digest(out) == before
    demo = tmp_path / "demo"
    for _ in range(2):  # an earlier demo run is replaced: `gancheck demo` stays repeatable
        assert run_cli("demo", "--out", demo, "--n", "300", "--anchors", "30", "--quiet").returncode == 0


# 5 -------------------------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from gancheck.run.lock import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(planted_onnx, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        one_line_error(run_cli("audit", planted_onnx, "--out", out, *SMALL), "in use", f"pid {holder.pid}", "started")
        assert not out.exists()
    finally:
        holder.kill()  # SIGKILL: the lock's note stays behind, stale
        holder.wait()
    assert (tmp_path / ".run.lock.json").exists()
    assert run_cli("audit", planted_onnx, "--out", out, *SMALL).returncode == 0


# 7 -------------------------------------------------------------------------------------------

def test_a_failed_run_does_not_block_the_corrected_command(tmp_path):
    env = generator_module(tmp_path, "gens", SMOOTH + "\ndef constant(z):\n    return np.zeros((len(z), 3, 16, 16), np.float32)\n")
    out = tmp_path / "run"
    common = ("--latent-shape", "16", "--out", out, *SMALL)
    one_line_error(run_cli("audit", "gens:constant", *common, env=env), "constant")
    assert not out.exists() and not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    assert run_cli("audit", "gens:images", *common, env=env).returncode == 0


# 8 -------------------------------------------------------------------------------------------

BROKEN = SMOOTH + """
def raises(z):
    raise RuntimeError("the model exploded\\nsecond line")
def short(z):
    return images(z)[:-1]
"""


@pytest.mark.parametrize("generator, words", [("gens:raises", ("the model exploded",)), ("gens:short", ("images for a batch of",))])
def test_a_failing_callable_generator_is_one_line(tmp_path, generator, words):
    env = generator_module(tmp_path, "gens", BROKEN)
    one_line_error(run_cli("audit", generator, "--latent-shape", "16", "--out", tmp_path / "run", *SMALL, env=env), *words)


@pytest.mark.parametrize("args, words", [
    (("--n", "1e99"), ("--n",)), (("--n", "inf"), ("--n",)), (("--n", "nan"), ("--n",)),
    (("--theta", "nan"), ("--theta",)), (("--theta", "inf"), ("--theta",)), (("--radius", "nan"), ("--radius",)),
    (("--threads", "0"), ("--threads",)), (("--n", "1", "--nn", "2"), ("--nn",)), (("--n",), ("--n",)),
])
def test_bad_numbers_are_one_line(planted_onnx, tmp_path, args, words):
    out = tmp_path / "run"
    one_line_error(run_cli("audit", planted_onnx, "--out", out, "--quiet", *args), *words)
    assert not out.exists()


def test_bad_counts_of_calibrate_and_sample_are_one_line(planted_onnx, tmp_path):
    one_line_error(run_cli("calibrate", tmp_path / "none", "--method", "gmm", "--clusters", "0"), "--clusters")
    one_line_error(run_cli("sample", planted_onnx, "--n", "4", "--columns", "0", "--out", tmp_path / "g.png"), "--columns")
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("bad", ['[1, 2, 3]', '{"fingerprint": 3, "shards": []}', '{"fingerprint": {}, "shards": {"x": 1}}', "{"])
def test_a_state_file_of_the_wrong_shape_is_damaged_not_a_traceback(tmp_path, bad):
    from gancheck.run.shards import State

    (tmp_path / "state.json").write_text(bad)
    state = State(tmp_path, {"seed": 0})
    assert [w for w in state.load() if "damaged" in w] and state.done == {}


def test_resume_over_a_damaged_state_file_recomputes_the_same_figures(planted_onnx, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    want = json.loads((out / "report.json").read_text())
    (out / "state.json").write_text('{"fingerprint": 3, "shards": []}')
    proc = run_cli("audit", planted_onnx, "--out", out, "--resume", *SMALL)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "damaged" in proc.stderr, proc.stderr
    assert json.loads((out / "report.json").read_text())["mccs"] == want["mccs"]


# 9 -------------------------------------------------------------------------------------------

def test_on_nan_skip_survives_a_nan_in_the_probe_batch(tmp_path):
    env = generator_module(tmp_path, "gens", SMOOTH + "\ndef nan_first(z):\n    x = images(z)\n    x[0] = np.nan\n    return x\n")
    common = ("audit", "gens:nan_first", "--latent-shape", "16", "--out", tmp_path / "run", "--batch-size", "16", *SMALL)
    one_line_error(run_cli(*common, env=env), "nan", "--on-nan skip")
    proc = run_cli(*common, "--on-nan", "skip", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["skipped_nan"] > 0


# 10 ------------------------------------------------------------------------------------------

def write_folder(folder: Path, count: int, mode: str, seed: int = 0) -> Path:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        if mode == "I;16":  # 16-bit grayscale: every value above 8 bits
            im = Image.fromarray(rng.integers(20000, 60000, (16, 16)).astype(np.uint16))
        elif mode == "P":
            im = Image.fromarray(rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)).quantize(16)
        elif mode == "CMYK":
            im = Image.fromarray(rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)).convert("CMYK")
        else:  # RGBA with transparent pixels
            im = Image.fromarray(rng.integers(0, 255, (16, 16, 4)).astype(np.uint8), "RGBA")
        im.save(folder / f"{i:03d}.{'jpg' if mode == 'CMYK' else 'png'}")
    return folder


def test_sixteen_bit_png_is_read_at_full_depth(tmp_path):
    from gancheck.sources.folder import read_rgb

    folder = write_folder(tmp_path / "imgs", 60, "I;16")
    x = read_rgb(next(folder.iterdir()))
    assert 20000 / 65535 - 1e-6 <= x.min() and x.max() <= 60000 / 65535 + 1e-6 and x.std() > 0.05
    proc = run_cli("audit", folder, "--n", "40", "--anchors", "20", "--out", tmp_path / "run", "--quiet", "--json")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("mode", ["P", "CMYK"])
def test_palette_and_cmyk_images_are_converted(tmp_path, mode):
    from PIL import Image

    from gancheck.sources.folder import read_rgb

    folder = write_folder(tmp_path / "imgs", 3, mode)
    for path in folder.iterdir():
        with Image.open(path) as im:
            want = np.asarray(im.convert("RGB"), np.float32) / 255
        assert np.array_equal(read_rgb(path), want)


def test_transparent_images_are_refused_in_one_line(tmp_path):
    folder = write_folder(tmp_path / "imgs", 30, "RGBA")
    one_line_error(run_cli("audit", folder, "--n", "10", "--anchors", "5", "--out", tmp_path / "run", "--quiet"), "transparent")


# 11 ------------------------------------------------------------------------------------------

def test_one_pixel_images_are_inconclusive_and_fail_gates(tmp_path):
    env = generator_module(tmp_path, "gens", SMOOTH + "\ndef tiny(z):\n    return images(z)[:, :, :1, :1]\n")
    common = ("audit", "gens:tiny", "--latent-shape", "16", "--out", tmp_path / "run", "--fail-if", "mccs.mean>0.99", *SMALL)
    proc = run_cli(*common, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "inconclusive" in proc.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["degenerate"]["inconclusive"] and report["degenerate"]["image_side"] == 1
    assert run_cli(*common, "--overwrite", "--allow-inconclusive", env=env).returncode == 0


def test_effective_rank_counts_the_dimensions_the_vectors_span():
    from gancheck.analysis.degenerate import assess, effective_rank

    rng = np.random.default_rng(0)
    assert effective_rank(rng.standard_normal((200, 1)) * rng.standard_normal((1, 64))) == pytest.approx(1.0)
    assert effective_rank(rng.standard_normal((4000, 16))) > 15.5
    assert effective_rank(np.ones((5, 8))) == 0.0
    ok = assess(rng.standard_normal((300, 32)), (64, 64))
    assert not ok["inconclusive"] and ok["reasons"] == []
    copies = assess(np.repeat(rng.standard_normal((2, 32)), 150, axis=0), (64, 64))
    assert copies["inconclusive"] and any("distinct" in r for r in copies["reasons"])


def test_a_one_dimensional_descriptor_is_inconclusive(planted_onnx, tmp_path):
    from gancheck.analysis.degenerate import EFFECTIVE_RANK_FLOOR

    model = descriptor_model(tmp_path / "d.onnx", 1, seed=3)
    proc = run_cli("audit", planted_onnx, "--embedder", f"onnx:{model}", "--out", tmp_path / "run", "--json", *SMALL)
    assert proc.returncode == 0, proc.stderr
    degenerate = json.loads(proc.stdout)["degenerate"]
    assert degenerate["inconclusive"] and degenerate["effective_rank"] < EFFECTIVE_RANK_FLOOR
    ok = run_cli("audit", planted_onnx, "--out", tmp_path / "ok", "--json", *SMALL)
    assert json.loads(ok.stdout)["degenerate"]["inconclusive"] is False


# 12 ------------------------------------------------------------------------------------------

def test_the_collection_is_never_materialised_whole(planted_onnx):
    from gancheck.engine.executors import plan
    from gancheck.sources import load_generator

    indices = load_generator(str(planted_onnx)).collection_indices(10**12)
    parts = plan(indices, 1 << 30)
    assert len(indices) == 10**12 and sys.getsizeof(indices) < 1000 and len(parts) == 932 and parts[-1][-1] == 10**12 - 1


def test_out_of_memory_names_the_sizes_that_matter(tmp_path):
    env = generator_module(tmp_path, "gens", SMOOTH + "\ndef hungry(z):\n    raise MemoryError()\n")
    one_line_error(run_cli("audit", "gens:hungry", "--latent-shape", "16", "--out", tmp_path / "run", *SMALL, env=env),
                   "out of memory", "--n")


# 13 ------------------------------------------------------------------------------------------

SLOW = SMOOTH + """
import time
def slow(z):
    time.sleep(0.05)
    return images(z)
def hangs(z):
    hangs.calls += 1
    if hangs.calls > 1:  # the probe batch answers, every later call hangs
        time.sleep(3600)
    return images(z)
hangs.calls = 0
"""


def test_sigterm_stops_at_a_batch_with_one_line_and_resume_finishes(tmp_path):
    env = dict(os.environ, **generator_module(tmp_path, "gens", SLOW))
    out = tmp_path / "run"
    args = [sys.executable, "-m", "gancheck", "audit", "gens:slow", "--latent-shape", "16", "--out", str(out), "--n", "2000",
            "--anchors", "40", "--shard-size", "200", "--batch-size", "16", "--quiet"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    staging = tmp_path / ".run.partial" / "shards"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(staging.glob("shard-*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "--resume" in lines[0], err
    assert not out.exists()  # nothing unfinished under the final name
    loud = [a for a in args if a != "--quiet"] + ["--resume"]
    resumed = subprocess.run(loud, capture_output=True, text=True, cwd=ROOT, timeout=300, env=dict(env, GANCHECK_PROGRESS_INTERVAL="0"))
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "report.json").is_file()
    # its progress starts at the shards it kept (so its rate and time left count only new images)
    counts = [int(m.replace(",", "")) for m in re.findall(r"collection samples: ([\d,]+) of 2,000", resumed.stderr)]
    assert counts and counts[0] > 400, resumed.stderr


def test_a_hung_generator_stops_resumably_naming_the_stage(tmp_path):
    env = generator_module(tmp_path, "gens", SLOW)
    line = one_line_error(run_cli("audit", "gens:hangs", "--latent-shape", "16", "--out", tmp_path / "run", "--timeout", "1",
                                  "--retries", "1", *SMALL, env=env, timeout=120), "the generator", "hung", "--resume")
    assert "--timeout" in line


def test_onnxruntime_log_lines_do_not_break_the_one_line_promise(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07\x12\x04not a model at all" * 10)
    one_line_error(run_cli("audit", bad, "--out", tmp_path / "run", "--quiet"), "broken.onnx")


def test_a_full_disk_leaves_no_temporary_files_and_no_run(planted_onnx, tmp_path):
    import resource

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "gancheck", "audit", str(planted_onnx), "--out", str(tmp_path / "run"), *SMALL],
                          capture_output=True, text=True, env=env, cwd=ROOT, preexec_fn=small_files, timeout=300)
    one_line_error(proc, "too large")
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [] and not (tmp_path / "run").exists()


def test_report_out_does_not_overwrite_without_asking(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    page = tmp_path / "page.html"
    page.write_text("mine")
    one_line_error(run_cli("report", run, "--out", page, "--quiet"), "already exists", "--overwrite")
    assert page.read_text() == "mine"
    assert run_cli("report", run, "--out", page, "--overwrite", "--quiet").returncode == 0
    assert page.read_text().startswith("<!")


# issue 17 leftovers of issue 11 ----------------------------------------------------------------

def test_ctrl_c_during_the_imports_is_one_line_and_exit_130(tmp_path):
    """SIGINT while `python -m gancheck` is still importing its commands (seen through -X importtime:
    numpy is in, most modules are not): one line, exit status 130, no traceback."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-X", "importtime", "-m", "gancheck", "audit", "x.onnx", "--out", str(tmp_path / "run")]
    whole = subprocess.run(command[:5] + ["--version"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    imports = whole.stderr.count("import time:")
    # SIGINT as a terminal gives it: a test runner started in the background by a shell inherits it
    # ignored, and a child would inherit that too
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("import time:") and line.split("|")[-1].strip() == "numpy":
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=60)[1]
    err = "".join(seen) + rest
    assert err.count("import time:") < imports / 2, "the interrupt came after the imports"  # (aborted imports are listed too)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("import time:")]
    assert proc.returncode == 130, err[-2000:]
    assert lines == ["gancheck: stopped by SIGINT"], lines
    assert not (tmp_path / "run").exists()


def test_a_finished_run_leaves_no_lock_file_beside_it(finished_run, planted_onnx, tmp_path):
    assert sorted(p.name for p in finished_run.parent.iterdir()) == ["run"]
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()  # a killed holder cannot clean up: the next clean run removes its files
    holder.wait()
    assert (tmp_path / ".run.lock").exists()
    assert run_cli("audit", planted_onnx, "--out", out, *SMALL).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


CONTEND = """
import os, sys
from gancheck.errors import GancheckError
from gancheck.run.lock import RunLock
out, marker, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
held = 0
for _ in range(rounds):
    try:
        with RunLock(out):
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if another process is inside too
            os.close(fd)
            os.unlink(marker)
            held += 1
    except GancheckError:
        pass
print(held)
"""


def test_removing_the_lock_file_never_lets_two_writers_in(tmp_path):
    """Four processes take and release the same run lock (which removes its file each time) as fast as
    they can: never two inside at once (an O_EXCL marker would fail), and the lock keeps working."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-c", CONTEND, str(tmp_path / "run"), str(tmp_path / "inside"), "300"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-800:] for _, err in results]
    assert sum(int(out) for out, _ in results) > 0
    assert not (tmp_path / "inside").exists() and not (tmp_path / ".run.lock").exists()


def test_report_html_is_in_the_run_before_it_is_moved_into_place(planted_onnx, tmp_path, monkeypatch):
    """Moving the staging directory into place is the last step: report.html is already there, and a
    crash while drawing it leaves no run (and no half run) under the final name."""
    import gancheck.api as api
    import gancheck.audits as audits
    import gancheck.run.directory as directory

    real_publish, seen = directory.publish, {}

    def publish(work, out):
        seen["files"] = sorted(p.name for p in Path(work).iterdir())
        return real_publish(work, out)

    monkeypatch.setattr(directory, "publish", publish)
    out = tmp_path / "run"
    api.audit(str(planted_onnx), n=400, anchors=40, out=out, shard_size=100)
    assert {"report.html", "report.json", "manifest.json"} <= set(seen["files"])
    page = (out / "report.html").read_text()
    assert f"run directory {out.resolve()}" in page and ".partial" not in page

    def crash(*args, **kwargs):
        raise RuntimeError("the renderer crashed")

    monkeypatch.setattr(audits, "write_html", crash)
    with pytest.raises(RuntimeError):
        api.audit(str(planted_onnx), n=400, anchors=40, out=tmp_path / "other", shard_size=100)
    assert not (tmp_path / "other").exists()


def test_a_lock_taken_on_a_removed_file_is_retaken_on_the_current_one(tmp_path):
    """The race that removing lock files opens: a process locks a file that a finishing holder has just
    removed (and a newcomer recreated). The taker must notice and lock the file the path names now."""
    from gancheck.run.lock import RunLock

    lock = RunLock(tmp_path / "run")
    real_acquire, calls = lock.lock.acquire, []

    def acquire_an_orphan(*args, **kwargs):
        real_acquire(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:  # what the finishing holder and a newcomer did meanwhile
            lock.path.unlink()
            lock.path.touch()

    lock.lock.acquire = acquire_an_orphan
    with lock:
        assert len(calls) == 2 and os.path.samestat(os.stat(lock.path), os.fstat(lock.lock._context.lock_file_fd))
    assert not lock.path.exists()
