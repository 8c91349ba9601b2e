"""When a small sample can measure a number at all, and the interval around a measured rate. numpy only.

The package's one home of these rules (every report, table, plot and the Space read their flags):

* **Operating point at FAR f from n impostor pairs**: measurable only when
  ``n >= ceil(MEASURABLE_FAR_FACTOR / f)`` (:func:`min_impostors`). With fewer, a single false
  match already exceeds f, so the data can only show FAR = 0 (e.g. FMR 0 from 177 impostors at
  FAR 1e-3 says nothing about 1e-3). The same rule covers FPIR (non-mated searches) and a group's
  FMR at a global threshold set for FAR f.
* **k-fold accuracy**: measurable only when every test fold holds ``>= MIN_PAIRS_PER_FOLD`` pairs
  (:func:`kfold_measurable`); a fold of m pairs moves in steps of 1/m, so 15 pairs over 10 folds
  (1-2 pairs a fold) can only give fold accuracies of 0, 0.5 or 1.
* **Error bars of a rate** (FMR, FNMR, k/n): the Wilson score 95% interval (:func:`wilson_interval`),
  always inside [0, 1] and non-degenerate at 0 errors, unlike ``p +- sqrt(p (1 - p) / n)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "CI_LABEL",
    "MEASURABLE_FAR_FACTOR",
    "MIN_PAIRS_PER_FOLD",
    "far_measurable",
    "kfold_measurable",
    "min_impostors",
    "unmeasurable_note",
    "wilson_interval",
]

#: n >= ceil(MEASURABLE_FAR_FACTOR / far) impostor pairs: at least one false match must fit under the target.
MEASURABLE_FAR_FACTOR = 1.0
#: Smallest test fold (pairs) for a k-fold accuracy: steps of 1/30 ~ 3 points are the coarsest reported.
MIN_PAIRS_PER_FOLD = 30
#: Two-sided 95% normal quantile of the Wilson interval.
_Z95 = 1.959963984540054
#: What the error bars of rates are, for captions and JSON.
CI_LABEL = "Wilson score 95% interval"


def min_impostors(far: float) -> int | None:
    """Fewest impostor pairs that measure FAR ``far``: the smallest n with ``FACTOR / n <= far``
    (the same float division a caller applies to a measured FAR); None for ``far == 0`` (never)."""
    far = float(far)
    if not 0.0 <= far <= 1.0 or math.isnan(far):
        raise ValueError(f"far must be a rate in [0, 1], got {far}")
    if far == 0.0:
        return None
    n = max(1, math.ceil(MEASURABLE_FAR_FACTOR / far))
    while n > 1 and MEASURABLE_FAR_FACTOR / (n - 1) <= far:  # ceil of a rounded quotient may be 1 too high
        n -= 1
    while MEASURABLE_FAR_FACTOR / n > far:
        n += 1
    return n


def far_measurable(n_impostor, far):
    """True where ``n_impostor`` impostor pairs can measure FAR ``far`` (:func:`min_impostors`).

    Args:
        n_impostor: int or (F,) ints. far: float or (F,) rates (broadcast together).
    Returns:
        bool, or a bool array of the broadcast shape.
    """
    n = np.asarray(n_impostor, dtype=np.float64)
    fars = np.asarray(far, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ok = (n > 0) & (MEASURABLE_FAR_FACTOR / np.where(n > 0, n, 1.0) <= fars) & (fars > 0)
    return bool(ok) if ok.ndim == 0 else ok


def unmeasurable_note(n_impostor: int, far: float) -> str:
    """The one wording of an unmeasurable FAR point, e.g. ``"n=177 < 1000"`` (impostor pairs)."""
    needed = min_impostors(far)
    return f"n={int(n_impostor)} < {needed}" if needed is not None else f"n={int(n_impostor)}, FAR 0 is never measurable"


def kfold_measurable(fold_sizes) -> bool:
    """True when every test fold (sizes (K,)) holds at least :data:`MIN_PAIRS_PER_FOLD` pairs."""
    sizes = np.asarray(fold_sizes)
    return bool(sizes.size) and int(sizes.min()) >= MIN_PAIRS_PER_FOLD


def wilson_interval(successes, n) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score 95% interval of a binomial rate ``successes / n``, inside [0, 1].

    Args:
        successes: int or (K,) counts. n: int or (K,) trials (0 gives the whole [0, 1]).
    Returns:
        ``(low, high)``, floats or (K,) arrays: ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if (k < 0).any() or (k > n).any():
        raise ValueError(f"successes must be in [0, n], got {k.tolist()} of {n.tolist()}")
    safe_n = np.where(n > 0, n, 1.0)
    p, z2 = k / safe_n, _Z95**2
    centre = (p + z2 / (2 * safe_n)) / (1 + z2 / safe_n)
    half = _Z95 * np.sqrt(p * (1 - p) / safe_n + z2 / (4 * safe_n**2)) / (1 + z2 / safe_n)
    # min/max with p: the exact interval always contains p; rounding can put a bound a hair past it (0 -> 7e-18)
    low = np.where(n > 0, np.clip(np.minimum(centre - half, p), 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip(np.maximum(centre + half, p), 0.0, 1.0), 1.0)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high
