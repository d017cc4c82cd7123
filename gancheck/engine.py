"""Streaming evaluation of Eqs. (3), (4), (6) and the neighbour counts N_r over a large collection.

Memory holds the anchors and running sums only; the collection streams through in tiles. Each
tile is screened with one float32 matrix product (numpy BLAS, or a FAISS range search): only
pairs with ``d < max(theta, r)`` can contribute, and in any but a collapsed generator they are
few. Those pairs are recomputed in float64 (arccos amplifies float32 rounding near duplicates,
and an anchor with one faint neighbour has a tiny ``m`` whose relative error would show), so
results match a float64 brute-force reference while costing little more than the bare product.
"""

from __future__ import annotations

import numpy as np

from gancheck.stats import angular_distance, normalise64, similarity

BACKENDS = ("auto", "blas", "faiss")
# float32 dot products of unit vectors err by ~1e-7; screen with this much slack.
_SCREEN_SLACK = 1e-4


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class CollapseAccumulator:
    """Running per-anchor sums of similarity (Eq. 6 numerator) and counts N_r.

    anchors: (m, D) unit vectors of the anchor set A. ``update`` takes collection vectors in
    any batching; ``keep_neighbors`` nearest collection samples (within max(theta, r)) are kept per
    anchor for pictures, and for ``display_anchor`` the nearest ones at any distance.
    """

    def __init__(self, anchors: np.ndarray, theta: float, radius: float, backend: str = "auto", tile: int = 4096,
                 keep_neighbors: int = 80, display_anchor: int | None = 0, checkpoints=(), radial_bins: int = 16):
        self.a32 = np.ascontiguousarray(anchors, dtype=np.float32)
        self.a64 = normalise64(anchors)
        self.theta, self.radius = float(theta), float(radius)
        self.cos_screen = float(np.cos(np.pi * max(theta, radius))) - _SCREEN_SLACK
        if backend == "auto":
            backend = "blas"  # measured faster on CPU: see benchmarks/bench_engine.py
        if backend == "faiss" and not _faiss_available():
            from gancheck.errors import GancheckError

            raise GancheckError("--backend faiss needs the faiss package: pip install faiss-cpu")
        self.backend = backend
        self.tile = int(tile)
        m = len(self.a32)
        self.sim_sum = np.zeros(m, dtype=np.float64)
        self.neighbors = np.zeros(m, dtype=np.int64)
        self.n = 0
        self.k = int(keep_neighbors)
        self.nn_dist = np.full((m, self.k), np.inf)
        self.nn_index = np.full((m, self.k), -1, dtype=np.int64)
        self.display = display_anchor if (display_anchor is not None and m > 0 and self.k > 0) else None
        self.display_dist = np.full(self.k, np.inf)
        self.display_index = np.full(self.k, -1, dtype=np.int64)
        # Neighbour counts at a grid of radii up to the screening cut (for Ripley's K).
        self.radii = np.linspace(0.0, max(theta, radius), radial_bins + 1)[1:]
        self.radial = np.zeros((m, radial_bins), dtype=np.int64)
        # Per-anchor sums after exactly n samples, for convergence against log10 |C| (Fig. 2).
        self.checkpoints = sorted(int(c) for c in checkpoints if c > 0)
        self.snapshots: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._gram = self._mask = None

    def update(self, vectors: np.ndarray, indices: np.ndarray) -> None:
        """Add collection samples: (k, D) unit vectors and their (k,) sample indices."""
        vectors = np.asarray(vectors, dtype=np.float32)
        indices = np.asarray(indices, dtype=np.int64)
        start = 0
        while start < len(vectors):
            # Tiles end at checkpoints, so snapshots never depend on how samples were batched.
            pending = [c for c in self.checkpoints if c > self.n]
            stop = min(len(vectors), start + self.tile, start + (pending[0] - self.n) if pending else len(vectors))
            self._tile(vectors[start:stop], indices[start:stop])
            if pending and self.n == pending[0]:
                self.snapshots.append((self.n, self.sim_sum / self.n, self.neighbors.copy()))
            start = stop

    def _screen(self, c32: np.ndarray):
        """Pairs (row, col) whose float32 cosine passes the screening cut, and the float32 Gram
        tile when the blas backend made one."""
        if self.backend == "faiss":
            import faiss

            index = faiss.IndexFlatIP(c32.shape[1])
            index.add(c32)
            lims, _, cols = index.range_search(self.a32, self.cos_screen)
            rows = np.repeat(np.arange(len(self.a32)), np.diff(lims.astype(np.int64)))
            return rows, cols.astype(np.int64), None
        # Reused buffers: a fresh 100 MB array per tile costs page faults comparable to the product.
        shape = (len(self.a32), len(c32))
        if self._gram is None or self._gram.shape != shape:
            self._gram, self._mask = np.empty(shape, np.float32), np.empty(shape, bool)
        np.matmul(self.a32, c32.T, out=self._gram)
        np.greater(self._gram, self.cos_screen, out=self._mask)
        rows, cols = np.divmod(np.flatnonzero(self._mask), len(c32))
        return rows, cols, self._gram

    def _tile(self, c32: np.ndarray, idx: np.ndarray) -> None:
        c32 = np.ascontiguousarray(c32)
        self.n += len(c32)
        rows, cols, gram = self._screen(c32)
        d = angular_distance(self._exact_cos(rows, cols, c32))
        s = similarity(d, self.theta)
        m = len(self.a32)
        self.sim_sum += np.bincount(rows, weights=s, minlength=m)
        self.neighbors += np.bincount(rows[d <= self.radius], minlength=m)
        nb = len(self.radii)
        ring = np.searchsorted(self.radii, d, side="left")  # d <= radii[j] for every j >= ring
        inside = ring < nb
        self.radial += np.cumsum(np.bincount(rows[inside] * nb + ring[inside], minlength=m * nb).reshape(m, nb), axis=1)
        if self.k:
            self._keep_nearest(rows, d, idx[cols])
            if self.display is not None:
                self._keep_display(c32, idx, gram)

    def _exact_cos(self, rows: np.ndarray, cols: np.ndarray, c32: np.ndarray) -> np.ndarray:
        """Float64 cosines of the given pairs: a dense sub-product when pairs cluster in few
        rows and columns (a collapsed mode), else row-by-row gathers."""
        if len(rows) == 0:
            return np.zeros(0)
        ur, ri = np.unique(rows, return_inverse=True)
        uc, ci = np.unique(cols, return_inverse=True)
        c64 = normalise64(c32[uc])
        if len(ur) * len(uc) <= 16 * len(rows):
            return (self.a64[ur] @ c64.T)[ri, ci]
        return np.einsum("ij,ij->i", self.a64[rows], c64[ci])

    def _keep_nearest(self, rows: np.ndarray, d: np.ndarray, sample: np.ndarray) -> None:
        """Merge this tile's candidates into each anchor's k nearest (ties: lower sample index)."""
        keep = d < self.nn_dist[rows, -1]
        if not keep.any():
            return
        rows, d, sample = rows[keep], d[keep], sample[keep]
        ur, inv = np.unique(rows, return_inverse=True)
        # Rank candidates within each row, then keep the first k of (old k + new) per row.
        order = np.lexsort((sample, d, inv))
        inv, d, sample = inv[order], d[order], sample[order]
        starts = np.searchsorted(inv, np.arange(len(ur)))
        rank = np.arange(len(inv)) - starts[inv]
        take = rank < self.k
        new_d = np.full((len(ur), self.k), np.inf)
        new_i = np.full((len(ur), self.k), -1, dtype=np.int64)
        new_d[inv[take], rank[take]] = d[take]
        new_i[inv[take], rank[take]] = sample[take]
        all_d = np.concatenate([self.nn_dist[ur], new_d], axis=1)
        all_i = np.concatenate([self.nn_index[ur], new_i], axis=1)
        pick = _row_order(all_d, all_i)[:, : self.k]
        self.nn_dist[ur] = np.take_along_axis(all_d, pick, axis=1)
        self.nn_index[ur] = np.take_along_axis(all_i, pick, axis=1)

    def _keep_display(self, c32: np.ndarray, idx: np.ndarray, gram: np.ndarray | None) -> None:
        """The display anchor's k nearest at any distance, for the random-anchor picture (Fig. 4):
        the 2k best by float32 cosine in this tile, measured exactly, merged with the best so far."""
        cos32 = gram[self.display] if gram is not None else c32 @ self.a32[self.display]
        best = np.argpartition(-cos32, 2 * self.k)[: 2 * self.k] if len(cos32) > 2 * self.k else np.arange(len(cos32))
        d = angular_distance(normalise64(c32[best]) @ self.a64[self.display])
        d_all = np.concatenate([self.display_dist, d])
        i_all = np.concatenate([self.display_index, idx[best]])
        pick = np.lexsort((i_all, d_all))[: self.k]
        self.display_dist, self.display_index = d_all[pick], i_all[pick]

    def result(self) -> dict:
        """Per-anchor expected similarity m (Eq. 6) and N_r over everything seen so far."""
        m = self.sim_sum / self.n if self.n else np.zeros_like(self.sim_sum)
        return {"m": m, "neighbors": self.neighbors.copy(), "n": self.n, "radii": self.radii, "radial": self.radial.copy()}


def _row_order(dist: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Per-row argsort by distance, ties by sample index (-1 padding sorts last via inf distance)."""
    key_index = np.where(index < 0, np.iinfo(np.int64).max, index)
    order = np.argsort(key_index, axis=1, kind="stable")
    d_sorted = np.take_along_axis(dist, order, axis=1)
    order2 = np.argsort(d_sorted, axis=1, kind="stable")
    return np.take_along_axis(order, order2, axis=1)
