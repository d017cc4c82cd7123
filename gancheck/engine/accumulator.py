"""Streaming evaluation of Eqs. (3), (4), (6) and the neighbour counts N_r over a large collection.

Memory holds the anchors and running sums only; the collection streams through in tiles. Each
tile is screened with one float32 matrix product (numpy BLAS, or a FAISS range search): only
pairs with ``d < max(theta, r)`` can contribute, and in any but a collapsed generator they are
few. Those pairs are recomputed in float64 (arccos amplifies float32 rounding near duplicates,
and an anchor with one faint neighbour has a tiny ``m`` whose relative error would show), so
results match a float64 brute-force reference while costing little more than the bare product.

Sums over disjoint parts of the collection are :class:`Partial` objects that merge exactly, so a
run can be cut into shards that are checkpointed, resumed or computed on other machines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gancheck.maths import angular_distance, expected_similarity, normalise64, similarity

BACKENDS = ("auto", "blas", "faiss")
# float32 dot products of unit vectors err by ~1e-7; screen with this much slack.
_SCREEN_SLACK = 1e-4
#: Bytes of the (pairs, D) float64 arrays one block of a tile's screened pairs may gather. Unblocked,
#: every pair of a tile was measured at once: on a collapsing generator a tile holds 1e5 pairs and
#: more, so the peak RSS of a 4e4-sample audit (DCGAN, pixel embedder) rose to 1.42 GB over a
#: steady 0.27 GB, higher the more tiles a run had; blocked, 0.57 GB (benchmarks/bench_scale.py).
PAIR_BLOCK_BYTES = 32 << 20


@dataclass
class Partial:
    """Per-anchor sums over some collection samples (m anchors, k kept neighbours, R radii).

    snapshots: ``(index, n, sim_sum, neighbors)`` taken when every sample with a lower index
    (within this part) had been added: the statistics at collection size ``n`` (Fig. 2).
    """

    n: int
    sim_sum: np.ndarray  # (m,) float64: sum of Eq. 3 similarities
    neighbors: np.ndarray  # (m,) int64: N_r
    radial: np.ndarray  # (m, R) int64: N at each radius of the grid
    nn_dist: np.ndarray  # (m, k) float64, nearest first, inf where fewer than k
    nn_index: np.ndarray  # (m, k) int64 sample indices, -1 where fewer than k
    display_dist: np.ndarray  # (k,) the display anchor's nearest at any distance
    display_index: np.ndarray  # (k,)
    snapshots: list = field(default_factory=list)

    @classmethod
    def zeros(cls, m: int, k: int, r: int) -> "Partial":
        return cls(0, np.zeros(m), np.zeros(m, np.int64), np.zeros((m, r), np.int64), np.full((m, k), np.inf),
                   np.full((m, k), -1, np.int64), np.full(k, np.inf), np.full(k, -1, np.int64))

    def merge(self, other: "Partial") -> None:
        """Add ``other`` (samples after all of this part's, in index order) in place."""
        for index, n, s, nb in other.snapshots:
            self.snapshots.append((index, self.n + n, self.sim_sum + s, self.neighbors + nb))
        self.n += other.n
        self.sim_sum += other.sim_sum
        self.neighbors += other.neighbors
        self.radial += other.radial
        self.nn_dist, self.nn_index = merge_nearest(self.nn_dist, self.nn_index, other.nn_dist, other.nn_index)
        d, i = merge_nearest(self.display_dist[None], self.display_index[None], other.display_dist[None], other.display_index[None])
        self.display_dist, self.display_index = d[0], i[0]


def merge_nearest(dist_a, index_a, dist_b, index_b):
    """Row-wise k nearest of two (rows, k) lists, by distance then sample index."""
    k = dist_a.shape[1]
    dist = np.concatenate([dist_a, dist_b], axis=1)
    index = np.concatenate([index_a, index_b], axis=1)
    key_index = np.where(index < 0, np.iinfo(np.int64).max, index)
    order = np.argsort(key_index, axis=1, kind="stable")
    order = np.take_along_axis(order, np.argsort(np.take_along_axis(dist, order, axis=1), axis=1, kind="stable"), axis=1)[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(index, order, axis=1)


def radial_grid(theta: float, radius: float, bins: int) -> np.ndarray:
    """Radii at which neighbours are counted (Ripley's K): ``bins`` steps up to max(theta, r)."""
    return np.linspace(0.0, max(theta, radius), bins + 1)[1:]


def _faiss_gpus() -> int:
    try:
        import faiss
    except ImportError:
        return 0
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


class CollapseAccumulator:
    """Accumulates a :class:`Partial` from collection vectors given in any batching.

    anchors: (m, D) unit vectors of the anchor set A. ``keep_neighbors`` nearest collection samples
    (within max(theta, r)) are kept per anchor for pictures, and for ``display_anchor`` the nearest
    at any distance. ``checkpoints`` are sample indices at which to snapshot the sums.
    """

    def __init__(self, anchors: np.ndarray, theta: float, radius: float, backend: str = "auto", tile: int = 4096,
                 keep_neighbors: int = 80, display_anchor: int | None = 0, checkpoints=(), radial_bins: int = 16):
        self.a32 = np.ascontiguousarray(anchors, dtype=np.float32)
        self.a64 = normalise64(anchors)
        self.theta, self.radius = float(theta), float(radius)
        self.cos_screen = float(np.cos(np.pi * max(theta, radius))) - _SCREEN_SLACK
        if backend not in BACKENDS:
            from gancheck.errors import GancheckError

            raise GancheckError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        # On CPU blas measured faster than faiss range search (benchmarks/bench_engine.py); with a
        # faiss GPU build the screening product runs on the GPU.
        self.gpu = backend in ("auto", "faiss") and _faiss_gpus() > 0
        self.backend = "faiss" if self.gpu else ("blas" if backend == "auto" else backend)
        self.tile = int(tile)
        self.k = int(keep_neighbors)
        m = len(self.a32)
        self.display = display_anchor if (display_anchor is not None and m > 0 and self.k > 0) else None
        # Neighbour counts at a grid of radii up to the screening cut (for Ripley's K).
        self.radii = radial_grid(theta, radius, radial_bins)
        self.checkpoints = np.array(sorted(int(c) for c in checkpoints), dtype=np.int64)
        self.part = Partial.zeros(m, self.k, radial_bins)
        self._cp = 0  # checkpoints before this position are taken
        self._gram = self._mask = None

    def update(self, vectors: np.ndarray, indices: np.ndarray) -> None:
        """Add collection samples: (k, D) unit vectors and their (k,) ascending sample indices."""
        vectors = np.asarray(vectors, dtype=np.float32)
        indices = np.asarray(indices, dtype=np.int64)
        pos = 0
        while pos < len(indices):
            self.finish(int(indices[pos]))
            # Stop at the next checkpoint, so snapshots never depend on how samples were batched.
            end = len(indices)
            if self._cp < len(self.checkpoints):
                end = int(np.searchsorted(indices, self.checkpoints[self._cp]))
            for start in range(pos, end, self.tile):
                stop = min(start + self.tile, end)
                self._tile(vectors[start:stop], indices[start:stop])
            pos = end

    def finish(self, index: int) -> None:
        """Snapshot every checkpoint up to ``index``: all samples below it have been added."""
        while self._cp < len(self.checkpoints) and self.checkpoints[self._cp] <= index:
            p = self.part
            p.snapshots.append((int(self.checkpoints[self._cp]), p.n, p.sim_sum.copy(), p.neighbors.copy()))
            self._cp += 1

    def _screen(self, c32: np.ndarray):
        """Pairs (row, col) whose float32 cosine passes the screening cut, and the float32 Gram
        tile when the blas backend made one."""
        if self.backend == "faiss":
            import faiss

            index = faiss.IndexFlatIP(c32.shape[1])
            index.add(c32)
            if self.gpu:  # GPU faiss has no range search: k-NN on the GPU, CPU fallback for crowded rows
                from faiss.contrib.exhaustive_search import range_search_gpu

                lims, _, cols = range_search_gpu(self.a32, self.cos_screen, faiss.index_cpu_to_all_gpus(index), c32)
            else:
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
        self.part.n += len(c32)
        rows, cols, gram = self._screen(c32)
        block = max(1024, PAIR_BLOCK_BYTES // (16 * c32.shape[1]))
        for start in range(0, len(rows), block):  # in screening order: each anchor's terms stay in sample order
            self._pairs(rows[start : start + block], cols[start : start + block], c32, idx)
        if self.k and self.display is not None:
            self._keep_display(c32, idx, gram)

    def _pairs(self, rows: np.ndarray, cols: np.ndarray, c32: np.ndarray, idx: np.ndarray) -> None:
        """Add one block of a tile's screened pairs to the sums."""
        p = self.part
        d = angular_distance(self._exact_cos(rows, cols, c32))
        m = len(self.a32)
        # add.at sums each anchor's terms one by one in sample order: no dependence on tiling or blocks.
        np.add.at(p.sim_sum, rows, similarity(d, self.theta))
        p.neighbors += np.bincount(rows[d <= self.radius], minlength=m)
        nb = len(self.radii)
        ring = np.searchsorted(self.radii, d, side="left")  # d <= radii[j] for every j >= ring
        inside = ring < nb
        p.radial += np.cumsum(np.bincount(rows[inside] * nb + ring[inside], minlength=m * nb).reshape(m, nb), axis=1)
        if self.k:
            self._keep_nearest(rows, d, idx[cols])

    def _exact_cos(self, rows: np.ndarray, cols: np.ndarray, c32: np.ndarray) -> np.ndarray:
        """Float64 cosines of the given pairs, each an independent dot product: the same value
        whatever the tiling, so results are bitwise independent of batch and chunk sizes."""
        uc, ci = np.unique(cols, return_inverse=True)
        return np.einsum("ij,ij->i", self.a64[rows], normalise64(c32[uc])[ci])

    def _keep_nearest(self, rows: np.ndarray, d: np.ndarray, sample: np.ndarray) -> None:
        """Merge this tile's candidates into each anchor's k nearest."""
        p = self.part
        keep = d < p.nn_dist[rows, -1]
        if not keep.any():
            return
        rows, d, sample = rows[keep], d[keep], sample[keep]
        ur, inv = np.unique(rows, return_inverse=True)
        # Rank candidates within each row, keep each row's first k, then merge with the old k.
        order = np.lexsort((sample, d, inv))
        inv, d, sample = inv[order], d[order], sample[order]
        rank = np.arange(len(inv)) - np.searchsorted(inv, np.arange(len(ur)))[inv]
        take = rank < self.k
        new_d = np.full((len(ur), self.k), np.inf)
        new_i = np.full((len(ur), self.k), -1, dtype=np.int64)
        new_d[inv[take], rank[take]] = d[take]
        new_i[inv[take], rank[take]] = sample[take]
        p.nn_dist[ur], p.nn_index[ur] = merge_nearest(p.nn_dist[ur], p.nn_index[ur], new_d, new_i)

    def _keep_display(self, c32: np.ndarray, idx: np.ndarray, gram: np.ndarray | None) -> None:
        """The display anchor's k nearest at any distance, for the random-anchor picture (Fig. 4):
        the 2k best by float32 cosine in this tile, measured exactly, merged with the best so far."""
        p = self.part
        cos32 = gram[self.display] if gram is not None else c32 @ self.a32[self.display]
        best = np.argpartition(-cos32, 2 * self.k)[: 2 * self.k] if len(cos32) > 2 * self.k else np.arange(len(cos32))
        d = angular_distance(normalise64(c32[best]) @ self.a64[self.display])
        dist, index = merge_nearest(p.display_dist[None], p.display_index[None], d[None], idx[best][None])
        p.display_dist, p.display_index = dist[0], index[0]

    def result(self) -> dict:
        """Per-anchor expected similarity m (Eq. 6) and N_r over everything seen so far."""
        p = self.part
        m = expected_similarity(p.sim_sum, p.n)
        return {"m": m, "neighbors": p.neighbors.copy(), "n": p.n, "radii": self.radii, "radial": p.radial.copy()}
