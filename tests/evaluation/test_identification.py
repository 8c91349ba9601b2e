"""1:N identification core: brute-force references (full argsort) and hand examples."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from hf_facerec.evaluation import identification as I


def _normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _open_set(seed: int, n_ids=40, per_id=2, n_mated=60, n_non_mated=50, dim=16):
    """Gallery with several entries per identity, noisy mated probes and unknown-identity probes."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_ids + n_non_mated, dim))
    gallery_labels = np.repeat(np.arange(n_ids), per_id)
    gallery = centers[gallery_labels] + 0.7 * rng.normal(size=(gallery_labels.size, dim))
    mated_labels = rng.integers(0, n_ids, n_mated)
    probe_labels = np.r_[mated_labels, n_ids + np.arange(n_non_mated)]
    probe = centers[probe_labels] + 0.7 * rng.normal(size=(probe_labels.size, dim))
    return probe.astype(np.float32), probe_labels, gallery.astype(np.float32), gallery_labels


def _reference_ranks(probe, probe_labels, gallery, gallery_labels):
    """Rank by a full descending argsort per probe: first position holding a mate (no ties here)."""
    scores = _normalize(probe.astype(np.float64)) @ _normalize(gallery.astype(np.float64)).T
    order = np.argsort(-scores, axis=1)
    ranks, mated_best, top = [], [], scores.max(axis=1)
    for i, label in enumerate(probe_labels):
        hits = np.flatnonzero(gallery_labels[order[i]] == label)
        ranks.append(hits[0] + 1 if hits.size else 0)
        mated_best.append(scores[i, order[i][hits[0]]] if hits.size else np.nan)
    return np.array(ranks), np.array(mated_best), top


def test_similarity_matrix_and_top_k():
    probe, _, gallery, _ = _open_set(0)
    expected = _normalize(probe) @ _normalize(gallery).T
    np.testing.assert_allclose(I.similarity_matrix(probe, gallery), expected, atol=1e-6)
    np.testing.assert_allclose(I.similarity_matrix(probe, gallery, chunk_size=7), expected, atol=1e-6)
    scores, indices = I.top_k(probe, gallery, k=5, chunk_size=9)
    ref = np.argsort(-expected, axis=1)[:, :5]
    np.testing.assert_array_equal(indices, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(expected, ref, axis=1), atol=1e-6)
    all_scores, all_idx = I.top_k(probe[:3], gallery[:4], k=10)  # k capped at G
    assert all_idx.shape == (3, 4)
    np.testing.assert_array_equal(all_idx, np.argsort(-expected[:3, :4], axis=1))


@pytest.mark.parametrize("seed", range(3))
def test_ranks_and_cmc_match_full_sort(seed):
    probe, probe_labels, gallery, gallery_labels = _open_set(seed)
    ranks, _, _ = _reference_ranks(probe, probe_labels, gallery, gallery_labels)
    mated_ranks = ranks[ranks > 0]
    got = I.rank_k_accuracy(probe, probe_labels, gallery, gallery_labels, ks=(1, 5, 10), chunk_size=8)
    assert got == {k: pytest.approx(np.mean(mated_ranks <= k)) for k in (1, 5, 10)}
    r, cmc = I.cmc_curve(probe, probe_labels, gallery, gallery_labels, max_rank=20, chunk_size=13)
    np.testing.assert_array_equal(r, np.arange(1, 21))
    np.testing.assert_allclose(cmc, [np.mean(mated_ranks <= k) for k in range(1, 21)])
    assert np.all(np.diff(cmc) >= 0)


def test_rank_ties_count_against_the_probe():
    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # entries 0 (id 5) and 1 (id 6) identical
    probe = np.array([[1.0, 0.1]])
    assert I.rank_k_accuracy(probe, [5], gallery, [5, 6, 7], ks=(1, 2)) == {1: 0.0, 2: 1.0}
    # Two entries of the probe's own identity tied at the top are not competitors.
    assert I.rank_k_accuracy(probe, [5], gallery, [5, 5, 7], ks=(1,)) == {1: 1.0}


def _reference_tpir(mated_best, mated_rank, nonmated_top, fpir, rank):
    """Brute force over every distinct score: smallest threshold with FPIR <= target."""
    n_mated = mated_best.size
    cands = np.unique(np.r_[mated_best, nonmated_top])
    ok = [t for t in cands if np.mean(nonmated_top >= t) <= fpir]
    if fpir < 1 / nonmated_top.size:
        return np.nan
    t = min(ok) if ok else np.inf
    return np.count_nonzero((mated_rank <= rank) & (mated_best >= t)) / n_mated


@pytest.mark.parametrize("seed", range(3))
def test_tpir_at_fpir_matches_brute_force(seed):
    probe, probe_labels, gallery, gallery_labels = _open_set(seed)
    ranks, best, top = _reference_ranks(probe, probe_labels, gallery, gallery_labels)
    mated = ranks > 0
    fpirs = (0.01, 0.02, 0.1, 0.5, 1.0)
    for rank in (1, 3):
        got = I.tpir_at_fpir(probe, probe_labels, gallery, gallery_labels, fpirs=fpirs, rank=rank, chunk_size=11)
        for fpir in fpirs:
            expected = _reference_tpir(best[mated], ranks[mated], top[~mated], fpir, rank)
            if np.isnan(expected):
                assert np.isnan(got[fpir])  # 0.01 < 1/50 non-mated probes
            else:
                assert got[fpir] == pytest.approx(expected), (rank, fpir)


def test_identification_report_json():
    probe, probe_labels, gallery, gallery_labels = _open_set(1)
    report = I.identification_report(probe, probe_labels, gallery, gallery_labels, fpirs=(1e-3, 0.1))
    json.dumps(report, allow_nan=False)
    assert report["tpir_at_fpir"]["1e-03"] is None
    assert report["rank_1"] == I.rank_k_accuracy(probe, probe_labels, gallery, gallery_labels, ks=(1,))[1]
    assert (report["n_probes"], report["n_mated"], report["n_non_mated"]) == (110, 60, 50)
    assert (report["n_gallery"], report["n_identities"]) == (80, 40)
    closed = I.identification_report(probe[:60], probe_labels[:60], gallery, gallery_labels)
    assert closed["tpir_at_fpir"] == {} and "rank_5" in closed


def test_string_labels():
    probe, probe_labels, gallery, gallery_labels = _open_set(2)
    as_str = lambda x: np.array([f"id{v}" for v in x])  # noqa: E731
    assert I.rank_k_accuracy(probe, as_str(probe_labels), gallery, as_str(gallery_labels)) == I.rank_k_accuracy(
        probe, probe_labels, gallery, gallery_labels
    )


def test_search_memory_is_bounded_by_chunks():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(5000, 8)).astype(np.float32)
    probe = rng.normal(size=(2000, 8)).astype(np.float32)
    labels = np.arange(5000)
    full_matrix_bytes = 2000 * 5000 * 4  # 40 MB
    tracemalloc.start()
    I.identification_report(probe, labels[:2000] * 3, gallery, labels, chunk_size=50)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < full_matrix_bytes / 4, peak


def test_bad_inputs_raise():
    probe, probe_labels, gallery, gallery_labels = _open_set(0)
    with pytest.raises(ValueError, match="dimensions differ"):
        I.rank_k_accuracy(probe[:, :8], probe_labels, gallery, gallery_labels)
    with pytest.raises(ValueError, match="NaN"):
        I.rank_k_accuracy(np.full_like(probe, np.nan), probe_labels, gallery, gallery_labels)
    with pytest.raises(ValueError, match="probe_labels must have shape"):
        I.rank_k_accuracy(probe, probe_labels[:3], gallery, gallery_labels)
    with pytest.raises(ValueError, match="mated probes"):
        I.rank_k_accuracy(probe[60:], probe_labels[60:], gallery, gallery_labels)
    with pytest.raises(ValueError, match="both mated and non-mated"):
        I.tpir_at_fpir(probe[:60], probe_labels[:60], gallery, gallery_labels)
    with pytest.raises(ValueError, match="positive integer"):
        I.rank_k_accuracy(probe, probe_labels, gallery, gallery_labels, ks=(0,))
    with pytest.raises(ValueError, match="chunk_size"):
        I.similarity_matrix(probe, gallery, chunk_size=0)
    with pytest.raises(ValueError, match="fpirs"):
        I.tpir_at_fpir(probe, probe_labels, gallery, gallery_labels, fpirs=(2.0,))
    with pytest.raises(ValueError, match="not comparable"):
        I.rank_k_accuracy(probe, np.array(["a"] * probe.shape[0]), gallery, gallery_labels)
    with pytest.raises(ValueError, match="empty"):
        I.similarity_matrix(np.zeros((0, 16)), gallery)
