"""Bias metrics: hand-computed worked examples (FDR, GARBE, Gini, SER) and consistency checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hf_facerec.evaluation import bias as B
from hf_facerec.evaluation import verification as V


def test_fdr_worked_example():
    # max |FMR_i - FMR_j| = 0.003 - 0.001 = 0.002; max |FNMR_i - FNMR_j| = 0.05 - 0.02 = 0.03.
    fmr = {"a": 0.001, "b": 0.003, "c": 0.002}
    fnmr = {"a": 0.05, "b": 0.02, "c": 0.04}
    assert B.fairness_discrepancy_rate(fmr, fnmr) == pytest.approx(1 - (0.5 * 0.002 + 0.5 * 0.03))  # 0.984
    assert B.fairness_discrepancy_rate(fmr, fnmr, alpha=1.0) == pytest.approx(0.998)
    assert B.fairness_discrepancy_rate(fmr, fnmr, alpha=0.0) == pytest.approx(0.97)
    # Order of the FNMR mapping does not matter: groups are matched by name.
    assert B.fairness_discrepancy_rate(fmr, dict(reversed(list(fnmr.items())))) == pytest.approx(0.984)
    assert B.fairness_discrepancy_rate([0.1, 0.1], [0.2, 0.2]) == 1.0


def test_gini_and_garbe_worked_examples():
    # Two groups x = (0.001, 0.003): sum_ij |xi - xj| = 0.004, 2 n^2 mean = 0.016, n/(n-1) = 2 -> 0.5.
    assert B.gini_coefficient([0.001, 0.003]) == pytest.approx(0.5)
    # (0.02, 0.05): 0.06 / (2 * 4 * 0.035) * 2 = 3/7.
    assert B.gini_coefficient([0.02, 0.05]) == pytest.approx(3 / 7)
    assert B.garbe([0.001, 0.003], [0.02, 0.05]) == pytest.approx(0.5 * 0.5 + 0.5 * 3 / 7)  # 0.4643
    # One group holds all the errors: maximal inequality, G = 4/3 * 6 / (2 * 16 * 0.25) = 1.
    assert B.gini_coefficient([1.0, 0, 0, 0]) == pytest.approx(1.0)
    assert B.gini_coefficient([0.2, 0.2, 0.2]) == 0.0
    assert B.gini_coefficient([0.0, 0.0]) == 0.0  # no errors anywhere: no disparity
    # (0.1, 0.2, 0.3): sum_ij |xi - xj| = 2 * (0.1 + 0.2 + 0.1) = 0.8; 2 * 9 * 0.2 = 3.6; * 3/2 -> 1/3.
    assert B.gini_coefficient({"x": 0.1, "y": 0.2, "z": 0.3}) == pytest.approx(1 / 3)
    assert B.garbe([0.1, 0.2, 0.3], [0.0, 0.0, 0.0], alpha=0.25) == pytest.approx(0.25 / 3)


def test_ser_worked_example_and_ratios():
    # Accuracies 99%, 98%, 96%, 97%: errors 1%..4%: SER = 4 / 1 = 4.
    summary = B.group_accuracy_summary({"Caucasian": 0.99, "Indian": 0.98, "Asian": 0.96, "African": 0.97})
    assert summary["ser"] == pytest.approx(4.0)
    assert summary["mean"] == pytest.approx(0.975)
    assert summary["std"] == pytest.approx(np.sqrt(0.000125))  # population STD of (1.5, .5, -1.5, -.5)e-2
    assert (summary["best_group"], summary["worst_group"]) == ("Caucasian", "Asian")
    assert B.max_min_ratio([0.01, 0.03]) == pytest.approx(3.0)
    assert B.max_min_ratio([0.0, 0.03]) == np.inf
    assert np.isnan(B.max_min_ratio([0.0, 0.0]))
    assert B.group_accuracy_summary([1.0, 0.9])["ser"] == np.inf


def _grouped_pairs(seed: int = 0):
    """Three groups of 400 pairs, class-interleaved so contiguous folds hold both classes."""
    rng = np.random.default_rng(seed)
    labels = np.tile([1, 0], 600)
    groups = np.repeat(np.array(["A", "B", "C"]), 400)
    shift = {"A": 0.0, "B": 0.05, "C": -0.05}
    offset = np.array([shift[g] for g in groups])
    scores = np.where(labels == 1, rng.normal(0.55, 0.15, 1200), rng.normal(0.1, 0.12, 1200)) + offset
    return scores, labels, groups


def test_fmr_fnmr_per_group_hand_example():
    scores = np.array([0.9, 0.4, 0.6, 0.2, 0.7, 0.1, 0.3, 0.8])
    labels = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    groups = np.array(["x", "x", "x", "x", "y", "y", "y", "y"])
    got = B.fmr_fnmr_per_group(scores, labels, groups, threshold=0.5)
    # x: genuine 0.9 (acc), 0.4 (rej) -> FNMR 1/2; impostor 0.6 (acc), 0.2 -> FMR 1/2.
    # y: genuine 0.7 (acc), 0.3 (rej) -> FNMR 1/2; impostor 0.1, 0.8 (acc) -> FMR 1/2.
    for group in ("x", "y"):
        assert got[group] == {"n_genuine": 2, "n_impostor": 2, "fmr": 0.5, "fnmr": 0.5, "false_matches": 1,
                              "false_non_matches": 1, "fmr_ci": got[group]["fmr_ci"], "fnmr_ci": got[group]["fnmr_ci"]}
        # Wilson 95% of 1/2: centre 0.5, half-width 1.96 sqrt(1/8 + 1.96^2/16) / (1 + 1.96^2/2) = 0.4055.
        assert got[group]["fmr_ci"] == pytest.approx([0.0945, 0.9055], abs=1e-4) == got[group]["fnmr_ci"]
    assert B.fmr_fnmr_per_group(scores, labels, groups, threshold=0.85)["x"]["fnmr"] == 0.5
    assert B.fmr_fnmr_per_group(scores, labels, groups, threshold=0.85)["y"]["fmr"] == 0.0


def test_per_group_verification_equals_subset_reports():
    scores, labels, groups = _grouped_pairs()
    reports = B.per_group_verification(scores, labels, groups, fars=(0.01,), threshold=0.3)
    for name in "ABC":
        member = groups == name
        expected = V.verification_report(scores[member], labels[member], fars=(0.01,))
        assert {k: reports[name][k] for k in expected} == expected
        assert reports[name]["accuracy_at_threshold"] == pytest.approx(np.mean((scores[member] >= 0.3) == labels[member]))
    rates = B.fmr_fnmr_per_group(scores, labels, groups, 0.3)
    assert reports["B"]["fmr"] == rates["B"]["fmr"] and reports["C"]["fnmr"] == rates["C"]["fnmr"]


def test_bias_report_uses_global_threshold_and_is_json():
    scores, labels, groups = _grouped_pairs(1)
    report = B.bias_report(scores, labels, groups, far=0.01, alpha=0.3)
    json.dumps(report, allow_nan=False)
    assert report["threshold"] == V.threshold_at_far(scores, labels, 0.01)
    rates = B.fmr_fnmr_per_group(scores, labels, groups, report["threshold"])
    fmr = {g: r["fmr"] for g, r in rates.items()}
    fnmr = {g: r["fnmr"] for g, r in rates.items()}
    assert report["fdr"] == pytest.approx(B.fairness_discrepancy_rate(fmr, fnmr, 0.3))
    assert report["garbe"] == pytest.approx(B.garbe(fmr, fnmr, 0.3))
    assert report["fnmr_max_min_ratio"] == pytest.approx(B.max_min_ratio(fnmr))
    summary = B.group_accuracy_summary({g: report["groups"][g]["accuracy"] for g in "ABC"})
    assert report["accuracy_summary"]["ser"] == pytest.approx(summary["ser"])
    assert set(report["groups"]) == {"A", "B", "C"}


def test_bias_report_integer_groups_and_unbounded_ratio_is_none():
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.95, 0.05, 0.3, 0.85])
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    report = B.bias_report(scores, labels, groups, far=0.25, n_folds=2)
    json.dumps(report, allow_nan=False)
    assert set(report["groups"]) == {"0", "1"}
    assert report["fmr_max_min_ratio"] is None  # group 0 has FMR 0, group 1 does not


def test_bad_inputs_raise():
    scores, labels, groups = _grouped_pairs()
    with pytest.raises(ValueError, match="lack genuine or impostor"):
        B.fmr_fnmr_per_group(scores, labels, np.concatenate([groups[:-1], ["D"]]), 0.3)  # single-member group
    with pytest.raises(ValueError, match="lack genuine or impostor"):
        B.fmr_fnmr_per_group(scores, labels, np.where(labels == 1, "G", "I"), 0.3)
    with pytest.raises(ValueError, match="groups must have shape"):
        B.fmr_fnmr_per_group(scores, labels, groups[:5], 0.3)
    with pytest.raises(ValueError, match="NaN"):
        B.fmr_fnmr_per_group(scores, labels, np.full(scores.size, np.nan), 0.3)
    with pytest.raises(ValueError, match="threshold is NaN"):
        B.fmr_fnmr_per_group(scores, labels, groups, np.nan)
    with pytest.raises(ValueError, match="at least 2 groups"):
        B.bias_report(scores, labels, np.full(scores.size, "all"), far=0.01)
    with pytest.raises(ValueError, match="alpha"):
        B.bias_report(scores, labels, groups, alpha=1.5)
    with pytest.raises(ValueError, match="one FAR target"):
        B.bias_report(scores, labels, groups, far=[0.01, 0.1])
    with pytest.raises(ValueError, match="below 1/#impostors"):
        B.bias_report(scores, labels, groups, far=1e-6)
    with pytest.raises(ValueError, match="group 'A'"):
        B.per_group_verification(scores, labels, groups, n_folds=500)
    with pytest.raises(ValueError, match="at least 2 groups"):
        B.fairness_discrepancy_rate({"a": 0.1}, {"a": 0.2})
    with pytest.raises(ValueError, match="different groups"):
        B.garbe({"a": 0.1, "b": 0.2}, {"a": 0.1, "c": 0.2})
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        B.garbe([0.1, 1.2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        B.group_accuracy_summary([0.9, np.nan])
    with pytest.raises(ValueError, match="alpha"):
        B.fairness_discrepancy_rate([0.1, 0.2], [0.1, 0.2], alpha=-0.1)
    with pytest.raises(ValueError, match="groups"):
        B.garbe([0.1, 0.2, 0.3], [0.1, 0.2])


@pytest.mark.parametrize(
    "bad, message",
    [
        (None, r"groups contains None \(a pair without a group\) at index 3"),
        (float("nan"), r"groups contains NaN at index 3"),
        (7, r"groups mixes number and str values"),
    ],
)
def test_groups_with_none_nan_or_mixed_kinds_get_one_clear_error(bad, message):
    # Issue 13: np.unique raised a bare TypeError on None / mixed kinds; a NaN group split per pair.
    from hf_facerec.evaluation.bias_groups import impostor_fmr_report

    labels = np.tile([1, 0], 20)
    scores = np.where(labels == 1, 0.8, 0.2) + np.linspace(0, 0.01, 40)
    groups = np.array(["a", "b"] * 20, dtype=object)
    groups[3] = bad
    with pytest.raises(ValueError, match=message):
        B.bias_report(scores, labels, groups, far=0.1, n_folds=2)
    with pytest.raises(ValueError, match=message):
        impostor_fmr_report(scores, groups, far=0.1)
