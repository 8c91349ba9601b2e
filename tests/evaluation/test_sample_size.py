"""Small-sample statistics: which numbers the data can measure, and honest error bars, in every output.

Each test is one case of the issue, with a hand-computed answer: FMR 0 from 177 impostors at FAR 1e-3,
a 15-pair 10-fold accuracy of 1.0, error bars past 1.0 on 9-impostor groups, AUC in the ROC legend,
n on each bar, the histogram's threshold named.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hf_facerec.evaluation import bias_report, identification_report, kfold_accuracy, verification_report
from hf_facerec.evaluation import sample_size as S
from hf_facerec.evaluation.bias_groups import impostor_fmr_report


def _separable(n_genuine: int, n_impostor: int):
    """Genuine scores 0.6.. above impostor scores ..0.4: every threshold-based rate is exact."""
    scores = np.concatenate([np.linspace(0.6, 0.9, n_genuine), np.linspace(0.0, 0.4, n_impostor)])
    return scores, np.r_[np.ones(n_genuine, int), np.zeros(n_impostor, int)]


# ---- the rule --------------------------------------------------------------------------------------


def test_min_impostors_is_ceil_of_one_over_far():
    assert S.min_impostors(1e-3) == 1000 and S.min_impostors(1e-4) == 10000
    assert S.min_impostors(1e-5) == 100000  # 1 / 1e-5 is 99999.99999999999 in floats: still 100,000
    assert S.min_impostors(3e-3) == 334 and S.min_impostors(1.0) == 1 and S.min_impostors(0.0) is None
    assert S.far_measurable(177, 1e-3) is False and S.far_measurable(999, 1e-3) is False
    assert S.far_measurable(1000, 1e-3) is True and S.far_measurable(0, 0.5) is False
    assert S.unmeasurable_note(177, 1e-3) == "n=177 < 1000"


def test_177_impostors_at_far_1e3_are_flagged_1000_are_not():
    report = verification_report(*_separable(200, 177), fars=(1e-3, 1e-2), n_folds=None)
    assert report["n_impostor"] == 177 and report["tar_at_far"]["1e-03"] is None  # never a bare 0 or 1
    assert report["tar_at_far_measurable"] == {"1e-03": False, "1e-02": True}
    assert report["min_impostors_at_far"] == {"1e-03": 1000, "1e-02": 100}
    assert report["unmeasurable"] == ["tar_at_far.1e-03"]
    measured = verification_report(*_separable(200, 1000), fars=(1e-3,), n_folds=None)
    assert measured["tar_at_far"]["1e-03"] == 1.0 and measured["tar_at_far_measurable"] == {"1e-03": True}
    assert measured["unmeasurable"] == []
    json.dumps(report, allow_nan=False)


def test_15_pairs_over_10_folds_accuracy_is_flagged():
    scores, labels = _separable(8, 7)
    folds = np.arange(15) % 10  # fold sizes 2,2,2,2,2,1,1,1,1,1
    kfold = kfold_accuracy(scores, labels, folds=folds)
    assert kfold["mean"] == 1.0 and kfold["measurable"] is False and kfold["fold_sizes"] == [2] * 5 + [1] * 5
    report = verification_report(scores, labels, folds=folds, fars=(0.1,))
    assert report["accuracy"] == 1.0 and report["accuracy_measurable"] is False and report["min_fold_pairs"] == 1
    assert {"accuracy", "accuracy_std"} <= set(report["unmeasurable"])
    # 300 pairs in 10 folds of 30: measurable (MIN_PAIRS_PER_FOLD = 30).
    scores, labels = _separable(150, 150)
    big = verification_report(scores, labels, folds=np.arange(300) % 10, fars=(0.1,))
    assert big["accuracy_measurable"] is True and big["min_fold_pairs"] == S.MIN_PAIRS_PER_FOLD


def test_wilson_interval_known_values_and_bounds():
    low, high = S.wilson_interval(0, 10)  # z^2/n / (1 + z^2/n) = 0.38415 / 1.38415
    assert low == 0.0 and high == pytest.approx(0.27753, abs=1e-5)
    low, high = S.wilson_interval(81, 263)  # Newcombe (1998), Statistics in Medicine 17, example: 0.2553-0.3662
    assert (low, high) == (pytest.approx(0.2553, abs=1e-4), pytest.approx(0.3662, abs=1e-4))
    lows, highs = S.wilson_interval(np.array([0, 9, 1]), np.array([9, 9, 1]))
    assert (lows >= 0).all() and (highs <= 1).all() and highs[1] == 1.0 and lows[0] == 0.0


def test_bias_group_with_9_impostors_is_flagged():
    rng = np.random.default_rng(0)
    # Group a: 1000 genuine + 1000 impostor pairs; group b: 50 genuine, 9 impostor pairs.
    labels = np.r_[np.ones(1000), np.zeros(1000), np.ones(50), np.zeros(9)].astype(int)
    scores = np.where(labels == 1, rng.normal(0.7, 0.1, labels.size), rng.normal(0.1, 0.1, labels.size))
    groups = np.r_[np.full(2000, "a"), np.full(59, "b")]
    report = bias_report(scores, labels, groups, far=1e-3, folds=np.arange(labels.size) % 2)
    b = report["groups"]["b"]
    assert b["n_impostor"] == 9 and b["fmr_measurable"] is False and b["min_impostors"] == 1000
    assert report["groups"]["a"]["fmr_measurable"] is True
    assert 0.0 <= b["fmr_ci"][0] <= b["fmr"] <= b["fmr_ci"][1] <= 1.0 and report["ci"] == S.CI_LABEL
    assert {"groups.b.fmr", "fdr", "garbe", "fmr_max_min_ratio"} <= set(report["unmeasurable"])
    assert "groups.a.fmr" not in report["unmeasurable"]
    json.dumps(report, allow_nan=False)


def test_impostor_only_groups_are_flagged():
    scores = np.r_[np.linspace(0, 1, 1000), np.linspace(0, 0.5, 9)]
    groups = np.r_[np.full(1000, "x"), np.full(9, "y")]
    report = impostor_fmr_report(scores, groups, far=1e-3)
    assert report["groups"]["y"]["fmr_measurable"] is False and report["groups"]["x"]["fmr_measurable"] is True
    assert report["unmeasurable"] == ["groups.y.fmr", "fmr_max_min_ratio", "fmr_gini"]


def test_tpir_at_fpir_flag_counts_non_mated_probes():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(20, 8))
    probe = np.r_[gallery[:10] + 0.05 * rng.normal(size=(10, 8)), rng.normal(size=(50, 8))]
    labels = np.r_[np.arange(10), np.arange(100, 150)]  # 10 mated, 50 non-mated probes
    report = identification_report(probe, labels, gallery, np.arange(20), fpirs=(1e-2, 1e-1))
    assert report["n_non_mated"] == 50
    assert report["tpir_at_fpir_measurable"] == {"1e-02": False, "1e-01": True}  # 50 < ceil(1/0.01) = 100
    assert report["unmeasurable"] == ["tpir_at_fpir.1e-02"]


# ---- what the runner writes ------------------------------------------------------------------------


def _results(tmp_path):
    """A runner results dict of one pair benchmark: 200 genuine + 177 impostor pairs over 10 folds,
    and a grouping whose group b has 9 impostor pairs."""
    from hf_facerec.evaluation.bias_groups import grouped_bias_report

    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(200), np.zeros(177)].astype(int)
    scores = np.where(labels == 1, rng.normal(0.7, 0.12, labels.size), rng.normal(0.15, 0.12, labels.size))
    groups = np.r_[np.full(150, "a"), np.full(50, "b"), np.full(168, "a"), np.full(9, "b")]
    folds = np.arange(labels.size) % 2
    results = {
        "model": "m", "model_fingerprint": "0" * 40, "skipped": {},
        "settings": {"flip": "sum", "align": "none", "face_size": [112, 112], "far": 1e-2},
        "benchmarks": {"tiny": {
            "n_pairs": int(labels.size), "n_images": 754,
            "verification": verification_report(scores, labels, fars=(1e-4, 1e-3, 1e-2)),
            "bias": {"group": grouped_bias_report(scores, labels, groups, far=1e-2, folds=folds)},
        }},
    }
    return results, {"tiny": {"scores": scores, "labels": labels}}


def test_runner_outputs_flag_small_samples(tmp_path):
    pytest.importorskip("matplotlib")
    from hf_facerec.benchmarks.outputs import write_outputs

    results, curves = _results(tmp_path)
    write_outputs(results, curves, tmp_path)
    markdown = (tmp_path / "results.md").read_text()
    # TAR@FAR=1e-3 from 177 impostors: "n/a (n=177 < 1000)", not a bare number.
    assert "| n/a (n=177 < 10000) | n/a (n=177 < 1000) |" in markdown
    assert "| b | " in markdown and "n/a (n=9 < 100)" in markdown  # group b's FMR at FAR 1e-2 from 9 impostors
    assert "Wilson score 95% interval" in markdown
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["benchmarks"]["tiny"]["verification"]["tar_at_far_measurable"] == {"1e-04": False, "1e-03": False, "1e-02": True}
    assert {"tiny/verification/tar_at_far.1e-03", "tiny/bias/group/groups.b.fmr"} <= set(on_disk["unmeasurable"])
    assert "tiny/bias/group/groups.a.fmr" not in on_disk["unmeasurable"]  # 168 impostors >= ceil(1/0.01)
    assert set(on_disk["sample_size_rules"]) == {"far", "kfold", "error_bars"}
    assert (tmp_path / "bias_tiny_group_fmr.png").stat().st_size > 1000


def test_markdown_footnotes_a_15_pair_kfold_accuracy(tmp_path):
    from hf_facerec.benchmarks.outputs import markdown_report

    scores, labels = _separable(8, 7)
    results, _ = _results(tmp_path)
    results["benchmarks"]["tiny"]["verification"] = verification_report(scores, labels, fars=(1e-3,))
    markdown = markdown_report({**results, "benchmarks": {"tiny": {**results["benchmarks"]["tiny"], "bias": {}}}})
    assert "| 100.00 † |" in markdown and "smallest test fold of 1 pair(s), fewer than 30" in markdown


def test_wilson_interval_contains_the_rate_at_zero_and_all():
    """A zero count once gave a lower bound of 7e-18 above the rate 0 (rounding), which the bar plot refused."""
    from hf_facerec.evaluation.sample_size import wilson_interval

    for n in (1, 9, 50, 177, 1000):
        low, high = wilson_interval(0, n)
        assert low == 0.0 < high
        low, high = wilson_interval(n, n)
        assert low < high == 1.0
