"""Demographic differentials of 1:1 verification in pure numpy, for any grouping column.

Two views, both standard:

* **Accuracy per group** (RFW protocol, Wang et al. ICCV 2019; the foundation-model studies
  report mean, STD and SER over RFW's four groups): each group is evaluated on its own pairs with
  its own k-fold thresholds (:func:`~hf_facerec.evaluation.verification.kfold_accuracy`).
  SER = max error / min error (skewed error ratio).
* **Error rates per group at one global threshold** (ISO/IEC 19795-10; NIST FRVT demographics,
  Grother et al. NISTIR 8280): the threshold reaching the target FAR over *all* pairs
  (:func:`~hf_facerec.evaluation.verification.threshold_at_far`, the package's one routine), then
  FMR/FNMR per group, summarised by FDR (de Freitas Pereira & Marcel, IEEE TBIOM 2022), GARBE
  (Howard et al., "Evaluating proposed fairness models for face recognition algorithms", 2022)
  and max/min ratios.

Ratio conventions (documented NaN/inf, never a silent finite number): x/0 with x > 0 is +inf
(unbounded disparity); 0/0 is NaN (no errors observed, ratio undefined). JSON reports turn
both into ``None``. Each group needs genuine and impostor pairs; rate summaries need >= 2 groups.

Small samples (:mod:`~hf_facerec.evaluation.sample_size`): every per-group FMR/FNMR carries its
Wilson 95% interval (``fmr_ci``, ``fnmr_ci``); a group FMR at the FAR-f threshold from fewer than
``ceil(1/f)`` impostors is flagged (``fmr_measurable``), and :func:`bias_report` lists what is not
a measurement under ``unmeasurable`` (e.g. ``"groups.a.fmr"``, then the FMR-based summaries).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._checks import _as_group_rates, _as_groups, _as_labels, _as_rates, _as_scores, _json_float
from .sample_size import CI_LABEL, far_measurable, min_impostors, wilson_interval
from .roc import DEFAULT_FARS, threshold_at_far
from .verification import verification_report

__all__ = [
    "bias_report",
    "fairness_discrepancy_rate",
    "fmr_fnmr_per_group",
    "garbe",
    "gini_coefficient",
    "group_accuracy_summary",
    "max_min_ratio",
    "per_group_verification",
]


def _group_codes(groups, n: int) -> tuple[list, np.ndarray]:
    """(group names (K,) as Python scalars, code per pair (n,) in [0, K))."""
    names, codes = np.unique(_as_groups(groups, n), return_inverse=True)
    return names.tolist(), codes.reshape(-1)


def _validated(scores, labels, groups) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Validated (scores (N,), bool labels (N,), group names, codes (N,)); each group has both classes."""
    scores = _as_scores(scores)
    is_genuine = _as_labels(labels, scores.size)
    names, codes = _group_codes(groups, scores.size)
    n_genuine = np.bincount(codes, weights=is_genuine, minlength=len(names))
    n_pairs = np.bincount(codes, minlength=len(names))
    bad = np.flatnonzero((n_genuine == 0) | (n_genuine == n_pairs))
    if bad.size:
        raise ValueError(
            f"group(s) {[names[i] for i in bad]} lack genuine or impostor pairs "
            f"(sizes {n_pairs[bad].tolist()}): per-group rates would be undefined"
        )
    return scores, is_genuine, names, codes


def _rates_at(scores, is_genuine, codes, n_groups: int, threshold: float) -> dict[str, np.ndarray]:
    """Per-group counts, FMR/FNMR and their Wilson 95% intervals (``*_ci``: (K, 2)) at one
    threshold, each (K,), via bincount (no loop)."""
    accepted = scores >= threshold
    n_genuine = np.bincount(codes, weights=is_genuine, minlength=n_groups)
    n_impostor = np.bincount(codes, minlength=n_groups) - n_genuine
    false_match = np.bincount(codes, weights=accepted & ~is_genuine, minlength=n_groups)
    false_non_match = np.bincount(codes, weights=~accepted & is_genuine, minlength=n_groups)
    return {
        "n_genuine": n_genuine.astype(np.int64),
        "n_impostor": n_impostor.astype(np.int64),
        "fmr": false_match / n_impostor,
        "fnmr": false_non_match / n_genuine,
        "false_matches": false_match.astype(np.int64),
        "false_non_matches": false_non_match.astype(np.int64),
        "fmr_ci": np.stack(wilson_interval(false_match, n_impostor), axis=1),
        "fnmr_ci": np.stack(wilson_interval(false_non_match, n_genuine), axis=1),
    }


def fmr_fnmr_per_group(scores, labels, groups, threshold: float) -> dict:
    """FMR and FNMR of each group at one (global) threshold (decision: same iff score >= threshold).

    Args:
        scores: (N,). labels: (N,) binary. groups: (N,) group of each pair (any sortable ids).
    Returns:
        ``{group: {"fmr", "fnmr", "n_genuine", "n_impostor", "false_matches", "false_non_matches",
        "fmr_ci", "fnmr_ci"}}`` (``*_ci``: Wilson 95% ``[low, high]``).
    """
    threshold = float(threshold)
    if np.isnan(threshold):
        raise ValueError("threshold is NaN")
    scores, is_genuine, names, codes = _validated(scores, labels, groups)
    rates = _rates_at(scores, is_genuine, codes, len(names), threshold)
    return {name: {key: values[i].tolist() for key, values in rates.items()} for i, name in enumerate(names)}


def per_group_verification(
    scores, labels, groups, fars=DEFAULT_FARS, threshold: float | None = None, folds=None, n_folds: int = 10
) -> dict:
    """:func:`~hf_facerec.evaluation.verification.verification_report` of each group's own pairs.

    Each group's ``accuracy`` is its k-fold accuracy with thresholds chosen inside the group
    (RFW protocol; contiguous folds in the group's pair order unless ``folds`` (N,) is given).
    With a global ``threshold`` each entry also gets ``fmr``, ``fnmr``, their Wilson 95% intervals
    ``fmr_ci`` / ``fnmr_ci``, ``false_matches`` and ``accuracy_at_threshold`` at that threshold.

    Returns:
        ``{group: report dict}``.
    """
    scores, is_genuine, names, codes = _validated(scores, labels, groups)
    folds = None if folds is None else np.asarray(folds)
    if folds is not None and folds.shape != scores.shape:
        raise ValueError(f"folds must have shape {scores.shape}, got {folds.shape}")
    reports = {}
    for i, name in enumerate(names):  # one report per group; groups are few
        member = codes == i
        try:
            reports[name] = verification_report(
                scores[member], is_genuine[member], None if folds is None else folds[member], fars, n_folds
            )
        except ValueError as err:
            raise ValueError(f"group {name!r}: {err}") from err
    if threshold is not None:
        if np.isnan(threshold):
            raise ValueError("threshold is NaN")
        rates = _rates_at(scores, is_genuine, codes, len(names), float(threshold))
        correct = np.bincount(codes, weights=(scores >= threshold) == is_genuine, minlength=len(names))
        accuracy = correct / np.bincount(codes, minlength=len(names))
        for i, name in enumerate(names):
            reports[name].update(fmr=float(rates["fmr"][i]), fnmr=float(rates["fnmr"][i]),
                                 accuracy_at_threshold=float(accuracy[i]),
                                 fmr_ci=rates["fmr_ci"][i].tolist(), fnmr_ci=rates["fnmr_ci"][i].tolist(),
                                 false_matches=int(rates["false_matches"][i]))
    return reports


def max_min_ratio(values) -> float:
    """max / min of non-negative rates (K,): +inf when min is 0 < max, NaN when all are 0."""
    _, x = _as_group_rates(values, "values")
    lo, hi = x.min(), x.max()
    if lo > 0:
        return float(hi / lo)
    return float("inf") if hi > 0 else float("nan")


def group_accuracy_summary(accuracies) -> dict:
    """Mean, STD (population, ddof=0) and SER of per-group accuracies.

    Args:
        accuracies: ``{group: accuracy in [0, 1]}`` (>= 2 groups) or a sequence.
    Returns:
        ``{"mean", "std", "ser", "min", "max", "best_group", "worst_group"}``;
        SER = (1 - min accuracy) / (1 - max accuracy) = :func:`max_min_ratio` of the errors.
    """
    names, acc = _as_group_rates(accuracies, "accuracies")
    return {
        "mean": float(acc.mean()),
        "std": float(acc.std()),
        "ser": max_min_ratio(1.0 - acc),
        "min": float(acc.min()),
        "max": float(acc.max()),
        "best_group": names[int(np.argmax(acc))],
        "worst_group": names[int(np.argmin(acc))],
    }


def _paired_rates(fmr_by_group, fnmr_by_group, alpha: float) -> tuple[np.ndarray, np.ndarray, float]:
    fmr_names, fmr = _as_group_rates(fmr_by_group, "fmr_by_group")
    fnmr_names, fnmr = _as_group_rates(fnmr_by_group, "fnmr_by_group")
    if isinstance(fmr_by_group, Mapping) and isinstance(fnmr_by_group, Mapping):
        if set(fmr_names) != set(fnmr_names):
            raise ValueError(f"fmr_by_group and fnmr_by_group have different groups: {fmr_names} vs {fnmr_names}")
        fnmr = np.asarray([fnmr_by_group[name] for name in fmr_names], dtype=np.float64)
    elif fmr.size != fnmr.size:
        raise ValueError(f"fmr_by_group and fnmr_by_group have {fmr.size} and {fnmr.size} groups")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return fmr, fnmr, alpha


def fairness_discrepancy_rate(fmr_by_group, fnmr_by_group, alpha: float = 0.5) -> float:
    """FDR = 1 - (alpha * max|FMR_i - FMR_j| + (1 - alpha) * max|FNMR_i - FNMR_j|).

    de Freitas Pereira & Marcel, "Fairness in biometrics: a figure of merit to assess biometric
    verification systems", IEEE TBIOM 2022. 1 = perfectly fair; rates at one global threshold.
    """
    fmr, fnmr, alpha = _paired_rates(fmr_by_group, fnmr_by_group, alpha)
    return float(1.0 - (alpha * np.ptp(fmr) + (1.0 - alpha) * np.ptp(fnmr)))


def gini_coefficient(values) -> float:
    """Sample-corrected Gini coefficient G = n/(n-1) * sum_i sum_j |x_i - x_j| / (2 n^2 mean(x)).

    0 = all equal, 1 = maximal inequality; all-zero rates (no errors anywhere) give 0.
    """
    _, x = _as_group_rates(values, "values")
    n = x.size
    if x.mean() == 0:
        return 0.0
    return float(n / (n - 1) * np.abs(x[:, None] - x[None, :]).sum() / (2 * n**2 * x.mean()))


def garbe(fmr_by_group, fnmr_by_group, alpha: float = 0.5) -> float:
    """GARBE = alpha * Gini(FMR) + (1 - alpha) * Gini(FNMR) (Howard et al. 2022); 0 = fair."""
    fmr, fnmr, alpha = _paired_rates(fmr_by_group, fnmr_by_group, alpha)
    return float(alpha * gini_coefficient(fmr) + (1.0 - alpha) * gini_coefficient(fnmr))


def bias_report(scores, labels, groups, far: float = 1e-3, alpha: float = 0.5, folds=None, n_folds: int = 10) -> dict:
    """All demographic-differential numbers in one JSON-serialisable dict.

    The global threshold reaches ``far`` over all pairs (ValueError if ``far < 1/#impostors``).
    Keys: ``far``, ``threshold``, ``groups`` (``{str(group): per-group report with fmr, fnmr,
    accuracy, ...}``), ``accuracy_summary`` (mean/std/ser of k-fold accuracies), ``fdr``,
    ``garbe``, ``fmr_max_min_ratio``, ``fnmr_max_min_ratio``, ``alpha``. inf/NaN become ``None``.
    Small samples: each group gets ``fmr_measurable`` (``n_impostor >= ceil(1/far)``) and
    ``min_impostors``; ``unmeasurable`` lists ``groups.<g>.fmr`` / ``groups.<g>.accuracy`` entries and,
    when any group FMR is flagged, ``fdr``, ``garbe``, ``fmr_max_min_ratio``; ``ci`` names the interval.
    """
    if np.ndim(far) != 0:
        raise ValueError(f"bias_report takes one FAR target, got {far!r}")
    far = float(_as_rates(far, "far")[0])
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    threshold = threshold_at_far(scores, labels, far)
    reports = per_group_verification(scores, labels, groups, fars=(far,), threshold=threshold, folds=folds, n_folds=n_folds)
    if len(reports) < 2:
        raise ValueError(f"bias_report needs at least 2 groups, got {list(reports)}")
    fmr = {name: r["fmr"] for name, r in reports.items()}
    fnmr = {name: r["fnmr"] for name, r in reports.items()}
    summary = group_accuracy_summary({name: r["accuracy"] for name, r in reports.items()})
    summary.update(ser=_json_float(summary["ser"]), best_group=str(summary["best_group"]), worst_group=str(summary["worst_group"]))
    unmeasurable = []
    for name, r in reports.items():
        r.update(fmr_measurable=bool(far_measurable(r["n_impostor"], far)), min_impostors=min_impostors(far))
        unmeasurable += [f"groups.{name}.fmr"] if not r["fmr_measurable"] else []
        unmeasurable += [f"groups.{name}.accuracy"] if r["accuracy_measurable"] is False else []
    if any(not r["fmr_measurable"] for r in reports.values()):  # a summary is no better than its worst input
        unmeasurable += ["fdr", "garbe", "fmr_max_min_ratio"]
    if any(r["accuracy_measurable"] is False for r in reports.values()):
        unmeasurable += ["accuracy_summary"]
    return {
        "far": far,
        "threshold": _json_float(threshold),
        "alpha": float(alpha),
        "groups": {str(name): r for name, r in reports.items()},
        "accuracy_summary": summary,
        "fdr": fairness_discrepancy_rate(fmr, fnmr, alpha),
        "garbe": garbe(fmr, fnmr, alpha),
        "fmr_max_min_ratio": _json_float(max_min_ratio(fmr)),
        "fnmr_max_min_ratio": _json_float(max_min_ratio(fnmr)),
        "unmeasurable": unmeasurable,
        "ci": CI_LABEL,
    }
