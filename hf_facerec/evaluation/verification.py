"""1:1 face verification metrics in pure numpy: ROC, DET, EER, AUC, TAR@FAR, k-fold accuracy.

Conventions (shared by :mod:`~hf_facerec.evaluation.identification` and :mod:`~hf_facerec.evaluation.bias`):

* **Scores**: higher = more similar (cosine similarity). Negate distances before calling.
* **Labels**: 1/True = genuine (same identity, "mated") pair, 0/False = impostor pair.
* **Decision**: "same" iff ``score >= threshold``.
* **Rates** (ISO/IEC 19795-1): FAR = FMR = impostor pairs accepted / impostor pairs;
  TAR = 1 - FNMR = genuine pairs accepted / genuine pairs.
* **Candidate thresholds**: ``+inf`` (reject everything) and every distinct score value. They are
  exactly the operating points of the empirical ROC (Fawcett, "An introduction to ROC analysis",
  Pattern Recognition Letters 27, 2006), i.e. ``sklearn.metrics.roc_curve(drop_intermediate=False)``.
  No threshold grid, no interpolation between scores.
* **Accuracy threshold**: the candidate with the best accuracy; on ties the *smallest* candidate
  (as ``np.argmax`` over an ascending grid in the classic LFW scripts, e.g. insightface
  ``calculate_roc``), then moved to the middle of the margin below it (midpoint with the next
  lower distinct score): the same decisions on the training pairs, a safer one on unseen pairs.
* **TAR@FAR**: the threshold is the smallest candidate whose empirical FAR <= target (conservative:
  the highest TAR whose measured FAR meets the target; no interpolation between operating points). A target below
  ``1 / #impostors`` cannot be resolved by the data (it would silently mean "FAR = 0"): it raises
  ``ValueError`` in :func:`threshold_at_far` and is reported as NaN by :func:`tar_at_far`; reports
  flag it (``tar_at_far_measurable``, ``unmeasurable``). The rule, and the k-fold one, live in
  :mod:`~hf_facerec.evaluation.sample_size`.

Everything is built on one sort of the scores and cumulative counts (:mod:`~hf_facerec.evaluation.roc`,
re-exported here); no Python loop over thresholds. Embedding -> score helpers live in
:mod:`~hf_facerec.evaluation.scoring`.
"""

from __future__ import annotations

import numpy as np

from ._checks import _as_labels, _as_rates, _as_scores, _json_float, _positive_int, _rate_key
from .roc import (
    DEFAULT_FARS,
    _best_accuracy,
    _eer,
    _roc_counts,
    _SortedScores,
    _sort_by_class,
    _tar_at_far,
    best_threshold_accuracy,
    det_curve,
    equal_error_rate,
    impostor_threshold,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_at_far,
)
from .sample_size import far_measurable, kfold_measurable, min_impostors
from .scoring import cosine_similarity, pair_scores, template_embeddings

__all__ = [
    "DEFAULT_FARS",
    "best_threshold_accuracy",
    "cosine_similarity",
    "det_curve",
    "equal_error_rate",
    "impostor_threshold",
    "kfold_accuracy",
    "pair_scores",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "template_embeddings",
    "threshold_at_far",
    "verification_report",
]


def _contiguous_folds(n: int, n_folds: int) -> np.ndarray:
    """Fold id per pair, (n,): contiguous blocks, the first ``n % n_folds`` one longer (sklearn KFold,
    shuffle=False). For LFW's 6,000 pairs.txt pairs, fold k = pairs [600k, 600k + 600)."""
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def kfold_accuracy(scores, labels, folds=None, n_folds: int = 10) -> dict:
    """Verification accuracy with k-fold threshold selection (LFW "unrestricted" protocol).

    For each fold k the threshold is chosen on the other folds only, by
    :func:`best_threshold_accuracy`'s rule over the distinct training scores (smallest best
    candidate, moved to the middle of its margin), and applied to fold k.

    Args:
        scores: (N,) similarities. labels: (N,) binary.
        folds: (N,) fold id per pair (any hashables), or None for contiguous equal folds
            (:func:`_contiguous_folds`; the insightface/LFW convention for pairs in file order).
        n_folds: number of folds when ``folds`` is None.
    Returns:
        ``{"mean", "std" (population, ddof=0, as the classic scripts), "fold_accuracies" (list),
        "thresholds" (list), "fold_sizes" (list), "measurable"}``; ``measurable`` is False when a
        test fold has fewer than ``sample_size.MIN_PAIRS_PER_FOLD`` pairs (the mean is then not a measurement).
    """
    scores = _as_scores(scores)
    is_genuine = _as_labels(labels, scores.size)
    if folds is None:
        n_folds = _positive_int(n_folds, "n_folds")
        if not 2 <= n_folds <= scores.size:
            raise ValueError(f"n_folds must be in [2, {scores.size}] (number of pairs), got {n_folds}")
        fold_ids = _contiguous_folds(scores.size, n_folds)
    else:
        folds = np.asarray(folds)
        if folds.shape != scores.shape:
            raise ValueError(f"folds must have shape {scores.shape}, got {folds.shape}")
        _, fold_ids = np.unique(folds, return_inverse=True)
        n_folds = int(fold_ids.max()) + 1
        if n_folds < 2:
            raise ValueError("folds must contain at least 2 distinct folds")
    # One argsort for all folds: each training set is a masked (still sorted) view of it.
    order = np.argsort(scores)  # stability is irrelevant: only counts per distinct value are used
    ordered, genuine_sorted, fold_sorted = scores[order], is_genuine[order], fold_ids[order]
    accuracies, thresholds, sizes = [], [], np.bincount(fold_ids, minlength=n_folds)
    for k in range(n_folds):  # a loop over folds, not thresholds
        train = fold_sorted != k
        train_genuine = genuine_sorted[train]
        if not 0 < np.count_nonzero(train_genuine) < train_genuine.size:
            raise ValueError(f"the training folds for fold {k} contain one class only (pass folds= to mix classes in each fold)")
        _, threshold = _best_accuracy(_roc_counts(_SortedScores(ordered[train], train_genuine)))
        test = ~train
        # in float64: the midpoint threshold between two adjacent float32 scores would round onto one of them
        accuracies.append(float(np.mean((ordered[test].astype(np.float64) >= threshold) == genuine_sorted[test])))
        thresholds.append(threshold)
    return {
        "mean": float(np.mean(accuracies)),
        "std": float(np.std(accuracies)),
        "fold_accuracies": accuracies,
        "thresholds": thresholds,
        "fold_sizes": sizes.tolist(),
        "measurable": kfold_measurable(sizes),
    }


def verification_report(scores, labels, folds=None, fars=DEFAULT_FARS, n_folds: int | None = 10) -> dict:
    """Every 1:1 number in one JSON-serialisable dict.

    Keys: ``accuracy`` / ``accuracy_std`` (:func:`kfold_accuracy`), ``best_threshold_accuracy``
    and ``best_threshold``, ``tar_at_far`` (``{"1e-04": tar}``), ``eer`` and ``eer_threshold``,
    ``auc``, ``n_genuine``, ``n_impostor``. Undefined/unbounded values (NaN TAR for an
    unmeasurable FAR, a threshold of +inf) are ``None``. Small-sample flags (:mod:`.sample_size`):
    ``tar_at_far_measurable`` (``{"1e-04": bool}``), ``min_impostors_at_far`` (``{"1e-04": 10000}``),
    ``accuracy_measurable`` / ``min_fold_pairs`` (None without k-fold), and ``unmeasurable``: the
    keys not to read as measurements, e.g. ``["tar_at_far.1e-04", "accuracy"]``. ``n_folds=None``
    (with ``folds=None``) skips the k-fold accuracy (``None`` values): IJB-style 1:1 protocols report TAR@FAR only, and
    k-fold over their 15.6M pairs costs ~10 s (10 sorted passes) where the rest takes ~1 s.
    """
    scores = _as_scores(scores)
    is_genuine = _as_labels(labels, scores.size)
    fars = _as_rates(fars, "fars")
    s = _sort_by_class(scores, is_genuine)
    kfold = {"mean": None, "std": None, "measurable": None, "fold_sizes": None}
    if folds is not None or n_folds is not None:
        kfold = kfold_accuracy(scores, is_genuine, folds=folds, n_folds=10 if n_folds is None else n_folds)
    roc = _roc_counts(s)
    best_acc, best_thr = _best_accuracy(roc)
    eer, eer_thr = _eer(roc)
    tar_measurable = {_rate_key(f): bool(far_measurable(s.n_impostor, f)) for f in fars}
    unmeasurable = [f"tar_at_far.{key}" for key, ok in tar_measurable.items() if not ok]
    return {
        "accuracy": kfold["mean"],
        "accuracy_std": kfold["std"],
        "best_threshold_accuracy": best_acc,
        "best_threshold": _json_float(best_thr),
        "tar_at_far": {_rate_key(f): _json_float(t) for f, t in _tar_at_far(s, fars).items()},
        "eer": eer,
        "eer_threshold": _json_float(eer_thr),
        "auc": float(np.trapezoid(roc.tpr, roc.fpr)),
        "n_genuine": s.n_genuine,
        "n_impostor": s.n_impostor,
        "tar_at_far_measurable": tar_measurable,
        "min_impostors_at_far": {_rate_key(f): min_impostors(f) for f in fars},
        "accuracy_measurable": kfold["measurable"],
        "min_fold_pairs": None if kfold["fold_sizes"] is None else min(kfold["fold_sizes"]),
        "unmeasurable": unmeasurable + (["accuracy", "accuracy_std"] if kfold["measurable"] is False else []),
    }
