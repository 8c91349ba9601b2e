"""face_verification: 1:1 face verification metrics as an ``evaluate`` module.

A thin wrapper: the numbers come from :func:`hf_facerec.evaluation.verification_report`
(pure numpy), so the module, the CLI runner and the model cards agree to the last digit.
"""

from __future__ import annotations

import datasets
import evaluate

from hf_facerec.evaluation import DEFAULT_FARS, verification_report
from hf_facerec.metrics._inputs import CallerDtypes

_DESCRIPTION = """\
Face verification (1:1) metrics from similarity scores of image pairs: k-fold accuracy
(LFW "unrestricted" protocol: threshold chosen on the other folds), best-threshold accuracy,
TAR@FAR (smallest threshold with FAR <= target; None when the target is below 1/#impostors),
EER and ROC AUC. Higher score = more similar; a pair is accepted iff score >= threshold.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): similarity score of each pair (higher = more similar), finite.
    references (`list[int]`): 1 if the pair shows the same identity (genuine), 0 otherwise.
    folds (`list[int]`, *optional*): fold id of each pair; default: 10 contiguous equal folds in
        pair order (LFW pairs.txt: fold k = pairs [600k, 600k + 600)).
    n_folds (`int` or `None`, defaults to 10): number of contiguous folds when `folds` is not
        given; None skips the k-fold accuracy (IJB-style TAR@FAR-only protocols).
    fars (`list[float]`, defaults to (1e-6, ..., 1e-1)): FAR targets for TAR@FAR.
Returns:
    accuracy, accuracy_std (10-fold mean and population STD), best_threshold_accuracy,
    best_threshold, tar_at_far ({"1e-04": tar or None}), eer, eer_threshold, auc, n_genuine,
    n_impostor; small-sample flags tar_at_far_measurable ({"1e-03": False} below ceil(1/FAR)
    impostor pairs), min_impostors_at_far, accuracy_measurable (False when a test fold has < 30
    pairs), min_fold_pairs and unmeasurable (the keys not to read as measurements).
Examples:
    >>> metric = evaluate.load("face_verification")
    >>> metric.compute(predictions=[0.9, 0.2, 0.8, 0.1], references=[1, 0, 1, 0], n_folds=2)["accuracy"]
    1.0
"""

_CITATION = """\
@techreport{huang2007lfw,
  title={Labeled Faces in the Wild: A Database for Studying Face Recognition in Unconstrained Environments},
  author={Huang, Gary B. and Ramesh, Manu and Berg, Tamara and Learned-Miller, Erik},
  institution={University of Massachusetts, Amherst}, number={07-49}, year={2007}
}
@article{fawcett2006roc,
  title={An introduction to ROC analysis}, author={Fawcett, Tom},
  journal={Pattern Recognition Letters}, volume={27}, number={8}, pages={861--874}, year={2006}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FaceVerification(CallerDtypes, evaluate.Metric):
    """1:1 verification: scores of pairs + same/different labels -> accuracy, TAR@FAR, EER, AUC."""

    _float_inputs = ("predictions", "references")

    def _info(self) -> evaluate.MetricInfo:
        # float64 for both: stored exactly, so the core validates what the caller passed (see _inputs).
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
            format="arrow",  # "numpy" would hand float64 columns over as float32
            reference_urls=["https://vis-www.cs.umass.edu/lfw/", "https://doi.org/10.1016/j.patrec.2005.10.010"],
        )

    def _compute(self, predictions, references, folds=None, n_folds: int | None = 10, fars=DEFAULT_FARS) -> dict:
        scores, labels = self._caller_array("predictions", predictions), self._caller_array("references", references)
        return verification_report(scores, labels, folds=folds, fars=fars, n_folds=n_folds)
