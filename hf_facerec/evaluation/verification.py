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

Everything is built on one sort of the scores (:func:`_sort_by_class`) and cumulative counts
(:func:`_roc_counts`); no Python loop over thresholds. Embedding -> score helpers live in
:mod:`~hf_facerec.evaluation.scoring`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import _as_labels, _as_rates, _as_scores, _json_float, _positive_int, _rate_key
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

DEFAULT_FARS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


class _SortedScores:
    """Scores sorted once, with the class of each sorted score.

    ordered: (N,) ascending; genuine_mask: (N,) bool, True where ``ordered[i]`` is a genuine score
    (within a run of equal scores the order of the classes is arbitrary: only the counts per
    distinct value are ever used). ``genuine`` / ``impostor``: the sorted scores of each class,
    extracted on first use (or given when already at hand).
    """

    def __init__(self, ordered: np.ndarray, genuine_mask: np.ndarray, genuine=None, impostor=None):
        self.ordered = ordered
        self.genuine_mask = genuine_mask
        self.n_genuine = int(np.count_nonzero(genuine_mask)) if genuine is None else genuine.size
        self.n_impostor = ordered.size - self.n_genuine
        self._genuine, self._impostor = genuine, impostor

    @property
    def genuine(self) -> np.ndarray:
        if self._genuine is None:
            self._genuine = self.ordered[self.genuine_mask]
        return self._genuine

    @property
    def impostor(self) -> np.ndarray:
        if self._impostor is None:
            self._impostor = self.ordered[~self.genuine_mask]
        return self._impostor


def _sort_by_class(scores: np.ndarray, is_genuine: np.ndarray) -> _SortedScores:
    """Sort validated scores (N,) with their bool labels (N,) using ``np.sort``, not ``argsort``.

    ``np.sort`` is SIMD-accelerated and ~10x faster than ``np.argsort`` on IJB-C's 15.6M pairs, so
    only the values are sorted; the smaller class is sorted on its own and its scores are located
    in the sorted whole by binary search (equal values take consecutive slots), which rebuilds the
    class mask. Cost: about one ``np.sort`` of all scores.
    """
    ordered = np.sort(scores)
    n_genuine = int(np.count_nonzero(is_genuine))
    small_is_genuine = n_genuine <= scores.size - n_genuine
    small = np.sort(scores[is_genuine] if small_is_genuine else scores[~is_genuine])
    rank_in_ties = np.arange(small.size) - np.searchsorted(small, small, side="left")
    positions = np.searchsorted(ordered, small, side="left") + rank_in_ties
    mask = np.full(scores.size, not small_is_genuine)
    mask[positions] = small_is_genuine
    if small_is_genuine:
        return _SortedScores(ordered, mask, genuine=small)
    return _SortedScores(ordered, mask, impostor=small)


def _validated_sorted(scores, labels) -> _SortedScores:
    scores = _as_scores(scores)
    return _sort_by_class(scores, _as_labels(labels, scores.size))


@dataclass(frozen=True)
class _Roc:
    """Operating points, each (m + 1,), thresholds decreasing: ``thresholds[0] = +inf`` (nothing
    accepted) then each distinct score value; ``tps[j]`` / ``fps[j]`` count genuine / impostor
    scores ``>= thresholds[j]`` (int64, non-decreasing)."""

    thresholds: np.ndarray
    tps: np.ndarray
    fps: np.ndarray
    n_genuine: int
    n_impostor: int

    @property
    def tpr(self) -> np.ndarray:
        return self.tps / self.n_genuine

    @property
    def fpr(self) -> np.ndarray:
        return self.fps / self.n_impostor


def _roc_counts(s: _SortedScores) -> _Roc:
    """The one ROC routine: cumulative class counts at every candidate threshold, O(N) after the sort."""
    ordered = s.ordered
    is_start = np.empty(ordered.size, dtype=bool)
    is_start[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=is_start[1:])
    starts = np.flatnonzero(is_start)  # first index of each distinct value, ascending
    genuine_before = np.zeros(ordered.size + 1, dtype=np.int64)
    np.cumsum(s.genuine_mask, out=genuine_before[1:])
    # Counts of scores >= each distinct value, reversed into decreasing-threshold order.
    tps = (s.n_genuine - genuine_before[starts])[::-1]
    fps = (ordered.size - starts)[::-1] - tps
    zero = np.zeros(1, dtype=np.int64)
    thresholds = np.concatenate([np.array([np.inf], dtype=ordered.dtype), ordered[starts][::-1]])
    return _Roc(thresholds, np.concatenate([zero, tps]), np.concatenate([zero, fps]), s.n_genuine, s.n_impostor)


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical ROC at every candidate threshold.

    Args:
        scores: (N,) similarity scores, finite. labels: (N,) binary, both classes present.
    Returns:
        ``(fpr, tpr, thresholds)``, each (m + 1,) for m distinct scores; thresholds decreasing
        from ``+inf``. Same values as ``sklearn.metrics.roc_curve(labels, scores,
        drop_intermediate=False)``.
    """
    roc = _roc_counts(_validated_sorted(scores, labels))
    return roc.fpr, roc.tpr, roc.thresholds


def det_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detection error trade-off: ``(fmr, fnmr, thresholds)``, each (m + 1,).

    The same operating points and order (decreasing thresholds) as :func:`roc_curve`:
    ``fmr = fpr``, ``fnmr = 1 - tpr``. Plot on log-log axes (NIST FRVT style).
    """
    fpr, tpr, thresholds = roc_curve(scores, labels)
    return fpr, 1.0 - tpr, thresholds


def roc_auc(scores, labels) -> float:
    """Area under the ROC (trapezoids, ties as diagonal segments), as ``sklearn.metrics.roc_auc_score``."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def _eer(roc: _Roc) -> tuple[float, float]:
    thresholds, fmr, fnmr = roc.thresholds, roc.fpr, 1.0 - roc.tpr
    gap = fnmr - fmr  # goes from +1 (threshold +inf) down to -1 (lowest score): one crossing
    j = int(np.flatnonzero(gap >= 0)[-1])
    if gap[j] == 0:
        return float(fmr[j]), float(thresholds[j])
    alpha = gap[j] / (gap[j] - gap[j + 1])
    eer = fmr[j] + alpha * (fmr[j + 1] - fmr[j])
    return float(eer), float(thresholds[j] if alpha <= 0.5 else thresholds[j + 1])


def equal_error_rate(scores, labels) -> tuple[float, float]:
    """Equal error rate and the threshold nearest to it.

    FMR and FNMR are interpolated linearly between consecutive ROC points (the usual
    ``brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)`` recipe, solved in closed form);
    the EER is where they meet. The threshold returned is that of the bracketing operating point
    nearest the crossing (an actual score value; a threshold at exactly the EER need not exist).

    Returns:
        ``(eer, threshold)``.
    """
    return _eer(_roc_counts(_validated_sorted(scores, labels)))


def _threshold_at_far_sorted(
    genuine: np.ndarray, impostor: np.ndarray, fars: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core of TAR@FAR on sorted classes (genuine may be empty; impostor may not).

    Args:
        genuine: (n_g,) ascending. impostor: (n_i,) ascending. fars: (F,) targets in [0, 1].
    Returns:
        ``(thresholds (F,) float64, genuine_accepted (F,) int64, reachable (F,) bool)``; for an
        unreachable target (:func:`~hf_facerec.evaluation.sample_size.far_measurable` false, i.e.
        ``far < 1 / n_i``) the threshold is the one reaching FAR = 0.
    """
    n_i = impostor.size
    # k = most impostors allowed: the largest integer with k / n_i <= far, evaluated with the same
    # floating-point division a caller would use (so FAR=3/3000 meets a 1e-3 target exactly).
    k = np.floor(fars * n_i).astype(np.int64)
    k += (k + 1) / n_i <= fars
    k -= k / n_i > fars
    reachable = np.asarray(far_measurable(n_i, fars), dtype=bool) & (k >= 1)  # the rule; k >= 1 keeps FAR-0 points out
    # Every candidate strictly above the (k+1)-th largest impostor accepts at most k impostors;
    # the smallest such score value (in either class) is the conservative threshold.
    above = np.where(k < n_i, impostor[np.clip(n_i - 1 - k, 0, n_i - 1)], -np.inf)
    i_idx = np.searchsorted(impostor, above, side="right")
    g_idx = np.searchsorted(genuine, above, side="right")
    from_impostor = np.where(i_idx < n_i, impostor[np.minimum(i_idx, n_i - 1)], np.inf)
    from_genuine = np.full(fars.shape, np.inf)
    if genuine.size:
        from_genuine = np.where(g_idx < genuine.size, genuine[np.minimum(g_idx, genuine.size - 1)], np.inf)
    thresholds = np.minimum(from_impostor, from_genuine).astype(np.float64)
    accepted = genuine.size - np.searchsorted(genuine, thresholds, side="left")
    return thresholds, accepted.astype(np.int64), reachable


def threshold_at_far(scores, labels, far, unreachable: str = "raise"):
    """Smallest candidate threshold whose FAR on (scores, labels) is <= ``far``.

    This is the single threshold-at-FAR routine of the package (TAR@FAR, the bias module's
    global threshold, TPIR@FPIR and model threshold calibration all use it).

    Args:
        scores: (N,) similarities. labels: (N,) binary.
        far: a target in [0, 1] or a 1-D sequence of targets (F,).
        unreachable: ``"raise"`` (default) raises ``ValueError`` when a target is below
            ``1 / #impostors``; ``"nan"`` returns NaN for it.
    Returns:
        float, or (F,) float64 array for a sequence. May be ``+inf`` (reject all) when every
        lower candidate exceeds the target.
    """
    if unreachable not in ("raise", "nan"):
        raise ValueError(f"unreachable must be 'raise' or 'nan', got {unreachable!r}")
    fars = _as_rates(far, "far")
    s = _validated_sorted(scores, labels)
    thresholds, _, reachable = _threshold_at_far_sorted(s.genuine, s.impostor, fars)
    if unreachable == "raise" and not reachable.all():
        raise ValueError(
            f"FAR target(s) {fars[~reachable].tolist()} below 1/#impostors = 1/{s.n_impostor}: "
            "not measurable on this data (need more impostor pairs)"
        )
    thresholds = np.where(reachable, thresholds, np.nan)
    return float(thresholds[0]) if np.ndim(far) == 0 else thresholds


def impostor_threshold(scores, far: float) -> float:
    """The threshold reaching FAR <= ``far`` on impostor scores alone (N,): the package's one
    threshold-at-FAR routine with an empty genuine side. ValueError if ``far < 1 / N``."""
    scores = _as_scores(scores)
    far = float(_as_rates(far, "far")[0])
    threshold, _, reachable = _threshold_at_far_sorted(np.empty(0), np.sort(scores), np.array([far]))
    if not reachable[0]:
        raise ValueError(f"FAR {far} is below 1/#impostors = 1/{scores.size}: not measurable on this data")
    return float(threshold[0])


def _tar_at_far(s: _SortedScores, fars: np.ndarray) -> dict[float, float]:
    _, accepted, reachable = _threshold_at_far_sorted(s.genuine, s.impostor, fars)
    tars = np.where(reachable, accepted / s.n_genuine, np.nan)
    return {float(f): float(t) for f, t in zip(fars, tars)}


def tar_at_far(scores, labels, fars=DEFAULT_FARS) -> dict[float, float]:
    """TAR at the :func:`threshold_at_far` threshold of each FAR target.

    Returns:
        ``{far: tar}``; NaN for a target below ``1 / #impostors`` (e.g. FAR=1e-6 on LFW's 3,000
        impostor pairs): the data cannot measure it, and a number would be misleading.
    """
    return _tar_at_far(_validated_sorted(scores, labels), _as_rates(fars, "fars"))


def _best_accuracy(roc: _Roc) -> tuple[float, float]:
    correct = roc.tps - roc.fps  # + n_impostor: accepted genuines + rejected impostors, integers (exact ties)
    j = correct.size - 1 - int(np.argmax(correct[::-1]))  # last max = smallest best candidate (tie rule)
    n = roc.n_genuine + roc.n_impostor
    threshold = float(roc.thresholds[j])
    if j + 1 < roc.thresholds.size:
        # Any threshold in (next lower score, candidate] makes the same decisions on these pairs:
        # take the middle of that margin rather than sitting on a training score.
        threshold = (threshold + float(roc.thresholds[j + 1])) / 2 if np.isfinite(threshold) else threshold
    return float((correct[j] + roc.n_impostor) / n), threshold


def best_threshold_accuracy(scores, labels) -> tuple[float, float]:
    """Best accuracy over all candidate thresholds, and a threshold reaching it.

    Tie rule: among the candidates with the best accuracy the smallest is taken, and the
    threshold returned is the midpoint between it and the next lower distinct score (the highest
    rejected score), i.e. the middle of the interval of thresholds that make exactly the same
    decisions. (Grid scripts return the bottom of that interval, to within the grid step.)
    Optimistic (threshold chosen on the evaluated pairs); see :func:`kfold_accuracy` for the
    protocol number. Returns ``(accuracy, threshold)``; ``+inf`` means reject all.
    """
    return _best_accuracy(_roc_counts(_validated_sorted(scores, labels)))


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
        accuracies.append(float(np.mean((ordered[test] >= threshold) == genuine_sorted[test])))
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
