"""The threshold core of verification: one sort of the scores, cumulative counts, every operating point.

ROC / DET curves, AUC, EER, the threshold at a target FAR (the package's one routine), TAR@FAR and the
best-accuracy threshold, with the conventions of :mod:`~hf_facerec.evaluation.verification` (higher
score = more similar, "same" iff ``score >= threshold``, candidate thresholds = every distinct score and
``+inf``). No Python loop over thresholds. Re-exported by :mod:`~hf_facerec.evaluation.verification`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import _as_labels, _as_rates, _as_scores
from .sample_size import far_measurable

__all__ = [
    "DEFAULT_FARS",
    "best_threshold_accuracy",
    "det_curve",
    "equal_error_rate",
    "impostor_threshold",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "threshold_at_far",
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
