"""The one validation of stored verification thresholds (``config.verification_thresholds``).

A threshold decides ``is_same``: a stored ``"NaN"`` (every comparison False: everyone rejected,
with ``threshold=nan`` reported), a string, or a value outside the cosine range must fail where
the config is read, naming the key, not when a pair is verified. The config (on every load),
:func:`hf_facerec.hub.calibration.store_thresholds` and ``stored_threshold`` all call
:func:`check_verification_thresholds`.

Shipped as remote code beside checkpoints (a sibling of ``configuration_facerec.py``): standard
library only.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

__all__ = ["COSINE_SLACK", "check_verification_thresholds"]

#: Thresholds are cosine similarities, in [-1, 1]; float32 rounding can put a measured score a few ulp past +-1.
COSINE_SLACK = 1e-4


def _far_of(key) -> float:
    """The FAR a key names (``"1e-03"``, ``"0.001"``, ``0.001``), NaN when it names none."""
    if isinstance(key, bool):
        return math.nan
    try:
        return float(key)
    except (TypeError, ValueError):
        return math.nan


def check_verification_thresholds(raw, name: str = "verification_thresholds") -> dict[str, float | None] | None:
    """``raw`` as ``{FAR key: float threshold or None}``, or ValueError naming ``name`` and the key.

    Args:
        raw: None (nothing calibrated) or a mapping whose keys parse as FARs in (0, 1] (two keys may
            not name the same FAR) and whose values are finite numbers in [-1, 1] (cosine) or None
            (a FAR the pair set could not measure).
        name: what ``raw`` is, for the message (e.g. ``"config.verification_thresholds"``).
    Returns:
        None for None, else a new dict with the same keys and float values.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{name} must be a mapping {{FAR: threshold}}, got {type(raw).__name__}: {str(raw)[:80]}")
    out: dict[str, float | None] = {}
    seen: dict[float, object] = {}
    for key, value in raw.items():
        far = _far_of(key)
        if not 0.0 < far <= 1.0:  # False for NaN too
            raise ValueError(f'{name}: key {key!r} is not a FAR (a number in (0, 1], e.g. "1e-03")')
        if far in seen:
            raise ValueError(f"{name}: keys {seen[far]!r} and {key!r} name the same FAR")
        seen[far] = key
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name}[{key!r}] = {value!r} is not a number (null marks a FAR the pair set cannot measure)")
            value = float(value)
            if not (math.isfinite(value) and abs(value) <= 1.0 + COSINE_SLACK):
                raise ValueError(f"{name}[{key!r}] = {value!r} is not a cosine similarity threshold (finite, in [-1, 1])")
        out[key] = value
    return out
