"""Nearest-neighbour search over embeddings, one API from 100 vectors to millions: exact or FAISS approximate.

Every caller that needs "the k most similar embeddings" (near-duplicate and redundancy analysis, data cleaning,
1:N identification past memory: :meth:`NeighborIndex.rank_k_accuracy`) goes through :class:`NeighborIndex`. Similarity is cosine (vectors are
L2-normalised here), higher = more similar, as everywhere in :mod:`hf_facerec.evaluation`.

Methods:

* ``"exact"``: brute-force inner product. FAISS's ``IndexFlatIP`` when ``faiss`` is installed, else the package's
  chunked numpy search (:func:`~hf_facerec.evaluation.identification.top_k`): same neighbours either way.
* ``"ivf"``: FAISS ``IndexIVFFlat`` (k-means coarse quantiser, ``nlist`` ~ 4 sqrt(N) cells, ``nprobe`` searched).
  Approximate; memory = the vectors themselves.
* ``"hnsw"``: FAISS ``IndexHNSWFlat`` (graph, ``M`` links per node). Approximate; faster queries than IVF at high
  recall, slower to build and ~M*8 more bytes per vector.
* ``"auto"``: exact below ``exact_below`` vectors (default 100,000: an all-pairs exact search of 100K 512-d vectors
  is ~5e12 multiply-adds, about a minute on 2 cores, and grows with N^2), IVF above it.

faiss is optional (the ``research`` extra) and imported only when an index is built with it.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import _as_embeddings, _l2_normalize, _positive_int

__all__ = ["EXACT_BELOW", "METHODS", "NeighborIndex", "duplicate_clusters", "near_duplicate_pairs"]

METHODS = ("auto", "exact", "ivf", "hnsw")
#: Default size from which ``method="auto"`` switches from exact to IVF search (see the module docstring).
EXACT_BELOW = 100_000


def _faiss(required: bool):
    try:
        import faiss
    except ImportError:
        if required:
            raise ImportError("approximate search needs faiss: pip install 'hf_facerec[research]' (faiss-cpu)") from None
        return None
    return faiss


class NeighborIndex:
    """A searchable set of N embeddings.

    Args:
        vectors: (N, D) embeddings (any scale: they are L2-normalised; zero or non-finite rows are refused).
        method: one of :data:`METHODS`.
        exact_below: ``"auto"`` uses exact search below this many vectors.
        nlist: IVF cells (default ``round(4 * sqrt(N))``, at most N // 39 so k-means has 39 points per cell).
        nprobe: IVF cells searched per query (recall vs speed).
        hnsw_m / ef_search: HNSW links per node / search breadth.
        seed: k-means seed of the IVF quantiser (results are reproducible).
    """

    def __init__(self, vectors, method: str = "auto", exact_below: int = EXACT_BELOW, nlist: int | None = None,
                 nprobe: int = 16, hnsw_m: int = 32, ef_search: int = 128, seed: int = 0):
        if method not in METHODS:
            raise ValueError(f"unknown search method {method!r}; choose one of {', '.join(METHODS)}")
        unit = _l2_normalize(_as_embeddings(vectors, "vectors"), "vectors").astype(np.float32, copy=False)
        self.size, self.dim = unit.shape
        if method == "auto":
            method = "exact" if self.size < _positive_int(exact_below, "exact_below") else "ivf"
        self.method = method
        faiss = _faiss(required=method != "exact")
        self._vectors = None
        if faiss is None:  # exact search in numpy
            self._index = None
            self._vectors = unit
            return
        unit = np.ascontiguousarray(unit)
        if method == "exact":
            index = faiss.IndexFlatIP(self.dim)
        elif method == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, _positive_int(hnsw_m, "hnsw_m"), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = _positive_int(ef_search, "ef_search")
        else:
            cells = nlist if nlist is not None else round(4 * math.sqrt(self.size))
            cells = max(1, min(_positive_int(cells, "nlist"), self.size // 39 or 1))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, cells, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.train(unit)
            index.nprobe = min(_positive_int(nprobe, "nprobe"), cells)
        index.add(unit)
        self._index = index

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar indexed vectors of each query.

        Args:
            queries: (Q, D) embeddings. k: neighbours per query (capped at N).
        Returns:
            ``(scores (Q, k) float32 cosine, indices (Q, k) int64)``, best first. An approximate index may return
            fewer than k hits for a query: the missing slots have index -1 and score -inf.
        """
        q = _l2_normalize(_as_embeddings(queries, "queries"), "queries").astype(np.float32, copy=False)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, the index {self.dim}")
        k = min(_positive_int(k, "k"), self.size)
        if self._index is None:
            from .identification import top_k

            return top_k(q, self._vectors, k=k)
        scores, indices = self._index.search(np.ascontiguousarray(q), k)
        scores[indices < 0] = -np.inf
        return scores, indices.astype(np.int64, copy=False)

    def rank_k_accuracy(self, probe, probe_labels, gallery_labels, ks=(1, 5)) -> dict[int, float]:
        """Closed-set identification over this index as the gallery, for galleries past memory or FAISS speed:
        ``{k: fraction of mated probes whose rank <= k}``, the rank rule of
        :func:`~hf_facerec.evaluation.identification.rank_k_accuracy` (1 + non-mated entries scoring >= the best
        mate; the same figures as that exact search whenever the index returns the true top max(ks)).

        Args:
            probe: (P, D). probe_labels: (P,). gallery_labels: (N,) labels of the indexed vectors. ks: ranks >= 1.
        """
        ks = sorted({_positive_int(k, "ks") for k in ks})
        gallery_labels, probe_labels = np.asarray(gallery_labels), np.asarray(probe_labels)
        if gallery_labels.shape != (self.size,):
            raise ValueError(f"gallery_labels must have shape ({self.size},), got {gallery_labels.shape}")
        scores, indices = self.search(probe, ks[-1])
        if probe_labels.shape != (len(scores),):
            raise ValueError(f"probe_labels must have shape ({len(scores)},), got {probe_labels.shape}")
        mated = np.isin(probe_labels, gallery_labels)
        if not mated.any():
            raise ValueError("no probe label occurs in gallery_labels: rank-k needs mated probes")
        is_mate = (indices >= 0) & (gallery_labels[np.maximum(indices, 0)] == probe_labels[:, None])
        found = is_mate.any(axis=1)
        best = np.where(found, np.where(is_mate, scores, -np.inf).max(axis=1), np.inf)
        rank = np.where(found, ((scores >= best[:, None]) & ~is_mate & (indices >= 0)).sum(axis=1) + 1, ks[-1] + 1)
        return {k: float((rank[mated] <= k).mean()) for k in ks}

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"NeighborIndex(size={self.size}, dim={self.dim}, method={self.method!r})"


def near_duplicate_pairs(embeddings, threshold: float, k: int = 10, index: NeighborIndex | None = None,
                         **index_options) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of embeddings whose cosine similarity is at least ``threshold``.

    Each vector's ``k`` nearest neighbours are searched (itself excluded), so a vector with more than ``k``
    near-copies keeps only its ``k`` most similar (the clusters of :func:`duplicate_clusters` still join them all
    through their neighbours).

    Args:
        embeddings: (N, D). threshold: cosine in [-1, 1]. k: neighbours searched per vector.
        index: a :class:`NeighborIndex` built on ``embeddings`` (else one is built with ``index_options``).
    Returns:
        ``(pairs (M, 2) int64 with i < j, scores (M,) float32)``, sorted by decreasing score, each pair once.
    """
    threshold = float(threshold)
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a cosine in [-1, 1], got {threshold}")
    index = index if index is not None else NeighborIndex(embeddings, **index_options)
    k = min(_positive_int(k, "k") + 1, index.size)  # +1: each vector finds itself
    scores, neighbours = index.search(embeddings, k)
    rows = np.broadcast_to(np.arange(index.size)[:, None], neighbours.shape)
    keep = (neighbours >= 0) & (neighbours != rows) & (scores >= threshold)
    i, j, s = rows[keep], neighbours[keep], scores[keep]
    pairs = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)
    if len(pairs) == 0:
        return np.empty((0, 2), np.int64), np.empty(0, np.float32)
    pairs, first = np.unique(pairs, axis=0, return_index=True)  # a pair found from both ends counts once
    s = s[first]
    order = np.argsort(-s, kind="stable")
    return pairs[order], s[order].astype(np.float32, copy=False)


def duplicate_clusters(n: int, pairs) -> np.ndarray:
    """Connected components of the duplicate graph (union-find, path halving).

    Args:
        n: number of items. pairs: (M, 2) index pairs (from :func:`near_duplicate_pairs`).
    Returns:
        (n,) int64 cluster id per item: the smallest member index of its cluster (a singleton is its own id).
    """
    n = _positive_int(n, "n")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
        raise ValueError(f"pair indices must lie in [0, {n})")
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the smaller index is the root, so ids are order-independent
    return np.array([root(x) for x in range(n)], dtype=np.int64)
