"""A conditional generator audited class by class: each class is its own run with the same seeds,
the classes are ranked, the one built to collapse most comes first, and gates work per class."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from gancheck.errors import GancheckError
from gancheck.run.sweep import parse_sweep

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from conditional import build_conditional_generator  # noqa: E402

FRACTIONS = (0.02, 0.30, 0.05)  # class 1 collapses onto one image for 30% of its latents


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    return build_conditional_generator(tmp_path_factory.mktemp("cond") / "conditional.onnx", FRACTIONS)


def test_sweep_ranks_the_collapsing_class_first_and_gates_per_class(conditional, tmp_path):
    r = run_cli("audit", conditional, "--sweep", "label=onehot:3", "--n", "800", "--anchors", "48", "--out", tmp_path / "sweep",
                "--fail-if", "max_class.mccs.mean>0.2", "--fail-if", "classes.0.worst_mode.neighbor_fraction>0.5",
                "--fail-if", "flagged>0")
    assert r.returncode == 1, r.stderr  # the per-class gate on the worst class fails, the one on class 0 passes
    table = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert table["ranking"][0] == "1" and table["most_collapsed"] == "1"
    worst = table["classes"]["1"]["worst_mode"]["neighbor_fraction"]
    assert 0.2 < worst < 0.4 and all(table["classes"][c]["worst_mode"]["neighbor_fraction"] < 0.12 for c in "02")
    assert table["max_class"]["mccs"]["mean"] == table["classes"]["1"]["mccs"]["mean"]
    assert [g["failed"] for g in table["gates"]] == [True, False, True]
    # ranks with their intervals, and the one class that really collapses more is flagged
    assert table["classes"]["1"]["rank_ci"] == [1, 1]
    assert all(table["classes"][c]["rank_ci"][0] >= 2 for c in "02")
    assert [f["label"] for f in table["flagged"]] == ["1"] and table["flagged"][0]["q_value"] < 0.05
    page = (tmp_path / "sweep" / "report.html").read_text()
    assert page.count("<img alt='class") == 3 and "class-1/report.html" in page and "rank 95% CI" in page
    assert "flagged (mean MCCS above the other classes' median, Benjamini-Hochberg q < 5.00%): class 1" in r.stdout
    # a class's sub-run is the same audit as the class fixed by hand, with the same seeds
    one = run_cli("audit", conditional, "--input", "label=0,1,0", "--n", "800", "--anchors", "48", "--out", tmp_path / "one", "--quiet")
    assert one.returncode == 0, one.stderr
    alone = json.loads((tmp_path / "one" / "report.json").read_text())
    assert alone["mccs"]["mean"] == table["classes"]["1"]["mccs"]["mean"]


def test_sweep_specs_are_checked():
    assert [v.text for v in parse_sweep("label=onehot:3")[1]] == ["1,0,0", "0,1,0", "0,0,1"]
    assert [v.label for v in parse_sweep("y=values:0,5,7")[1]] == ["0", "5", "7"]
    for bad in ("label", "label=onehot:1", "label=values:3", "label=random:3", "label=onehot:x"):
        with pytest.raises(GancheckError, match="--sweep"):
            parse_sweep(bad)


def test_random_condition_audits_the_class_mixture_reproducibly(conditional, tmp_path):
    runs = []
    for batch in ("64", "37"):
        r = run_cli("audit", conditional, "--input", "label=random:onehot:3", "--n", "1500", "--anchors", "64", "--batch-size", batch,
                    "--out", tmp_path / batch, "--quiet")
        assert r.returncode == 0, r.stderr
        runs.append(json.loads((tmp_path / batch / "report.json").read_text()))
    assert runs[0]["mccs"] == runs[1]["mccs"]  # classes come from (seed, index), not from the batching
    share = runs[0]["worst_mode"]["neighbor_fraction"]
    assert 0.06 < share < 0.14  # class 1's planted image: 30% of a third of the samples
    manifest = json.loads((tmp_path / "64" / "manifest.json").read_text())
    assert '"random": "onehot"' in json.dumps(manifest)


def test_per_sample_classes_are_uniform_and_fixed_by_seed_and_index():
    from gancheck.sources.conditions import RandomCondition, class_of

    idx = np.arange(30000)
    k = class_of(0, idx, 3)
    assert np.array_equal(k[1000:2000], class_of(0, idx[1000:2000], 3)) and not np.array_equal(k, class_of(1, idx, 3))
    assert np.allclose(np.bincount(k) / len(k), 1 / 3, atol=0.01)
    x = RandomCondition.parse("label", "random:onehot:3").draw(0, idx[:5], np.float32, [None, 3])
    assert x.shape == (5, 3) and np.array_equal(x.argmax(1), k[:5])
    with pytest.raises(GancheckError, match="random:onehot:K"):
        RandomCondition.parse("label", "random:onehot:1")
