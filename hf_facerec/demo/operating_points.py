"""Operating points of the Space: thresholds on cosine similarity and where they come from (a model config's
calibration, a results JSON's bias reports and EER, or a small synthetic calibration), and what is honest to show:
synthetic-drawing figures belong to the synthetic default model only (:func:`without_synthetic`), a model with no
calibration gets an UNCALIBRATED custom threshold (:func:`uncalibrated_point`), and FAR-based figures measured on too
few impostor pairs are flagged in one place (:func:`far_flag`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SYNTHETIC_BENCHMARK", "UNCALIBRATED_THRESHOLD", "FaceIndexError", "OperatingPoint", "SpaceInputError", "far_flag",
    "is_synthetic_benchmark", "operating_points_from_config", "operating_points_from_results", "trained_on_synthetic",
    "uncalibrated_point", "verification_reports", "without_synthetic",
]

#: The benchmark name of pairs drawn by ``hf_facerec.data.synthetic`` (cartoons: they say nothing about real photos).
SYNTHETIC_BENCHMARK = "synthetic"
#: Default of the custom threshold of a model with no calibration: a typical cosine threshold of margin-trained
#: models (the MobileFaceNet of the smoke test has 0.256 at LFW's EER), NOT measured for the model in use.
UNCALIBRATED_THRESHOLD = 0.3


class SpaceInputError(ValueError):
    """A problem with what the user gave (no face, not an image, empty gallery, ...); the message is for them."""


class FaceIndexError(SpaceInputError):
    """A face number that is not a whole number >= 0 or beyond the faces found; the message is for the user."""


# ---- operating points ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold on cosine similarity ("same" iff score >= threshold) and where it comes from.

    ``far`` is the false accept rate it was set for (None for a threshold not defined by a FAR, e.g. custom).
    """

    name: str
    threshold: float
    far: float | None
    source: str

    @property
    def label(self) -> str:
        return f"{self.name}: threshold {self.threshold:.3f} ({self.source})"

    @property
    def calibrated(self) -> bool:
        """True when the threshold was measured for this model (tied to a FAR or an EER on named pairs)."""
        return self.far is not None


def uncalibrated_point(threshold: float = UNCALIBRATED_THRESHOLD) -> OperatingPoint:
    """A threshold the user set (or the labelled default), measured on nothing: no FAR is known for it."""
    return OperatingPoint("custom", float(threshold), None, "set by you, not measured for this model")


def far_flag(report: Mapping | None, far: float | str) -> str:
    """The one place the Space flags a FAR-based figure (TAR@FAR, threshold at FAR) of ``report`` that its impostor
    pairs cannot support: ``" (unmeasurable: 30 impostor pairs < 1/FAR)"``, else ``""``. The rule is evaluation's
    (:func:`hf_facerec.evaluation.sample_size.far_measurable`: at least 1/FAR impostor pairs)."""
    from hf_facerec.evaluation.sample_size import far_measurable

    n_impostor = (report or {}).get("n_impostor")
    far = _far_from_key(far)
    if far is None or not isinstance(n_impostor, (int, float)) or not 0 < far <= 1 or far_measurable(n_impostor, far):
        return ""
    return f" (unmeasurable: {int(n_impostor)} impostor pairs < 1/FAR)"


def _far_from_key(key) -> float | None:
    """``1e-3``, ``"1e-03"``, ``"far_1e-3"``, ``"FAR=0.001"`` -> 0.001; None when no number is in it."""
    if isinstance(key, (int, float)):
        return float(key)
    match = re.search(r"\d+(?:\.\d*)?(?:[eE][-+]?\d+)?", str(key))
    return float(match.group()) if match else None


def operating_points_from_config(config, source: str | None = None) -> list[OperatingPoint]:
    """Points from a config's ``verification_thresholds`` (``hf_facerec.hub.calibration`` writes ``{"1e-03": 0.31}``
    with ``threshold_pair_set``; ``{far: {"threshold": t}}`` and ``[{"far", "threshold"}]`` are read too). Entries
    without a finite threshold (``None``: FAR not measurable on the pair set) are skipped.

    Args:
        config: a model config or a mapping. source: where the points say they come from (default: the pair set).
    """
    get = config.get if isinstance(config, Mapping) else lambda key: getattr(config, key, None)
    raw = get("verification_thresholds")
    if not raw:
        return []
    source = source or (f"{get('threshold_pair_set')} pairs, model config" if get("threshold_pair_set") else "model config")
    items = raw.items() if isinstance(raw, Mapping) else [(e.get("far"), e) for e in raw if isinstance(e, Mapping)]
    points = []
    for key, value in items:
        threshold = value.get("threshold") if isinstance(value, Mapping) else value
        far = _far_from_key(key)
        if far is not None and isinstance(threshold, (int, float)) and np.isfinite(threshold):
            points.append(OperatingPoint(f"FAR {far:g}", float(threshold), far, source))
    return sorted(points, key=lambda p: p.far)


def _summary_benchmark(results: Mapping) -> str:
    """The benchmark of a quickstart / Space summary: ``benchmark_name``, else read from its ``data`` description
    (quickstart on ``--data/--pairs`` is real data, not synthetic)."""
    if results.get("benchmark_name"):
        return str(results["benchmark_name"])
    data = str(results.get("data") or "")
    return SYNTHETIC_BENCHMARK if data.startswith("synthetic") else ("quickstart" if data else "unnamed")


def verification_reports(results: Mapping) -> dict[str, dict]:
    """``{benchmark: {"verification": ..., "bias": {grouping: report}}}`` from a runner results JSON
    (``benchmarks``) or a quickstart summary (``results.verification`` / ``results.bias``)."""
    if isinstance(results.get("benchmarks"), Mapping):
        return dict(results["benchmarks"])
    inner = results.get("results", results)
    if isinstance(inner, Mapping) and isinstance(inner.get("verification"), Mapping):
        bias = inner.get("bias")
        return {_summary_benchmark(results): {"verification": inner["verification"], "bias": {"group": bias} if bias else {}}}
    return {}


def is_synthetic_benchmark(name: str) -> bool:
    """``synthetic``, ``synthetic_hard``, ``Synthetic pairs`` ... : a benchmark of drawn faces."""
    return str(name).lower().startswith(SYNTHETIC_BENCHMARK)


def trained_on_synthetic(results: Mapping | None) -> bool:
    """True for a quickstart summary of a model TRAINED on synthetic faces (its own evaluation is synthetic too)."""
    return bool(results) and "training" in results and str(results.get("data") or "").startswith("synthetic")


def without_synthetic(results: Mapping | None) -> tuple[dict | None, list[str]]:
    """``(results without synthetic benchmarks or None when nothing is left, names of those removed)``: figures on
    drawings say nothing about a model meant for real photos, so the Space shows them for the synthetic model only."""
    if not results:
        return None, []
    dropped = [name for name in verification_reports(results) if is_synthetic_benchmark(name)]
    if not dropped:
        return dict(results), []
    if isinstance(results.get("benchmarks"), Mapping):
        kept = {k: v for k, v in results["benchmarks"].items() if k not in dropped}
        return ({**results, "benchmarks": kept} if kept else None), dropped
    return None, dropped  # a summary holds one benchmark: the synthetic one


def operating_points_from_results(results: Mapping) -> list[OperatingPoint]:
    """TAR@FAR thresholds of the bias reports (set on all pairs of a benchmark) and each benchmark's EER threshold."""
    points: dict[str, OperatingPoint] = {}
    for bench, report in verification_reports(results).items():
        for bias in (report.get("bias") or {}).values():
            if isinstance(bias, Mapping) and bias.get("threshold") is not None and bias.get("far") is not None:
                far = float(bias["far"])
                points.setdefault(f"FAR {far:g}", OperatingPoint(f"FAR {far:g}", float(bias["threshold"]), far, f"{bench} pairs"))
        verification = report.get("verification") or {}
        if verification.get("eer_threshold") is not None and verification.get("eer") is not None:
            eer = float(verification["eer"])
            name = f"EER {100 * eer:.2f}% ({bench})"
            points.setdefault(name, OperatingPoint(name, float(verification["eer_threshold"]), eer, f"{bench} pairs"))
    return sorted(points.values(), key=lambda p: p.far)


