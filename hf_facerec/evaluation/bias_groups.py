"""Bias reports of one grouping as real data gives them: groups from identities, one-class groups,
impostor-only data. Pure numpy, like the rest of the metric core.

* :func:`identity_pair_groups`: the group of each pair from its identities' groups (impostor pairs
  across two groups are :data:`MIXED_GROUP`).
* :func:`groups_with_both_classes`: the groups having genuine and impostor pairs, the only ones a
  :func:`~hf_facerec.evaluation.bias.bias_report` can rank (the one home of that filter).
* :func:`grouped_bias_report`: :func:`~hf_facerec.evaluation.bias.bias_report` over those groups,
  the others' FMR/FNMR beside it; :func:`impostor_fmr_report` for data without genuine pairs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._checks import _as_groups, _as_scores, _json_float
from .bias import bias_report, gini_coefficient, max_min_ratio
from .sample_size import CI_LABEL, far_measurable, min_impostors, wilson_interval
from .roc import impostor_threshold

__all__ = [
    "MIXED_GROUP", "grouped_bias_report", "groups_with_both_classes", "identity_pair_groups", "impostor_fmr_report",
]

#: The group of an impostor pair whose two identities belong to different groups.
MIXED_GROUP = "mixed"


def identity_pair_groups(identity1, identity2, is_same, mapping: Mapping[str, str]) -> np.ndarray:
    """Group of each pair from its identities' groups.

    A genuine pair takes its identity's group; an impostor pair takes the shared group of its two
    identities, or :data:`MIXED_GROUP` when they differ. A pair with an identity absent from
    ``mapping`` gets ``None`` (left out of the bias report).

    Args:
        identity1, identity2: (P,) identity names. is_same: (P,) bool.
    Returns:
        (P,) object array of group names or None.
    """
    g1 = np.array([mapping.get(str(i)) for i in identity1], dtype=object)
    g2 = np.array([mapping.get(str(i)) for i in identity2], dtype=object)
    same = np.asarray(is_same, dtype=bool)
    if not (g1.shape == g2.shape == same.shape):
        raise ValueError(f"identity1, identity2 and is_same differ in length: {g1.shape}, {g2.shape}, {same.shape}")
    known = np.not_equal(g1, None) & np.not_equal(g2, None)
    groups = np.where(same | (g1 == g2), g1, MIXED_GROUP)
    return np.where(known, groups, None)


def groups_with_both_classes(labels, groups) -> np.ndarray:
    """The sorted group names that have at least one genuine and one impostor pair.

    Args:
        labels: (N,) binary. groups: (N,) group names (None entries are never a group).
    Returns:
        (G,) array of names, a subset of ``np.unique(groups)``.
    """
    labels = np.asarray(labels).astype(bool)
    groups = np.asarray(groups, dtype=object)
    if labels.shape != groups.shape:
        raise ValueError(f"labels and groups differ in shape: {labels.shape} vs {groups.shape}")
    known = np.not_equal(groups, None)
    names, codes = np.unique(groups[known].astype(str), return_inverse=True)
    genuine = np.bincount(codes, weights=labels[known], minlength=names.size)
    total = np.bincount(codes, minlength=names.size)
    return names[(genuine > 0) & (genuine < total)]


def impostor_fmr_report(scores, groups, far: float | None = 1e-3, threshold: float | None = None) -> dict:
    """FMR per group from impostor scores only (data without identities, e.g. UTKFace).

    The threshold is ``threshold`` (``far`` is then only recorded) or :func:`impostor_threshold` at
    ``far`` over all the impostor scores. Standard errors are the binomial ``sqrt(p (1 - p) / n)``;
    ``fmr_ci`` is the Wilson 95% interval (the error bars: inside [0, 1] even at 0 false matches).
    A group with fewer than ``ceil(1/far)`` impostors has ``fmr_measurable`` False and is listed
    in ``unmeasurable`` (``"groups.<g>.fmr"``, then ``"fmr_max_min_ratio"`` and ``"fmr_gini"``).

    Args:
        scores: (N,) impostor similarities. groups: (N,) group of each pair.
    Returns:
        ``{"kind": "impostor_only", "far", "threshold", "n_impostor", "groups": {group: {"fmr",
        "fmr_std_error", "false_matches", "n_impostor", "fmr_ci", "fmr_measurable", "min_impostors"}},
        "fmr_max_min_ratio", "fmr_gini", "unmeasurable", "ci"}`` (an unbounded ratio is ``None``).
    Raises:
        ValueError: bad scores/groups, fewer than 2 groups, or ``far < 1 / N`` without a threshold.
    """
    scores = _as_scores(scores)
    names, codes = np.unique(_as_groups(groups, scores.size).astype(str), return_inverse=True)
    if names.size < 2:
        raise ValueError(f"an FMR comparison needs at least 2 groups, got {names.tolist()}")
    if threshold is None:
        if far is None:
            raise ValueError("give a FAR target or a threshold")
        threshold = impostor_threshold(scores, far)
    elif np.isnan(threshold):
        raise ValueError("threshold is NaN")
    n = np.bincount(codes, minlength=names.size)
    false_matches = np.bincount(codes, weights=scores >= threshold, minlength=names.size)
    fmr = false_matches / n
    low, high = wilson_interval(false_matches, n)
    groups = {
        name: {"fmr": float(fmr[i]), "fmr_std_error": float(np.sqrt(fmr[i] * (1 - fmr[i]) / n[i])),
               "false_matches": int(false_matches[i]), "n_impostor": int(n[i]), **_fmr_flags(n[i], far),
               "fmr_ci": [float(low[i]), float(high[i])]}
        for i, name in enumerate(names.tolist())
    }
    unmeasurable = [f"groups.{name}.fmr" for name, g in groups.items() if g["fmr_measurable"] is False]
    return {
        "kind": "impostor_only",
        "far": None if far is None else float(far),
        "threshold": _json_float(threshold),
        "n_impostor": int(scores.size),
        "groups": groups,
        "fmr_max_min_ratio": _json_float(max_min_ratio(fmr)),
        "fmr_gini": gini_coefficient(fmr),
        "unmeasurable": unmeasurable + (["fmr_max_min_ratio", "fmr_gini"] if unmeasurable else []),
        "ci": CI_LABEL,
    }


def _fmr_flags(n_impostor: int, far: float | None) -> dict:
    """``fmr_measurable`` / ``min_impostors`` of an FMR from ``n_impostor`` pairs at the FAR-``far``
    threshold (None, None without a FAR target: a given threshold has no resolution to meet)."""
    if far is None:
        return {"fmr_measurable": None, "min_impostors": None}
    return {"fmr_measurable": bool(far_measurable(int(n_impostor), far)), "min_impostors": min_impostors(far)}


def _other_group(scores: np.ndarray, is_genuine: np.ndarray, threshold: float, far: float) -> dict:
    """FMR (impostor pairs) and/or FNMR (genuine pairs) of a group outside the ranking, with intervals."""
    n_genuine, n_impostor = int(np.count_nonzero(is_genuine)), int(np.count_nonzero(~is_genuine))
    entry = {"n_genuine": n_genuine, "n_impostor": n_impostor}
    if n_impostor:
        false_matches = int(np.count_nonzero(scores[~is_genuine] >= threshold))
        entry.update(fmr=false_matches / n_impostor, fmr_ci=list(wilson_interval(false_matches, n_impostor)),
                     false_matches=false_matches, **_fmr_flags(n_impostor, far))
    if n_genuine:
        misses = int(np.count_nonzero(scores[is_genuine] < threshold))
        entry.update(fnmr=misses / n_genuine, fnmr_ci=list(wilson_interval(misses, n_genuine)))
    return entry


def grouped_bias_report(scores, labels, groups, far: float = 1e-3, folds=None, alpha: float = 0.5) -> dict:
    """:func:`~hf_facerec.evaluation.bias.bias_report` of one grouping, tolerating one-class groups.

    Groupings from identities produce groups with impostor pairs only (``"mixed"``: impostors of
    two groups) and datasets without identities have no genuine pairs at all. So:

    * pairs whose group is ``None`` are left out (counted in ``n_left_out``);
    * with no genuine pair at all: :func:`impostor_fmr_report` of the named groups at the threshold
      reaching ``far`` over all impostors, :data:`MIXED_GROUP`'s FMR under ``other_groups``;
    * otherwise :func:`bias_report` over the groups having both classes (its threshold reaches
      ``far`` over *their* pairs), and the remaining one-class groups get their FMR (impostor-only)
      or FNMR (genuine-only) at that same threshold under ``other_groups``.

    Args:
        scores: (N,). labels: (N,) binary. groups: (N,) group names or None. folds: (N,) or None.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    groups = np.asarray(groups, dtype=object)
    if not (scores.shape == labels.shape == groups.shape) or scores.ndim != 1:
        raise ValueError(f"scores, labels and groups must be 1-D of one length, got {scores.shape}, {labels.shape}, {groups.shape}")
    keep = np.not_equal(groups, None)
    if not keep.any():
        raise ValueError("no pair has a group")
    scores, labels, groups = scores[keep], labels[keep], groups[keep].astype(str)
    if not labels.any():
        # Threshold over all impostors; disparity summaries over the groups themselves, with the
        # cross-group impostors (naturally the least similar) reported beside them, not ranked.
        threshold = impostor_threshold(scores, far)
        named = groups != MIXED_GROUP
        report = impostor_fmr_report(scores[named], groups[named], far=far, threshold=threshold)
        others = {MIXED_GROUP: _other_group(scores[~named], labels[~named], threshold, far)} if (~named).any() else {}
        report = {**report, "other_groups": others, "n_left_out": int((~keep).sum())}
        return _flag_others(report)
    names = np.unique(groups)
    both = groups_with_both_classes(labels, groups)
    if both.size < 2:
        raise ValueError(f"need at least 2 groups with genuine and impostor pairs, got {both.tolist()} of {names.tolist()}")
    member = np.isin(groups, both)
    fold_arg = None if folds is None else np.asarray(folds)[keep][member]
    report = bias_report(scores[member], labels[member], groups[member], far=far, alpha=alpha, folds=fold_arg)
    threshold = np.inf if report["threshold"] is None else report["threshold"]
    others = {str(name): _other_group(scores[groups == name], labels[groups == name], threshold, far)
              for name in names[~np.isin(names, both)]}
    report.update(kind="pairs", other_groups=others, n_left_out=int((~keep).sum()))
    return _flag_others(report)


def _flag_others(report: dict) -> dict:
    """Add the unmeasurable FMRs of the groups outside the ranking to ``report["unmeasurable"]``."""
    report["unmeasurable"] = report.get("unmeasurable", []) + [
        f"other_groups.{name}.fmr" for name, g in report["other_groups"].items() if g.get("fmr_measurable") is False
    ]
    return report

