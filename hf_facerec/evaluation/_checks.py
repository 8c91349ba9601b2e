"""Input validation shared by the numpy metric core (verification, identification, bias).

Every public metric function funnels its inputs through these helpers so that bad input
(NaN/inf, wrong shapes, non-binary labels, empty arrays) fails loudly with a ``ValueError``
naming the argument, instead of silently producing a number. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

__all__: list[str] = []  # private module


def _all_finite(arr: np.ndarray) -> bool:
    """True iff no NaN/inf. The sum propagates NaN/inf with O(1) extra memory (no (N, D) bool
    temporary for a 100K x 512 gallery); only a non-finite sum (or overflow) needs the exact check."""
    return bool(np.isfinite(arr.sum())) or bool(np.isfinite(arr).all())


def _as_scores(scores, name: str = "scores") -> np.ndarray:
    """Return a finite 1-D float array, shape (N,). float32/float64 are kept (no copy), other reals become float64."""
    arr = np.asarray(scores)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if not _all_finite(arr):
        raise ValueError(f"{name} contains NaN or inf (at index {int(np.flatnonzero(~np.isfinite(arr))[0])})")
    return arr


def _as_labels(labels, n: int, name: str = "labels", require_both: bool = True) -> np.ndarray:
    """Return binary labels (1/True = genuine/mated) as a bool array, shape (n,).

    Accepts bool, integer or float arrays holding only 0 and 1. With ``require_both`` a single
    class is an error: no rate with an empty denominator is ever reported.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but scores have length {n}")
    if arr.dtype != bool:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"{name} must be binary (0/1 or bool), got dtype {arr.dtype}")
        if arr.dtype.kind == "f" and not _all_finite(arr):  # a null stored by evaluate/pandas arrives as NaN
            raise ValueError(f"{name} contains NaN or inf (a missing label?) at index {int(np.flatnonzero(~np.isfinite(arr))[0])}")
        # min/max are two fast reductions; for integers they prove the values are {0, 1}.
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"{name} must be binary (0/1 or bool), found values outside [0, 1]")
        if np.issubdtype(arr.dtype, np.floating) and not ((arr == 0) | (arr == 1)).all():
            raise ValueError(f"{name} must be binary (0/1 or bool), found non-integer values")
        arr = arr.astype(bool)
    if require_both:
        n_pos = int(np.count_nonzero(arr))
        if n_pos == 0 or n_pos == arr.size:
            kind = "impostor (0)" if n_pos == arr.size else "genuine (1)"
            raise ValueError(f"{name} contain one class only: no {kind} pairs, rates are undefined")
    return arr


def _group_kind(t: type) -> str:
    """"str", "number" or the type's name: values of two kinds cannot be sorted together."""
    if issubclass(t, str):
        return "str"
    return "number" if issubclass(t, (int, float, np.number, np.bool_)) else t.__name__


def _as_groups(groups, n: int, name: str = "groups") -> np.ndarray:
    """Return group names, shape (n,): no None, no NaN/inf, one orderable kind (all str or all numbers).

    ``np.unique`` on an object array with None or mixed str/int raises a bare TypeError, and a NaN
    group compares unequal to itself (every NaN pair its own group): refuse both, with the index.
    """
    arr = np.asarray(groups)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind == "O":
        missing = np.equal(arr, None)
        if missing.any():
            raise ValueError(
                f"{name} contains None (a pair without a group) at index {int(np.flatnonzero(missing)[0])}: "
                "name its group or leave the pair out"
            )
        not_self = np.not_equal(arr, arr)  # elementwise in C: True only for NaN-like objects
        if not_self.any():
            raise ValueError(f"{name} contains NaN at index {int(np.flatnonzero(not_self)[0])}")
        # One pass over the types (far cheaper than the object sort np.unique does next).
        kinds = {_group_kind(t) for t in set(map(type, arr.tolist()))}
        if len(kinds) > 1:
            raise ValueError(f"{name} mixes {' and '.join(sorted(kinds))} values, which cannot be ordered together")
    elif arr.dtype.kind not in "biufUS":
        raise ValueError(f"{name} must be strings or numbers, got dtype {arr.dtype}")
    elif arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf (at index {int(np.flatnonzero(~np.isfinite(arr))[0])})")
    return arr


def _as_embeddings(x, name: str) -> np.ndarray:
    """Return a finite 2-D float array (N, D) with no all-zero row (float32/float64 kept)."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    if not _all_finite(arr):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _l2_normalize(x: np.ndarray, name: str) -> np.ndarray:
    """Rows of ``x`` (N, D) scaled to unit L2 norm (a new array); a zero row is an error."""
    return x / _row_norms(x, name)[:, None]


def _row_norms(x: np.ndarray, name: str) -> np.ndarray:
    """L2 norm of each row of ``x`` (N, D) -> (N,), without an (N, D) temporary; zero rows raise."""
    norms = np.sqrt(np.einsum("nd,nd->n", x, x))
    if (norms == 0).any():
        raise ValueError(f"{name} has an all-zero row (index {int(np.flatnonzero(norms == 0)[0])}); cosine is undefined")
    return norms


def _as_rates(values, name: str) -> np.ndarray:
    """Return target rates (FAR, FPIR, ...) as a 1-D float64 array, each finite and in [0, 1]."""
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a number or a non-empty 1-D sequence, got shape {np.shape(values)}")
    if not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
        raise ValueError(f"{name} must be finite rates in [0, 1], got {arr.tolist()}")
    return arr


def _as_group_rates(values, name: str) -> tuple[list, np.ndarray]:
    """(group names, rates (n,)) from a mapping group -> rate or a sequence; >= 2 finite rates in [0, 1]."""
    if isinstance(values, Mapping):
        names, rates = list(values.keys()), list(values.values())
    elif isinstance(values, Iterable):
        rates = list(values)
        names = list(range(len(rates)))
    else:
        raise ValueError(f"{name} must be a mapping group -> rate or a sequence of rates")
    arr = np.asarray(rates, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"{name} needs rates for at least 2 groups, got {arr.size}")
    if not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
        raise ValueError(f"{name} must be finite rates in [0, 1], got {arr.tolist()}")
    return names, arr


def _positive_int(value, name: str) -> int:
    """``value`` as an int >= 1, else ValueError (bools are rejected: ``True`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _json_float(value) -> float | None:
    """A float for a JSON report; NaN/inf (an undefined or unbounded quantity) become ``None``."""
    value = float(value)
    return value if math.isfinite(value) else None


def _rate_key(rate: float) -> str:
    """Stable JSON key for a target rate: 1e-4 -> "1e-04", 0.05 -> "5e-02", 0.015 -> "0.015" (never lossy)."""
    key = f"{rate:.0e}"
    return key if float(key) == rate else f"{rate:.10g}"
