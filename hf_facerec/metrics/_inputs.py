"""What the bundled ``evaluate`` modules hand to the numpy core: the caller's values, unchanged.

``evaluate`` stores every input in Arrow with the module's declared feature type. A narrow type
changes the data before the core can validate it (``Value("int32")`` truncates a reference of 0.7
to 0 and 1.5 to 1; ``Value("float32")`` merges distinct float64 scores). So the modules declare
float64 (which holds every bool, int up to 2**53, float16/32/64 exactly), and this mixin records
the dtype of what the caller passed and casts the stored column back to it. The core then sees
exactly ``np.concatenate`` of the batches: its one validation (:mod:`hf_facerec.evaluation._checks`)
accepts or refuses, and its numbers are those of a direct call.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["CallerDtypes", "column_values"]


def _dtype_of(column) -> np.dtype | None:
    """numpy dtype of a batch column as ``np.asarray`` would give it (None if not a real array)."""
    try:
        dtype = column.dtype if isinstance(column, np.ndarray) else np.asarray(column).dtype
    except (ValueError, TypeError, RuntimeError):  # ragged lists, GPU tensors: evaluate reports those itself
        return None
    return dtype if dtype.kind in "biuf" else None


def column_values(column) -> np.ndarray:
    """A stored column as numpy: an Arrow column (``format="arrow"``) without a float32 detour, strings
    as ``np.asarray`` of their list (``<U``, or object holding None where a value is missing)."""
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            return np.asarray(column.to_pylist())
        return column.to_numpy(zero_copy_only=False)  # float64 kept; a null becomes NaN
    return np.asarray(column)


def _check_integers(arr: np.ndarray, name: str) -> None:
    """ValueError unless every value of ``arr`` is an integer an int64 column holds unchanged."""
    if arr.dtype.kind in "biu":
        return
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)) | (np.abs(arr) >= 2.0**63))
    else:  # strings, None, mixed objects: evaluate would fail deep in Arrow or cast silently
        bad = np.flatnonzero([isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) for v in arr.ravel()])
    if bad.size:
        value = arr.ravel()[bad[0]]
        value = value.item() if isinstance(value, np.generic) else value
        raise ValueError(f"{name} must be integer ids (this module stores them as int64): got {value!r} at index {int(bad[0])}")


class CallerDtypes:
    """Mixin for an ``evaluate.Metric`` whose ``_float_inputs`` columns are declared float64.

    ``add_batch`` / ``add`` / ``compute`` note each batch's dtype; :meth:`_caller_array` returns a
    column in ``np.result_type`` of those dtypes (float32 stays float32, ints stay ints, lists are
    float64), which the float64 store holds exactly. With several processes the other processes'
    dtypes are unknown, so the column stays float64 (never narrowed).
    """

    _float_inputs: tuple[str, ...] = ("predictions",)
    #: Columns declared int64: a value the cast would change (3.5 -> 3, None, "a") is refused instead.
    _integer_inputs: tuple[str, ...] = ()

    def _note_dtypes(self, batch: dict) -> None:
        for name in self._integer_inputs:
            if batch.get(name) is not None:
                _check_integers(np.asarray(batch[name]), name)
        noted = self.__dict__.setdefault("_caller_dtypes", {})
        for name in self._float_inputs:
            if batch.get(name) is not None:
                noted.setdefault(name, []).append(_dtype_of(batch[name]))

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """``evaluate``'s ``add_batch``, noting the dtype of each float-stored column first."""
        self._note_dtypes({"predictions": predictions, "references": references, **kwargs})
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """``evaluate``'s ``add`` (one example), noting its dtypes like :meth:`add_batch`."""
        example = {"predictions": prediction, "references": reference, **kwargs}
        self._note_dtypes({k: None if v is None else [v] for k, v in example.items()})
        return super().add(prediction=prediction, reference=reference, **kwargs)

    def compute(self, *, predictions=None, references=None, **kwargs):
        """``evaluate``'s ``compute``; the noted dtypes are forgotten afterwards, as the stored batches are."""
        try:
            return super().compute(predictions=predictions, references=references, **kwargs)
        finally:
            self.__dict__.pop("_caller_dtypes", None)

    def _caller_array(self, name: str, column) -> np.ndarray:
        """The stored float64 column ``name`` back in the caller's dtype (see the class docstring)."""
        arr = column_values(column)
        dtypes = self.__dict__.get("_caller_dtypes", {}).get(name, [])
        if not dtypes or None in dtypes or getattr(self, "num_process", 1) > 1:
            return arr
        dtype = np.result_type(*dtypes)
        # A stored NaN is a null (None in a list): keep float64 so the core names it, not a cast.
        if dtype.kind in "biu" and not np.isfinite(arr).all():
            return arr
        return arr.astype(dtype, copy=False)
