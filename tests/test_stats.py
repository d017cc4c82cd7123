"""The statistics engine against a float64 brute-force computation of Eqs. 3, 4, 6, 7, 8, 9."""

import numpy as np
import pytest

from gancheck.engine.accumulator import CollapseAccumulator
from gancheck.maths import (angular_distance, brute_force, distinct_modes, mccs, population_stats, similarity,
                            worst_mode)

RTOL = 1e-5


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference(anchors, collection, theta, radius, form="paper"):
    """Eqs. 3-8 written out pair by pair in float64, independent of gancheck.maths."""
    a = np.asarray(anchors, np.float64)
    c = np.asarray(collection, np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    m = np.zeros(len(a))
    nr = np.zeros(len(a), dtype=np.int64)
    for i in range(len(a)):
        d = np.arccos(np.clip(c @ a[i], -1, 1)) / np.pi  # Eq. 4
        s = (np.exp(np.maximum(0, theta - d)) - 1) / (np.exp(theta) - 1)  # Eq. 3
        m[i] = s.mean()  # Eq. 6
        nr[i] = int((d <= radius).sum())
    with np.errstate(divide="ignore"):
        score = np.array([0.0 if v == 0 else (1 / (1 - np.log(v)) if form == "paper" else 1 / -np.log10(v)) for v in m])  # Eq. 7
    return m, score, nr


def engine(anchors, collection, theta, radius, form="paper", tile=4096, backend="blas"):
    acc = CollapseAccumulator(anchors, theta, radius, backend=backend, tile=tile)
    acc.update(collection, np.arange(len(collection)))
    r = acc.result()
    return r["m"], mccs(r["m"], form), r["neighbors"]


def assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


@pytest.mark.parametrize("dim,theta,radius", [(8, 0.3, 0.25), (64, 0.4, 0.3), (128, 0.45, 0.5)])
@pytest.mark.parametrize("backend", ["blas", "faiss"])
def test_engine_matches_float64_reference_on_random_clustered_data(dim, theta, radius, backend):
    rng = np.random.default_rng(dim)
    centres = rng.standard_normal((5, dim))
    collection = unit(centres[rng.integers(0, 5, 3000)] + 0.6 * rng.standard_normal((3000, dim)))
    anchors = unit(centres[rng.integers(0, 5, 200)] + 0.6 * rng.standard_normal((200, dim)))
    m, score, nr = engine(anchors, collection, theta, radius, backend=backend, tile=777)
    m_ref, score_ref, nr_ref = reference(anchors, collection, theta, radius)
    assert (m_ref > 0).mean() > 0.5  # the case exercises real similarities, not zeros
    assert_close(m, m_ref)
    assert_close(score, score_ref)
    np.testing.assert_array_equal(nr, nr_ref)
    mu, sigma = population_stats(score)
    assert mu == pytest.approx(score_ref.mean(), rel=RTOL)
    assert sigma == pytest.approx(score_ref.std(ddof=1), rel=RTOL)  # Eq. 8: divisor m - 1


def test_reference_form_matches_published_code():
    rng = np.random.default_rng(1)
    c = unit(rng.standard_normal((500, 6)))
    a = unit(rng.standard_normal((40, 6)))
    _, score, _ = engine(a, c, 0.3, 0.25, form="reference")
    _, score_ref, _ = reference(a, c, 0.3, 0.25, form="reference")
    assert_close(score, score_ref)


def test_no_neighbour_within_theta_gives_mccs_zero():
    a = unit([[1.0, 0.0, 0.0]])
    c = unit([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    m, score, nr = engine(a, c, 0.3, 0.25)
    assert m[0] == 0.0 and score[0] == 0.0 and nr[0] == 0
    assert mccs(np.array([0.0]), "reference")[0] == 0.0


def test_anchor_identical_to_all_of_collection_gives_mccs_one():
    rng = np.random.default_rng(2)
    v = unit(rng.standard_normal((1, 512)))
    m, score, nr = engine(v, np.repeat(v, 1000, axis=0), 0.25, 0.25)
    assert score[0] == pytest.approx(1.0, rel=RTOL)
    assert m[0] == pytest.approx(1.0, rel=RTOL)
    assert nr[0] == 1000
    assert np.isinf(mccs(np.array([1.0]), "reference")[0])


def test_duplicated_vectors_count_each_copy():
    rng = np.random.default_rng(3)
    c = unit(rng.standard_normal((300, 16)))
    c = np.concatenate([c, c[:50], c[:50]])
    a = c[:20].copy()
    m, score, nr = engine(a, c, 0.35, 0.3, tile=64)
    m_ref, score_ref, nr_ref = reference(a, c, 0.35, 0.3)
    assert_close(m, m_ref)
    assert_close(score, score_ref)
    np.testing.assert_array_equal(nr, nr_ref)
    assert (nr >= 3).all()


# Below theta ~ 1e-3 even float64 is not a reference: arccos near 1 turns a 1e-16 cosine rounding
# into d ~ 1e-8, which moves s by d / theta.
@pytest.mark.parametrize("theta", [0.01, 1.0])
def test_theta_at_its_bounds(theta):
    rng = np.random.default_rng(4)
    c = unit(rng.standard_normal((400, 5)))
    a = np.concatenate([c[:3], unit(rng.standard_normal((10, 5)))])
    m, score, nr = engine(a, c, theta, 0.2)
    m_ref, score_ref, nr_ref = reference(a, c, theta, 0.2)
    assert_close(m, m_ref)
    assert_close(score, score_ref)
    if theta == 1.0:
        assert (m > 0).all()  # every pair closer than the maximal distance contributes


def test_equations_3_and_4_closed_forms():
    assert angular_distance(np.array([1.0, 0.0, -1.0])) == pytest.approx([0.0, 0.5, 1.0])
    assert similarity(np.array([0.0, 0.3, 0.5]), 0.3) == pytest.approx([1.0, 0.0, 0.0])
    assert similarity(np.array([0.1]), 0.3)[0] == pytest.approx((np.exp(0.2) - 1) / (np.exp(0.3) - 1))
    assert mccs(np.array([np.exp(-1.0)]))[0] == pytest.approx(0.5)
    assert mccs(np.array([0.01]), "reference")[0] == pytest.approx(0.5)


def test_results_do_not_depend_on_tile_size():
    rng = np.random.default_rng(5)
    c = unit(rng.standard_normal((2000, 12)))
    a = unit(rng.standard_normal((50, 12)))
    base = engine(a, c, 0.3, 0.25, tile=2000)
    for tile in (1, 7, 256):
        got = engine(a, c, 0.3, 0.25, tile=tile)
        np.testing.assert_allclose(got[0], base[0], rtol=1e-12)
        np.testing.assert_array_equal(got[2], base[2])


def test_worst_mode_is_argmax_of_neighbour_count_and_modes_are_distinct():
    rng = np.random.default_rng(6)
    mode_a, mode_b = unit(rng.standard_normal((2, 32)))
    anchors = unit(np.stack([mode_a, mode_a + 1e-3, mode_b, rng.standard_normal(32)]))
    neighbors = np.array([90, 95, 40, 1])
    scores = np.array([0.5, 0.6, 0.3, 0.1])
    assert worst_mode(neighbors, scores) == 1
    # anchor 0 is the same mode as anchor 1 (within r), so it is not listed again
    assert distinct_modes(anchors, neighbors, scores, radius=0.1, k=3) == [1, 2, 3]
    assert distinct_modes(anchors, neighbors, scores, radius=0.1, k=1) == [1]


def test_brute_force_helper_agrees_with_independent_reference():
    rng = np.random.default_rng(7)
    c = unit(rng.standard_normal((300, 4)))
    a = unit(rng.standard_normal((30, 4)))
    got = brute_force(a, c, 0.3, 0.25)
    m_ref, score_ref, nr_ref = reference(a, c, 0.3, 0.25)
    assert_close(got["m"], m_ref)
    np.testing.assert_array_equal(got["neighbors"], nr_ref)


def test_radial_counts_and_checkpoints_match_brute_force():
    rng = np.random.default_rng(8)
    c = unit(rng.standard_normal((1500, 6)))
    a = unit(rng.standard_normal((40, 6)))
    acc = CollapseAccumulator(a, 0.3, 0.2, tile=97, checkpoints=[100, 1000, 1500])
    for start in range(0, 1500, 50):
        acc.update(c[start : start + 50], np.arange(start, min(start + 50, 1500)))
    acc.finish(1500)
    r = acc.result()
    d = np.arccos(np.clip(a.astype(np.float64) @ c.T.astype(np.float64), -1, 1)) / np.pi
    for j, radius in enumerate(r["radii"]):
        np.testing.assert_array_equal(r["radial"][:, j], (d <= radius + 1e-12).sum(axis=1))
    assert [s[0] for s in acc.part.snapshots] == [100, 1000, 1500]
    for _, n, s, nr in acc.part.snapshots:
        m = s / n
        m_ref, _, nr_ref = reference(a, c[:n], 0.3, 0.2)
        assert_close(m, m_ref)
        np.testing.assert_array_equal(nr, nr_ref)


def test_partials_of_disjoint_shards_merge_to_the_whole():
    rng = np.random.default_rng(9)
    c = unit(rng.standard_normal((1200, 8)))
    c[::7] = c[0]
    a = unit(np.concatenate([c[:5], rng.standard_normal((30, 8))]))
    whole = CollapseAccumulator(a, 0.3, 0.25, tile=128, checkpoints=[300, 700])
    whole.update(c, np.arange(1200))
    total = None
    for lo, hi in ((0, 500), (500, 1000), (1000, 1200)):
        acc = CollapseAccumulator(a, 0.3, 0.25, tile=128, checkpoints=[x for x in (300, 700) if lo < x <= hi])
        acc.update(c[lo:hi], np.arange(lo, hi))
        acc.finish(hi)
        total = acc.part if total is None else (total.merge(acc.part) or total)
    w = whole.part
    assert total.n == w.n
    np.testing.assert_allclose(total.sim_sum, w.sim_sum, rtol=1e-12)  # shards regroup the sum
    np.testing.assert_array_equal(total.neighbors, w.neighbors)
    np.testing.assert_array_equal(total.radial, w.radial)
    np.testing.assert_array_equal(total.nn_index, w.nn_index)
    np.testing.assert_array_equal(total.display_index, w.display_index)
    assert [(i, n) for i, n, _, _ in total.snapshots] == [(i, n) for i, n, _, _ in w.snapshots] == [(300, 300), (700, 700)]
