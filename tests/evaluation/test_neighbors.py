"""NeighborIndex and near-duplicate search: exact FAISS == numpy, approximate recall, planted duplicates, clusters."""

import numpy as np
import pytest

from hf_facerec.evaluation import neighbors
from hf_facerec.evaluation.neighbors import NeighborIndex, duplicate_clusters, near_duplicate_pairs


def _unit(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_hand_computed():
    base = np.array([[1, 0], [0, 1], [-1, 0], [3, 3]], np.float32)  # row 3 is (1, 1)/sqrt(2) once normalised
    scores, idx = NeighborIndex(base, method="exact").search(np.array([[2.0, 0.0]]), k=3)
    np.testing.assert_array_equal(idx, [[0, 3, 1]])
    np.testing.assert_allclose(scores, [[1.0, np.sqrt(0.5), 0.0]], atol=1e-6)


def test_faiss_exact_equals_numpy_top_k(monkeypatch):
    base, queries = _unit(500, 32, 1), _unit(40, 32, 2)
    with_faiss = NeighborIndex(base, method="exact").search(queries, k=7)
    monkeypatch.setattr(neighbors, "_faiss", lambda required: None)
    numpy_only = NeighborIndex(base, method="exact")
    assert numpy_only._index is None
    without = numpy_only.search(queries, k=7)
    np.testing.assert_array_equal(with_faiss[1], without[1])
    np.testing.assert_allclose(with_faiss[0], without[0], atol=1e-5)


@pytest.mark.parametrize("method", ["ivf", "hnsw"])
def test_approximate_indexes_find_the_exact_top_k(method):
    # clustered like face embeddings (100 identities x 40 images), the data IVF's coarse cells are made for
    centers = np.repeat(_unit(100, 32, 3), 40, axis=0)
    base = centers + 0.15 * _unit(4000, 32, 4)
    queries = base[::20] + 0.05 * _unit(200, 32, 5)
    exact = NeighborIndex(base, method="exact").search(queries, k=5)[1]
    approx = NeighborIndex(base, method=method).search(queries, k=5)[1]
    recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx, exact)])
    assert recall > 0.9
    assert (approx[:, 0] == exact[:, 0]).mean() > 0.95


def test_auto_switches_at_the_size():
    base = _unit(200, 16)
    assert NeighborIndex(base).method == "exact"
    assert NeighborIndex(base, exact_below=100).method == "ivf"


def test_planted_duplicates_found_and_none_among_distinct():
    rng = np.random.default_rng(5)
    distinct = _unit(300, 64, 6)  # random 64-d unit vectors: cosines ~ N(0, 1/8), never near 0.9
    copies = distinct[[3, 3, 10, 42]] + 0.02 * rng.standard_normal((4, 64)).astype(np.float32)
    x = np.concatenate([distinct, copies])
    pairs, scores = near_duplicate_pairs(x, threshold=0.9, k=5)
    found = {tuple(p) for p in pairs}
    assert {(3, 300), (3, 301), (300, 301), (10, 302), (42, 303)} == found
    assert np.all(scores >= 0.9) and np.all(np.diff(scores) <= 0)
    labels = duplicate_clusters(len(x), pairs)
    assert labels[300] == labels[301] == labels[3] == 3 and labels[302] == 10 and labels[303] == 42
    assert len(np.unique(labels)) == 300
    assert len(near_duplicate_pairs(distinct, threshold=0.9)[0]) == 0


def test_duplicate_clusters_chain_and_bad_indices():
    np.testing.assert_array_equal(duplicate_clusters(6, [[4, 5], [1, 4], [2, 3]]), [0, 1, 2, 2, 1, 1])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        duplicate_clusters(3, [[0, 3]])


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown search method"):
        NeighborIndex(_unit(5, 4), method="kd-tree")
    with pytest.raises(ValueError, match="vectors"):
        NeighborIndex(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="dimension"):
        NeighborIndex(_unit(5, 4)).search(_unit(2, 3), k=1)
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate_pairs(_unit(5, 4), threshold=1.5)


@pytest.mark.parametrize("method", ["exact", "hnsw", "ivf"])
def test_rank_k_over_the_index_equals_exact_identification(method):
    from hf_facerec.evaluation.identification import rank_k_accuracy

    rng = np.random.default_rng(5)
    centres = rng.standard_normal((60, 32))
    gallery_labels = np.repeat(np.arange(50), 3)  # identities 50-59 are never in the gallery: non-mated probes
    gallery = centres[gallery_labels] + 1.2 * rng.standard_normal((150, 32))
    probe_labels = rng.integers(0, 60, 200)
    probe = centres[probe_labels] + 1.2 * rng.standard_normal((200, 32))
    options = {"nlist": 3, "nprobe": 3} if method == "ivf" else {}
    index = NeighborIndex(gallery, method=method, **options)
    expected = rank_k_accuracy(probe, probe_labels, gallery, gallery_labels, ks=(1, 5, 10))
    assert index.rank_k_accuracy(probe, probe_labels, gallery_labels, ks=(1, 5, 10)) == pytest.approx(expected)
    assert 0.2 < expected[1] < expected[10] < 1.0  # neither trivial nor saturated
    with pytest.raises(ValueError, match="gallery_labels"):
        index.rank_k_accuracy(probe, probe_labels, gallery_labels[:5])
