"""1:1 verification core: cross-checked against sklearn/scipy and hand-computed examples."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn import metrics as skm
from sklearn.model_selection import KFold

from hf_facerec.evaluation import verification as V
from hf_facerec.evaluation.scoring import cosine_similarity, pair_scores, template_embeddings


def _tied_scores(seed: int, n: int = 400, dtype=np.float64):
    """Scores on a coarse grid (many ties) and random labels with both classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = (np.round(rng.normal(labels * 0.8, 0.5) * 8) / 8).astype(dtype)
    return scores, labels


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_roc_curve_matches_sklearn_with_ties(seed, dtype):
    scores, labels = _tied_scores(seed, dtype=dtype)
    fpr, tpr, thr = V.roc_curve(scores, labels)
    fpr_ref, tpr_ref, thr_ref = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, tpr_ref, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(thr, thr_ref)
    assert V.roc_auc(scores, labels) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
    fmr, fnmr, det_thr = V.det_curve(scores, labels)
    np.testing.assert_allclose(fmr, fpr_ref)
    np.testing.assert_allclose(fnmr, 1 - tpr_ref)
    np.testing.assert_array_equal(det_thr, thr_ref)


def test_roc_accepts_bool_and_float_labels_and_integer_scores():
    scores = np.array([3, 1, 2, 2, 5])
    labels = np.array([True, False, True, False, True])
    a = V.roc_curve(scores, labels)
    b = V.roc_curve(scores.astype(float), labels.astype(float))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_threshold_at_far_hand_example():
    # impostors 0.1 0.2 0.3 0.4, genuines 0.35 0.5 0.6
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.5, 0.6])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    # FAR <= 0.25 allows one impostor: everything above the 2nd-largest impostor (0.3) -> 0.35.
    assert V.threshold_at_far(scores, labels, 0.25) == 0.35
    assert V.threshold_at_far(scores, labels, 0.5) == 0.3  # two impostors (0.3, 0.4) allowed
    assert V.threshold_at_far(scores, labels, 1.0) == 0.1  # accept all
    np.testing.assert_array_equal(V.threshold_at_far(scores, labels, [0.25, 0.5]), [0.35, 0.3])
    with pytest.raises(ValueError, match="below 1/#impostors"):
        V.threshold_at_far(scores, labels, 0.2)
    assert np.isnan(V.threshold_at_far(scores, labels, 0.2, unreachable="nan"))
    tars = V.tar_at_far(scores, labels, (0.2, 0.25, 0.5))
    assert np.isnan(tars[0.2]) and tars[0.25] == 1.0 and tars[0.5] == 1.0


def test_threshold_at_far_can_be_inf_when_only_rejecting_all_meets_target():
    scores = np.array([0.9, 0.8, 0.1])  # the two impostors are the top scores
    labels = np.array([0, 0, 1])
    assert V.threshold_at_far(scores, labels, 0.5) == 0.9  # one impostor (0.9) allowed
    assert V.tar_at_far(scores, labels, [0.5])[0.5] == 0.0


@pytest.mark.parametrize("n_impostor, far", [(100, 0.57), (10, 0.3), (3000, 1e-3), (30, 0.1)])
def test_far_boundary_is_exact(n_impostor, far):
    # 0.57 * 100 = 56.99999999999999 in floating point: 57 impostors (FAR exactly 0.57) must be allowed.
    rng = np.random.default_rng(0)
    scores = rng.permutation(np.r_[np.arange(n_impostor) / n_impostor, 0.5 + np.arange(50) / 100])
    labels = (scores >= 0.5) & (np.isin(scores, 0.5 + np.arange(50) / 100))
    fpr, tpr, thr = skm.roc_curve(labels, scores, drop_intermediate=False)
    ok = fpr <= far
    assert V.tar_at_far(scores, labels, [far])[far] == tpr[ok].max()
    assert V.threshold_at_far(scores, labels, far) == thr[ok].min()


@pytest.mark.parametrize("seed", range(4))
def test_tar_at_far_matches_roc_definition(seed):
    scores, labels = _tied_scores(seed, n=600)
    fpr, tpr, thr = skm.roc_curve(labels, scores, drop_intermediate=False)
    fars = np.array([0.0, 1e-3, 0.01, 0.05, 0.1, 0.3, 0.999, 1.0])
    got = V.tar_at_far(scores, labels, fars)
    thresholds = V.threshold_at_far(scores, labels, fars, unreachable="nan")
    n_impostor = np.count_nonzero(labels == 0)
    for far, threshold in zip(fars, thresholds):
        if far < 1 / n_impostor:
            assert np.isnan(got[far]) and np.isnan(threshold)
        else:
            assert got[far] == tpr[fpr <= far].max()
            assert threshold == thr[fpr <= far].min()


def test_best_threshold_accuracy_brute_force_and_midpoint():
    assert V.best_threshold_accuracy([0.9, 0.2, 0.8, 0.1], [1, 0, 1, 0]) == (1.0, 0.5)
    for seed in range(4):
        scores, labels = _tied_scores(seed)
        candidates = np.r_[np.unique(scores), np.inf]
        accs = [np.mean((scores >= t) == labels) for t in candidates]
        acc, thr = V.best_threshold_accuracy(scores, labels)
        assert acc == pytest.approx(max(accs))
        assert np.mean((scores >= thr) == labels) == pytest.approx(acc)
        smallest = candidates[int(np.argmax(accs))]
        below = candidates[candidates < smallest]
        assert thr == (smallest + below.max()) / 2 if below.size else thr == smallest


def test_best_threshold_can_reject_all():
    acc, thr = V.best_threshold_accuracy([0.9, 0.8, 0.7, 0.1], [0, 0, 0, 1])
    assert acc == 0.75 and thr == np.inf


def test_contiguous_folds_match_sklearn_kfold():
    for n, k in [(6000, 10), (13, 5), (10, 10)]:
        folds = V._contiguous_folds(n, k)
        for fold, (_, test) in enumerate(KFold(n_splits=k).split(np.zeros(n))):
            np.testing.assert_array_equal(np.flatnonzero(folds == fold), test)


def _kfold_reference(scores, labels, folds):
    """Independent loop: each fold tries every distinct training score (+inf) as threshold."""
    accs = []
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        cands = np.r_[np.unique(scores[tr]), np.inf]
        train_acc = [np.mean((scores[tr] >= t) == labels[tr]) for t in cands]
        best = int(np.argmax(train_acc))  # first max over ascending candidates = smallest
        thr = cands[best] if best == 0 or not np.isfinite(cands[best]) else (cands[best] + cands[best - 1]) / 2
        accs.append(np.mean((scores[te] >= thr) == labels[te]))
    return float(np.mean(accs)), float(np.std(accs))


def test_kfold_accuracy_matches_reference_and_given_folds():
    rng = np.random.default_rng(3)
    labels = np.tile(np.r_[np.ones(30), np.zeros(30)], 10).astype(int)
    scores = np.round(np.where(labels == 1, rng.normal(0.5, 0.2, 600), rng.normal(0.1, 0.15, 600)), 2)
    result = V.kfold_accuracy(scores, labels)
    mean, std = _kfold_reference(scores, labels, np.repeat(np.arange(10), 60))
    assert result["mean"] == pytest.approx(mean) and result["std"] == pytest.approx(std)
    assert len(result["fold_accuracies"]) == 10 and len(result["thresholds"]) == 10
    # Explicit folds (any ids) equal to the contiguous default give the same numbers.
    named = np.repeat(np.array([f"f{i}" for i in range(10)]), 60)
    assert V.kfold_accuracy(scores, labels, folds=named)["mean"] == pytest.approx(mean)
    shuffled = rng.permutation(np.repeat(np.arange(5), 120))
    assert V.kfold_accuracy(scores, labels, folds=shuffled)["mean"] == pytest.approx(_kfold_reference(scores, labels, shuffled)[0])


def test_kfold_toy_uses_margin_midpoint():
    result = V.kfold_accuracy([0.9, 0.2, 0.8, 0.1], [1, 0, 1, 0], n_folds=2)
    assert result["fold_accuracies"] == [1.0, 1.0]
    assert result["thresholds"] == [pytest.approx(0.45), pytest.approx(0.55)]


def test_equal_error_rate_hand_examples():
    # Exact crossing at threshold 0.7: FMR = FNMR = 1/4.
    scores = [0.6, 0.7, 0.8, 0.9, 0.1, 0.2, 0.3, 0.75]
    assert V.equal_error_rate(scores, [1, 1, 1, 1, 0, 0, 0, 0]) == (0.25, 0.7)
    # FNMR stays 1/3 while FMR goes 0 -> 1/2 between thresholds 0.8 and 0.5: EER = 1/3.
    eer, thr = V.equal_error_rate([0.4, 0.8, 0.9, 0.1, 0.5], [1, 1, 1, 0, 0])
    assert eer == pytest.approx(1 / 3) and thr == 0.5


@pytest.mark.parametrize("seed", range(3))
def test_equal_error_rate_matches_brentq_recipe(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 500)
    scores = rng.normal(labels * 1.5, 1.0)
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    reference = brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0, xtol=1e-14)
    assert V.equal_error_rate(scores, labels)[0] == pytest.approx(reference, abs=1e-9)


def test_verification_report_is_json_and_consistent():
    scores, labels = _tied_scores(7, n=1000)
    report = V.verification_report(scores, labels, fars=(1e-4, 1e-2))
    json.dumps(report, allow_nan=False)
    assert report["tar_at_far"]["1e-04"] is None  # 1e-4 < 1/#impostors (~500)
    assert report["tar_at_far"]["1e-02"] == V.tar_at_far(scores, labels, [1e-2])[1e-2]
    assert report["auc"] == pytest.approx(skm.roc_auc_score(labels, scores))
    assert (report["eer"], report["eer_threshold"]) == V.equal_error_rate(scores, labels)
    assert report["accuracy"] == V.kfold_accuracy(scores, labels)["mean"]
    assert report["best_threshold_accuracy"] == V.best_threshold_accuracy(scores, labels)[0]
    assert report["n_genuine"] + report["n_impostor"] == 1000
    quick = V.verification_report(scores, labels, fars=(1e-2,), n_folds=None)  # IJB-style: no k-fold
    assert quick["accuracy"] is None and quick["accuracy_std"] is None and quick["auc"] == report["auc"]


def test_rate_keys_are_lossless():
    from hf_facerec.evaluation._checks import _rate_key

    assert [_rate_key(r) for r in (1e-4, 0.05, 1.0, 0.015)] == ["1e-04", "5e-02", "1e+00", "0.015"]


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        ([0.1, np.nan], [0, 1], "NaN or inf"),
        ([0.1, np.inf], [0, 1], "NaN or inf"),
        ([0.1, 0.2], [0, 2], "binary"),
        ([0.1, 0.2], [0, 0.5], "binary"),
        ([0.1, 0.2], ["a", "b"], "binary"),
        ([0.1, 0.2], [1, 1], "one class"),
        ([0.1, 0.2], [0, 0], "one class"),
        ([0.1, 0.2, 0.3], [0, 1], "length"),
        ([], [], "empty"),
        ([[0.1, 0.2]], [[0, 1]], "1-D"),
        (["a", "b"], [0, 1], "real numbers"),
    ],
)
def test_bad_inputs_raise(scores, labels, match):
    for fn in (V.roc_curve, V.roc_auc, V.equal_error_rate, V.best_threshold_accuracy, V.tar_at_far, V.verification_report):
        with pytest.raises(ValueError, match=match):
            fn(scores, labels)


def test_bad_targets_and_folds_raise():
    scores, labels = [0.9, 0.2, 0.8, 0.1], [1, 0, 1, 0]
    for far in (-0.1, 1.5, np.nan, []):
        with pytest.raises(ValueError, match="far"):
            V.threshold_at_far(scores, labels, far)
    with pytest.raises(ValueError, match="unreachable"):
        V.threshold_at_far(scores, labels, 0.5, unreachable="zero")
    with pytest.raises(ValueError, match="n_folds"):
        V.kfold_accuracy(scores, labels, n_folds=5)
    with pytest.raises(ValueError, match="n_folds"):
        V.kfold_accuracy(scores, labels, n_folds=1)
    with pytest.raises(ValueError, match="folds must have shape"):
        V.kfold_accuracy(scores, labels, folds=[0, 1])
    with pytest.raises(ValueError, match="2 distinct folds"):
        V.kfold_accuracy(scores, labels, folds=[0, 0, 0, 0])
    with pytest.raises(ValueError, match="one class only"):
        V.kfold_accuracy(scores, labels, folds=[0, 1, 0, 1])


def test_cosine_and_pair_scores():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    np.testing.assert_allclose(cosine_similarity(a, b), np.diag(skm.pairwise.cosine_similarity(a, b)), atol=1e-12)
    assert cosine_similarity(a.astype(np.float32), b.astype(np.float32)).dtype == np.float32
    table = rng.normal(size=(30, 8)).astype(np.float32)
    i1, i2 = rng.integers(0, 30, 100), rng.integers(0, 30, 100)
    expected = cosine_similarity(table[i1], table[i2])
    np.testing.assert_allclose(pair_scores(table, i1, i2, block_size=7), expected, atol=1e-6)
    np.testing.assert_allclose(pair_scores(table, i1, i2), expected, atol=1e-6)
    with pytest.raises(ValueError, match="all-zero row"):
        cosine_similarity(np.zeros((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="same shape"):
        cosine_similarity(a, b[:3])
    with pytest.raises(ValueError, match="NaN"):
        cosine_similarity(np.full((1, 2), np.nan), np.ones((1, 2)))
    with pytest.raises(ValueError, match="outside"):
        pair_scores(table, [0, 30], [1, 2])
    with pytest.raises(ValueError, match="integer"):
        pair_scores(table, [0.0], [1.0])
    with pytest.raises(ValueError, match="same length"):
        pair_scores(table, [0, 1], [1])
    with pytest.raises(ValueError, match="empty"):
        pair_scores(table, np.array([], int), np.array([], int))


def test_template_embeddings_media_then_template_average():
    s = np.sqrt(0.5)
    emb = np.array([[1.0, 0], [1, 0], [1, 0], [0, 2], [0, 1], [3, 4]])
    templates = np.array(["A", "A", "A", "A", "B", "B"])
    media = np.array([7, 7, 7, 8, 7, 9])  # 3 frames of one video + one photo; media 7 reused by B
    ids, t = template_embeddings(emb, templates, media)
    assert ids.tolist() == ["A", "B"]
    np.testing.assert_allclose(t[0], [s, s])  # media means (1,0) and (0,1): the video counts once
    np.testing.assert_allclose(t[1], np.array([0.6, 1.8]) / np.linalg.norm([0.6, 1.8]))
    _, no_media = template_embeddings(emb, templates)  # each image its own media
    np.testing.assert_allclose(no_media[0], np.array([3.0, 1]) / np.sqrt(10))
    flip = np.array([[0.0, 1], [0, 1], [0, 1], [1, 0], [0, 1], [4, 3]])
    _, flipped = template_embeddings(emb, templates, media, flip_embeddings=flip)
    np.testing.assert_allclose(np.linalg.norm(flipped, axis=1), 1.0)
    expected = np.array([s, s]) + np.array([1.0, 2]) / np.sqrt(5)  # images (1,1) x3 and (1,2), normalised
    np.testing.assert_allclose(flipped[0], expected / np.linalg.norm(expected))
    with pytest.raises(ValueError, match="template_ids"):
        template_embeddings(emb, templates[:3])
    with pytest.raises(ValueError, match="flip_embeddings"):
        template_embeddings(emb, templates, flip_embeddings=flip[:2])


def test_core_imports_only_numpy():
    root = Path(V.__file__).parent
    for name in ("verification.py", "identification.py", "bias.py", "bias_groups.py", "scoring.py", "_checks.py"):
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module.split(".")[0]]
            else:
                continue
            assert set(mods) <= {"numpy", "__future__", "dataclasses", "math", "collections", "typing"}, (name, mods)


def test_kfold_compares_float32_scores_in_float64():
    """The midpoint threshold between two adjacent float32 scores is not a float32: comparing in float32 rounds
    it onto the lower score and accepts the impostor (accuracy 0.5 instead of 1.0)."""
    low = np.float32(1)
    high = np.nextafter(low, np.float32(2))
    scores = np.array([low, high, low, high], dtype=np.float32)
    result = V.kfold_accuracy(scores, [0, 1, 0, 1], folds=[0, 0, 1, 1])
    assert result["fold_accuracies"] == [1.0, 1.0]
    assert float(low) < result["thresholds"][0] < float(high)
