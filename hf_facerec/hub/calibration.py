"""Verification thresholds calibrated on a named pair set and stored with the model, so users stop guessing.

A threshold is the cosine similarity at which a model, on a given pair set, accepts at most a target fraction of
impostor pairs (FAR). It is computed with the package's one threshold-at-FAR routine,
:func:`hf_facerec.evaluation.verification.threshold_at_far` (smallest candidate whose empirical FAR <= target), and
saved in the model config as ``verification_thresholds = {"1e-03": 0.31, ...}`` with the pair set's name
(``threshold_pair_set``) and the flip test-time augmentation the scores used (``threshold_flip``): a threshold only
means something for scores made the same way. Targets below ``1 / #impostor pairs`` cannot be measured and are
stored as ``None`` (never a made-up number).

Official LFW View 2 has 3,000 impostor pairs: it resolves FAR 1e-3 (3 false accepts) but not 1e-4.
:func:`all_pairs` turns a labelled image set into every cross pair (N (N - 1) / 2) to reach lower FARs cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..evaluation._checks import _rate_key
from ..evaluation.verification import tar_at_far, threshold_at_far
from ..models.thresholds import check_verification_thresholds

__all__ = [
    "CALIBRATION_FARS",
    "DEFAULT_FAR",
    "ThresholdCalibration",
    "all_pairs",
    "calibrate_embeddings",
    "calibrate_pairs",
    "calibrate_thresholds",
    "store_thresholds",
    "stored_threshold",
]

CALIBRATION_FARS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
#: The operating point a pipeline decides at unless told otherwise.
DEFAULT_FAR = 1e-3


@dataclass(frozen=True)
class ThresholdCalibration:
    """Thresholds of one model on one pair set.

    Attributes:
        thresholds: ``{"1e-03": threshold}`` (``None`` where the target is below ``1 / n_impostor``).
        tar: ``{"1e-03": TAR at that threshold}`` on the same pairs (``None`` likewise).
        pair_set: human-readable name of the pair set (shown in the card).
        n_genuine, n_impostor: pair counts.
        flip: flip TTA of the scores (``"none"``, ``"sum"``, ``"concat"``).
    """

    thresholds: dict[str, float | None]
    tar: dict[str, float | None]
    pair_set: str
    n_genuine: int
    n_impostor: int
    flip: str = "none"

    def to_dict(self) -> dict:
        return asdict(self)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def calibrate_thresholds(
    scores, labels, pair_set: str, fars: Sequence[float] = CALIBRATION_FARS, flip: str = "none"
) -> ThresholdCalibration:
    """Thresholds at each FAR target on (scores, labels) of the pair set named `pair_set`.

    Args:
        scores: (N,) cosine similarities. labels: (N,) 1 = same person.
        pair_set: a name that says what the pairs are (e.g. ``"LFW View 2 (6,000 official pairs)"``).
        fars: targets in (0, 1).
        flip: the flip TTA the scores were made with (recorded; the pipeline uses it by default).
    Raises:
        ValueError: empty/NaN scores, one class only, no pair-set name, bad FAR targets.
    """
    if not isinstance(pair_set, str) or not pair_set.strip():
        raise ValueError("pair_set must name the pair set the thresholds were measured on")
    if flip not in ("none", "sum", "concat"):
        raise ValueError(f"flip must be 'none', 'sum' or 'concat', got {flip!r}")
    fars = [float(f) for f in fars]
    if not fars or any(not 0.0 < f < 1.0 for f in fars):
        raise ValueError(f"FAR targets must be in (0, 1), got {fars}")
    labels = np.asarray(labels)
    if labels.size and (np.count_nonzero(labels) == 0 or np.count_nonzero(labels) == labels.size):
        raise ValueError("calibration needs both genuine and impostor pairs")
    thresholds = threshold_at_far(scores, labels, fars, unreachable="nan")
    tars = tar_at_far(scores, labels, fars)
    n_genuine = int(np.count_nonzero(labels))
    return ThresholdCalibration(
        thresholds={_rate_key(f): _finite_or_none(t) for f, t in zip(fars, thresholds)},
        tar={_rate_key(f): _finite_or_none(tars[f]) for f in fars},
        pair_set=pair_set.strip(),
        n_genuine=n_genuine,
        n_impostor=int(labels.size - n_genuine),
        flip=flip,
    )


def all_pairs(embeddings, identities) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels of every unordered pair of distinct rows.

    Args:
        embeddings: (M, D) (normalised here). identities: (M,) identity of each row.
    Returns:
        ``(scores (M (M - 1) / 2,) float32, labels (same,) bool)`` in ``np.triu_indices(M, 1)`` order.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    identities = np.asarray(identities)
    if emb.ndim != 2 or emb.shape[0] < 2 or identities.shape != (emb.shape[0],):
        raise ValueError(f"need (M >= 2, D) embeddings and (M,) identities, got {emb.shape} and {identities.shape}")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if not np.all(np.isfinite(emb)) or np.any(norms == 0):
        raise ValueError("embeddings must be finite and non-zero")
    emb = emb / norms
    upper = np.triu(np.ones((emb.shape[0],) * 2, dtype=bool), k=1)
    # One Gram matrix and one identity-equality matrix, both read through the same upper-triangle mask.
    scores = (emb @ emb.T)[upper]
    labels = (identities[:, None] == identities[None, :])[upper]
    return scores, labels


def calibrate_embeddings(
    embeddings, identities, pair_set: str, fars: Sequence[float] = CALIBRATION_FARS, flip: str = "none"
) -> ThresholdCalibration:
    """:func:`calibrate_thresholds` over :func:`all_pairs` of labelled embeddings (M, D)."""
    scores, labels = all_pairs(embeddings, identities)
    return calibrate_thresholds(scores, labels, pair_set, fars, flip)


def calibrate_pairs(
    embedder, images1: Sequence, images2: Sequence, labels, pair_set: str, fars: Sequence[float] = CALIBRATION_FARS
) -> ThresholdCalibration:
    """Embed the pairs' images once each with `embedder` (a `FaceEmbedder` or `OnnxFaceEmbedder`, whose
    ``preprocess`` aligns photos if needed) and calibrate on their cosine scores.

    Args:
        images1, images2: (P,) image sources (paths or encoded bytes; each distinct image is embedded once). labels: (P,) 1 = same person.
    """
    from ..data.pairs import unique_images
    from ..evaluation.scoring import pair_scores

    if len(images1) == 0:
        raise ValueError("no pairs to calibrate on")
    sources, index1, index2 = unique_images(images1, images2)
    embeddings = embedder(sources)
    scores = pair_scores(embeddings, index1, index2)
    return calibrate_thresholds(scores, labels, pair_set, fars, flip=getattr(embedder, "flip", "none"))


def store_thresholds(model_or_config, calibration: ThresholdCalibration):
    """Write `calibration` into the config (of a model, or a config itself); returns the config.

    ``save_pretrained`` afterwards persists it in ``config.json``.
    """
    config = getattr(model_or_config, "config", model_or_config)
    if not hasattr(config, "embedding_size"):
        raise ValueError(f"expected a FaceRec model or FaceRecConfig, got {type(model_or_config).__name__}")
    config.verification_thresholds = check_verification_thresholds(calibration.thresholds, "calibration.thresholds")
    config.threshold_pair_set = calibration.pair_set
    config.threshold_flip = calibration.flip
    return config


def stored_threshold(config, far: float | str | None = None) -> tuple[str, float]:
    """The stored threshold at `far` (default :data:`DEFAULT_FAR` if measured, else the strictest measured one).

    Returns:
        ``(far key, threshold)``, e.g. ``("1e-03", 0.31)``.
    Raises:
        ValueError: nothing calibrated, or no measured threshold at `far` (lists what is there).
    """
    # Validated here too: a config attribute set after loading never went through FaceRecConfig's check.
    raw = check_verification_thresholds(getattr(config, "verification_thresholds", None), "config.verification_thresholds")
    stored = {k: v for k, v in (raw or {}).items() if v is not None}
    if not stored:
        raise ValueError(
            "this model has no calibrated verification threshold: pass threshold=... or calibrate it "
            "(hf_facerec.hub.calibration, hf-facerec push --calibrate-pairs)"
        )
    by_far = {float(k): k for k in stored}  # keys are validated FARs: "0.001" and "1e-03" are one target
    if far is None:
        target = DEFAULT_FAR if DEFAULT_FAR in by_far else min(by_far)  # else the strictest measured: the safest default
    else:
        try:
            target = float(far)
        except ValueError:
            raise ValueError(f"far must be a number, got {far!r}") from None
    if target not in by_far:
        raise ValueError(f"no threshold measured at FAR {_rate_key(target)}; stored: {sorted(stored, key=float)}")
    return by_far[target], float(stored[by_far[target]])
