"""Evaluation: the numpy metric core (verification, identification, bias) and plots.

The torch side (embedding benchmarks, the cache, the reports) is :mod:`hf_facerec.benchmarks`.

Conventions (details in :mod:`~hf_facerec.evaluation.verification`): higher score = more similar,
"same" iff score >= threshold, label 1 = genuine/mated. What a small sample can measure, and the
intervals of rates, is :mod:`~hf_facerec.evaluation.sample_size`. The core imports only numpy;
matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

from .bias import (
    bias_report,
    fairness_discrepancy_rate,
    fmr_fnmr_per_group,
    garbe,
    gini_coefficient,
    group_accuracy_summary,
    max_min_ratio,
    per_group_verification,
)
from .bias_groups import (
    MIXED_GROUP,
    grouped_bias_report,
    groups_with_both_classes,
    identity_pair_groups,
    impostor_fmr_report,
)
from .identification import (
    DEFAULT_FPIRS,
    cmc_curve,
    identification_report,
    rank_k_accuracy,
    similarity_matrix,
    top_k,
    tpir_at_fpir,
)
from .neighbors import NeighborIndex, duplicate_clusters, near_duplicate_pairs
from .plots import plot_det, plot_group_bars, plot_roc, plot_score_histogram
from .sample_size import MEASURABLE_FAR_FACTOR, MIN_PAIRS_PER_FOLD, far_measurable, min_impostors, wilson_interval
from .scoring import cosine_similarity, pair_scores, template_embeddings
from .verification import (
    DEFAULT_FARS,
    best_threshold_accuracy,
    det_curve,
    equal_error_rate,
    impostor_threshold,
    kfold_accuracy,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_at_far,
    verification_report,
)

__all__ = [
    "DEFAULT_FARS",
    "DEFAULT_FPIRS",
    "MEASURABLE_FAR_FACTOR",
    "MIN_PAIRS_PER_FOLD",
    "MIXED_GROUP",
    "NeighborIndex",
    "grouped_bias_report",
    "groups_with_both_classes",
    "identity_pair_groups",
    "impostor_fmr_report",
    "impostor_threshold",
    "best_threshold_accuracy",
    "bias_report",
    "cmc_curve",
    "cosine_similarity",
    "det_curve",
    "duplicate_clusters",
    "equal_error_rate",
    "far_measurable",
    "fairness_discrepancy_rate",
    "fmr_fnmr_per_group",
    "garbe",
    "gini_coefficient",
    "group_accuracy_summary",
    "identification_report",
    "kfold_accuracy",
    "max_min_ratio",
    "min_impostors",
    "near_duplicate_pairs",
    "pair_scores",
    "per_group_verification",
    "plot_det",
    "plot_group_bars",
    "plot_roc",
    "plot_score_histogram",
    "rank_k_accuracy",
    "roc_auc",
    "roc_curve",
    "similarity_matrix",
    "tar_at_far",
    "template_embeddings",
    "threshold_at_far",
    "top_k",
    "tpir_at_fpir",
    "verification_report",
    "wilson_interval",
]
