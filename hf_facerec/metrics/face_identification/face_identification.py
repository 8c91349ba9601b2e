"""face_identification: 1:N face identification metrics as an ``evaluate`` module.

Inputs are probe embeddings (`predictions`, one list of floats per probe) and probe identity ids
(`references`); the gallery is fixed for a whole evaluation, so it is passed to ``compute`` as
keyword arguments rather than stored row by row. A thin wrapper around
:func:`hf_facerec.evaluation.identification_report` (pure numpy, chunked over probes).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from hf_facerec.evaluation import DEFAULT_FPIRS, identification_report
from hf_facerec.metrics._inputs import CallerDtypes

_DESCRIPTION = """\
Face identification (1:N) metrics from embeddings. Closed set: rank-k identification rates
(rank = 1 + number of non-mated gallery entries scoring >= the best mated score). Open set
(NIST FRVT / IJB-C 1:N): probes whose identity is absent from the gallery are non-mated searches;
TPIR at FPIR targets (threshold = smallest candidate with FPIR <= target). Cosine similarity.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): probe embeddings, shape (P, D).
    references (`list[int]`): identity id of each probe (P,).
    gallery_embeddings (`array-like`): gallery embeddings, shape (G, D); one row per gallery
        entry (image or template).
    gallery_labels (`array-like`): identity id of each gallery entry (G,).
    ks (`list[int]`, defaults to (1, 5)): ranks for rank-k accuracy.
    fpirs (`list[float]`, defaults to (1e-3, 1e-2, 1e-1)): FPIR targets (open set).
    rank (`int`, defaults to 1): R in TPIR(T, R).
Returns:
    rank_<k> per k, tpir_at_fpir ({"1e-02": tpir or None}; empty without non-mated probes),
    n_probes, n_mated, n_non_mated, n_gallery, n_identities; tpir_at_fpir_measurable (False below
    ceil(1/FPIR) non-mated probes) and unmeasurable.
"""

_CITATION = """\
@techreport{grother2019frvt1n,
  title={Face Recognition Vendor Test (FRVT) Part 2: Identification},
  author={Grother, Patrick and Ngan, Mei and Hanaoka, Kayee},
  institution={NIST}, number={NISTIR 8271}, year={2019}
}
@inproceedings{maze2018ijbc,
  title={IARPA Janus Benchmark - C: Face Dataset and Protocol},
  author={Maze, Brianna and Adams, Jocelyn and Duncan, James A. and others},
  booktitle={ICB}, year={2018}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FaceIdentification(CallerDtypes, evaluate.Metric):
    """1:N identification: probe embeddings + ids against a gallery -> rank-k, TPIR@FPIR."""

    _integer_inputs = ("references",)

    def _info(self) -> evaluate.MetricInfo:
        # float64 embeddings: stored exactly, handed to the core in the caller's dtype (see _inputs).
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
            # No "numpy" format: evaluate allows it only for scalar features; lists are stacked below.
            reference_urls=["https://doi.org/10.6028/NIST.IR.8271"],
        )

    def _compute(
        self, predictions, references, gallery_embeddings=None, gallery_labels=None, ks=(1, 5), fpirs=DEFAULT_FPIRS, rank: int = 1
    ) -> dict:
        if gallery_embeddings is None or gallery_labels is None:
            raise ValueError("face_identification needs gallery_embeddings and gallery_labels passed to compute()")
        probe = self._caller_array("predictions", predictions)  # list of P lists of D floats -> (P, D)
        return identification_report(
            probe, np.asarray(references), np.asarray(gallery_embeddings), np.asarray(gallery_labels), ks=ks, fpirs=fpirs, rank=rank
        )
