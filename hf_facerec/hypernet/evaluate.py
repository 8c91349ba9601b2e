"""Generated verifiers through the evaluation core: pair-set verification and closed / open-set identification.

* Verification of a pair (1, 2): the verifier enrolled from image 1 applied to image 2 and the one from image 2
  applied to image 1, probabilities averaged (symmetrised); then :func:`~hf_facerec.evaluation.verification.verification_report`.
* Identification: every probe against every enrolled user's verifier gives a (P, U) probability matrix.
  The core's 1:N metrics (:func:`~hf_facerec.evaluation.identification.identification_report`: rank-k, TPIR@FPIR,
  their tie and threshold rules) read cosine similarities of embeddings, so the matrix is handed over as an exact
  embedding of it: probe p becomes ``[S_p, sqrt(C - |S_p|^2)]`` with one C for all probes, user u the unit vector
  e_u; their cosine is ``S_pu / sqrt(C)``, the same ranking and thresholds for every probe.
"""

from __future__ import annotations

import numpy as np
import torch

from .modeling_hypernet import FaceRecHyperNetwork, batched_logits
from .verifiers import verifier_logits

__all__ = ["identification_from_scores", "pair_scores", "verifier_scores"]


@torch.no_grad()
def generate_weights(model: FaceRecHyperNetwork, enrol_embeddings: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """(U, E, D) or (U, D) enrolment embeddings -> (U, P) generated verifier weights."""
    enrol_embeddings = torch.as_tensor(enrol_embeddings, dtype=torch.float32)
    if enrol_embeddings.ndim == 2:
        enrol_embeddings = enrol_embeddings[:, None]
    model.eval()
    return torch.cat([model.generate(model.pool(enrol_embeddings[i:i + batch_size]))[0]
                      for i in range(0, len(enrol_embeddings), batch_size)])


@torch.no_grad()
def pair_scores(model: FaceRecHyperNetwork, embeddings, pixel_values, index1, index2, batch_size: int = 512) -> np.ndarray:
    """Symmetrised verifier probability of each pair.

    Args:
        embeddings: (N, D) h_bb embeddings of the unique images. pixel_values: (N, C, S, S) their f inputs.
        index1, index2: (Q,) the pairs' image rows.
    Returns:
        (Q,) float64 ``(p(f_1 accepts image 2) + p(f_2 accepts image 1)) / 2``.
    """
    weights = generate_weights(model, embeddings)  # one verifier per image
    pixels = torch.as_tensor(pixel_values, dtype=torch.float32)
    index1, index2 = np.asarray(index1), np.asarray(index2)
    out = []
    for start in range(0, len(index1), batch_size):
        a = torch.as_tensor(index1[start:start + batch_size])
        b = torch.as_tensor(index2[start:start + batch_size])
        ab = batched_logits(model.target, weights[a], pixels[b][:, None], model.shapes)[:, 0]
        ba = batched_logits(model.target, weights[b], pixels[a][:, None], model.shapes)[:, 0]
        out.append(((torch.sigmoid(ab) + torch.sigmoid(ba)) / 2).double().numpy())
    return np.concatenate(out)


def verifier_scores(model: FaceRecHyperNetwork, enrol_embeddings, probe_pixel_values) -> np.ndarray:
    """(U, E, D) enrolment embeddings of U users, (P, C, S, S) probes -> (P, U) probabilities."""
    weights = generate_weights(model, enrol_embeddings)
    logits = verifier_logits(weights, model.config.target_config, torch.as_tensor(probe_pixel_values).float())
    return torch.sigmoid(logits).double().numpy()


def identification_from_scores(scores, probe_labels, gallery_labels, ks=(1, 5), fpirs=(1e-2, 1e-1)) -> dict:
    """The core's :func:`identification_report` of a (P, G) score matrix (higher = more likely the same person)."""
    from ..evaluation.identification import identification_report

    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or not np.isfinite(scores).all():
        raise ValueError(f"scores must be a finite (probes, gallery) matrix, got shape {scores.shape}")
    sq = np.sum(scores ** 2, axis=1)
    c = float(sq.max()) + 1.0
    probe = np.concatenate([scores, np.sqrt(c - sq)[:, None]], axis=1)
    gallery = np.eye(scores.shape[1], scores.shape[1] + 1)
    return identification_report(probe, probe_labels, gallery, gallery_labels, ks=ks, fpirs=fpirs)
