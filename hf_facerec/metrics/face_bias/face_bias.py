"""face_bias: demographic differentials of face verification as an ``evaluate`` module.

A thin wrapper around :func:`hf_facerec.evaluation.bias_report` (pure numpy).
"""

from __future__ import annotations

import datasets
import evaluate

from hf_facerec.evaluation import bias_report
from hf_facerec.metrics._inputs import CallerDtypes, column_values

_DESCRIPTION = """\
Demographic differentials of 1:1 face verification for any grouping column (ethnicity, gender,
age band...). Per group: k-fold accuracy with the group's own thresholds (RFW protocol), and
FMR / FNMR at one global threshold reaching the target FAR over all pairs. Summaries: mean,
STD and SER (max error / min error) of the accuracies; FDR (de Freitas Pereira & Marcel 2022);
GARBE (Howard et al. 2022); max/min FMR and FNMR ratios (ISO/IEC 19795-10 style).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): similarity score of each pair (higher = more similar).
    references (`list[int]`): 1 for a genuine (same identity) pair, 0 for an impostor pair.
    groups (`list[str]`): demographic group of each pair; each group needs genuine and impostor
        pairs and at least `n_folds` pairs.
    far (`float`, defaults to 1e-3): FAR target of the global threshold (over all pairs).
    alpha (`float`, defaults to 0.5): weight of FMR against FNMR in FDR and GARBE.
    folds (`list[int]`, *optional*): fold id of each pair; default contiguous folds per group.
    n_folds (`int`, defaults to 10).
Returns:
    far, threshold, alpha, groups ({group: accuracy, fmr, fnmr, eer, auc, ...}),
    accuracy_summary (mean, std, ser, best/worst group), fdr, garbe, fmr_max_min_ratio,
    fnmr_max_min_ratio. Unbounded/undefined values (e.g. SER with a zero-error group) are None.
    Per group fmr_ci / fnmr_ci (Wilson 95%) and fmr_measurable (False below ceil(1/far) impostor
    pairs); unmeasurable lists the flagged entries and the FMR-based summaries they affect.
"""

_CITATION = """\
@article{pereira2022fairness,
  title={Fairness in Biometrics: A Figure of Merit to Assess Biometric Verification Systems},
  author={de Freitas Pereira, Tiago and Marcel, S{\\'e}bastien},
  journal={IEEE Transactions on Biometrics, Behavior, and Identity Science}, volume={4}, number={1}, year={2022}
}
@article{howard2022garbe,
  title={Evaluating Proposed Fairness Models for Face Recognition Algorithms},
  author={Howard, John J. and Laird, Eli J. and Sirotin, Yevgeniy B. and Rubin, Rebecca E. and Tipton, Jerry L. and Vemury, Arun R.},
  journal={arXiv preprint arXiv:2203.05051}, year={2022}
}
@inproceedings{wang2019rfw,
  title={Racial Faces in the Wild: Reducing Racial Bias by Information Maximization Adaptation Network},
  author={Wang, Mei and Deng, Weihong and Hu, Jiani and Tao, Xunqiang and Huang, Yaohai},
  booktitle={ICCV}, year={2019}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FaceBias(CallerDtypes, evaluate.Metric):
    """Per-group verification accuracy and error rates, with FDR / GARBE / SER summaries."""

    _float_inputs = ("predictions", "references")

    def _info(self) -> evaluate.MetricInfo:
        # float64 scores and labels: stored exactly, so the core validates what the caller passed (see _inputs).
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("float64"),
                    "references": datasets.Value("float64"),
                    "groups": datasets.Value("string"),
                }
            ),
            format="arrow",  # "numpy" would hand float64 columns over as float32
            reference_urls=["https://arxiv.org/abs/2203.05051", "https://doi.org/10.1109/TBIOM.2021.3102862"],
        )

    def _compute(self, predictions, references, groups, far: float = 1e-3, alpha: float = 0.5, folds=None, n_folds: int = 10) -> dict:
        scores, labels = self._caller_array("predictions", predictions), self._caller_array("references", references)
        return bias_report(scores, labels, column_values(groups), far=far, alpha=alpha, folds=folds, n_folds=n_folds)
