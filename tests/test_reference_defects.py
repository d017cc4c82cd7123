"""Three defects of the authors' published code (VITA-Group/BlackBoxGANCollapse) that gancheck must
never share, each pinned against the float64 brute-force reference (SPEC section 2)."""

import numpy as np
import pytest

from gancheck.engine.accumulator import CollapseAccumulator
from gancheck.maths import brute_force

THETA, RADIUS = 0.3, 0.25


def accumulate(anchors, collection, tile):
    acc = CollapseAccumulator(anchors, THETA, RADIUS, tile=tile, keep_neighbors=0)
    acc.update(collection, np.arange(len(collection)))
    return acc.result()


def unit32(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_duplicates_are_counted_although_their_float32_cosine_exceeds_one():
    rng = np.random.default_rng(0)
    anchors = unit32(rng.normal(size=(64, 128)))
    collection = np.concatenate([np.repeat(anchors, 10, axis=0), unit32(rng.normal(size=(500, 128)))])
    cos32 = (anchors @ anchors.T).diagonal()
    assert (cos32 > 1).any(), "the premise: some float32 self-cosines round above 1"
    with np.errstate(invalid="ignore"):
        unclipped = np.arccos(cos32) / np.pi
    assert np.isnan(unclipped).any()  # the published code's arccos drops these pairs from its counts
    got = accumulate(anchors, collection, tile=128)
    ref = brute_force(anchors, collection, THETA, RADIUS)
    assert (got["neighbors"] >= 10).all()
    np.testing.assert_array_equal(got["neighbors"], ref["neighbors"])


def test_no_pair_is_dropped_on_block_diagonals():
    # Sample j of every block lies next to anchor j: a diagonal filled in each block would drop all of them.
    rng = np.random.default_rng(1)
    anchors = unit32(rng.normal(size=(32, 64)))
    blocks = [unit32(anchors + rng.normal(scale=0.05, size=anchors.shape)) for _ in range(4)]
    collection = np.concatenate(blocks)
    got = accumulate(anchors, collection, tile=32)
    ref = brute_force(anchors, collection, THETA, RADIUS)
    assert (ref["neighbors"] >= 4).all()
    np.testing.assert_array_equal(got["neighbors"], ref["neighbors"])
    np.testing.assert_allclose(got["m"], ref["m"], rtol=1e-12, atol=0)


def test_expected_similarity_divides_by_the_samples_seen_on_a_ragged_last_block():
    rng = np.random.default_rng(2)
    anchors = unit32(rng.normal(size=(16, 8)))
    collection = unit32(np.concatenate([anchors + rng.normal(scale=0.2, size=anchors.shape) for _ in range(3)])[:41])
    got = accumulate(anchors, collection, tile=16)  # blocks of 16, 16 and 9
    ref = brute_force(anchors, collection, THETA, RADIUS)
    assert got["n"] == 41
    np.testing.assert_allclose(got["m"], ref["m"], rtol=1e-12, atol=0)
    wrong = got["m"] * 41 / (3 * 16)  # the N * M divisor of the published code
    assert not np.allclose(wrong, ref["m"], rtol=1e-3)


def test_reference_protocol_draws_anchors_from_c_and_counts_each_anchor_itself():
    from gancheck.api import audit
    from gancheck.inputs import build_inputs
    from gancheck.sources.planted import DEMO_MODEL

    n, anchors = 600, 50
    report = audit(str(DEMO_MODEL), n=n, anchors=anchors, seed=3, protocol="reference", mccs_form="reference", top_k=1)
    source, embedder = build_inputs(str(DEMO_MODEL))
    source.prepare(3)
    vectors = embedder.embed(source.images(np.arange(n)))[0]
    ref = brute_force(vectors[:anchors], vectors, report["theta"], report["radius"], form="reference")
    assert report["protocol"] == "reference"
    # arccos amplifies the rounding of a self-pair's cosine (1 +- 1e-16 -> d ~ 1e-8): float64 agrees to ~1e-9
    assert report["mccs"]["mean_raw"] == pytest.approx(ref["mean"], rel=1e-8)  # Eq. 8 on this collection
    assert report["mccs"]["min"] > 0  # m >= 1/n: every anchor finds itself in C
    independent = audit(str(DEMO_MODEL), n=n, anchors=anchors, seed=3, mccs_form="reference", top_k=1)
    assert independent["mccs"]["mean_raw"] < report["mccs"]["mean_raw"]  # the self-pair inflates the reference protocol
