"""Operating points of the Space: thresholds on cosine similarity and where they come from (a model config's
calibration, a results JSON's bias reports and EER, or a small synthetic calibration)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "OperatingPoint", "SpaceInputError", "operating_points_from_config", "operating_points_from_results",
    "verification_reports",
]


class SpaceInputError(ValueError):
    """A problem with what the user gave (no face, not an image, empty gallery, ...); the message is for them."""


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


def verification_reports(results: Mapping) -> dict[str, dict]:
    """``{benchmark: {"verification": ..., "bias": {grouping: report}}}`` from a runner results JSON
    (``benchmarks``) or a quickstart summary (``results.verification`` / ``results.bias``)."""
    if isinstance(results.get("benchmarks"), Mapping):
        return dict(results["benchmarks"])
    inner = results.get("results", results)
    if isinstance(inner, Mapping) and isinstance(inner.get("verification"), Mapping):
        bias = inner.get("bias")
        name = results.get("benchmark_name", "synthetic")
        return {name: {"verification": inner["verification"], "bias": {"group": bias} if bias else {}}}
    return {}


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


