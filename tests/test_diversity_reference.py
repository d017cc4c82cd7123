"""gancheck's streaming PRDC and Vendi score equal the reference packages (`prdc`, `vendi-score`)
on data small enough for those: the own code is kept for scale (tiled, O(tile x n) memory)."""

import numpy as np
import pytest

from gancheck.analysis import diversity

prdc_package = pytest.importorskip("prdc", reason="the reference needs: pip install prdc")
vendi_package = pytest.importorskip("vendi_score.vendi", reason="the reference needs: pip install vendi-score")


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prdc_equals_the_reference_package(seed):
    rng = np.random.default_rng(seed)
    real = unit(rng.normal(size=(300, 16)))
    fake = unit(rng.normal(size=(250, 16)) + np.r_[1.5, np.zeros(15)] * (seed > 0))
    ours = diversity.prdc(real, fake, k=5)
    # On unit vectors the angular distance (Eq. 4) orders pairs as the package's Euclidean
    # distance does, so the k-NN balls hold the same points and the figures are equal.
    theirs = prdc_package.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key


@pytest.mark.parametrize("seed", [0, 1])
def test_vendi_score_equals_the_reference_package(seed):
    rng = np.random.default_rng(seed)
    x = unit(rng.normal(size=(200, 24)) + rng.normal(size=(1, 24)) * 2)
    assert diversity.vendi_score(x) == pytest.approx(vendi_package.score_dual(x, normalize=True), rel=1e-9)
