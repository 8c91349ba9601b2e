"""A restricted unpickler for InsightFace verification ``.bin`` files (and nothing more).

A ``.bin`` is a pickle of ``(bins, issame_list)``: encoded images as bytes and booleans, sometimes
numpy bools or arrays. Plain ``pickle.load`` would run whatever callable a crafted file names
(``os.system``, ``exec``, ...); this unpickler resolves only the few globals such files need and
refuses every other one in ``find_class``, before anything is called.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

__all__ = ["UnsafePickleError", "load_restricted_pickle"]


class UnsafePickleError(ValueError):
    """A pickle asked for a global outside the small allow-list a pair ``.bin`` needs."""


def _numpy_global(name: str, submodule: str = "multiarray"):
    core = getattr(np, "_core", None) or np.core
    return getattr(getattr(core, submodule), name)


def _safe_reconstruct(subtype, *args):
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"refused ndarray reconstruction with subtype {subtype!r}")
    return _numpy_global("_reconstruct")(subtype, *args)


def _safe_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError(f"refused object dtype {dtype!r} in a pair .bin")
    return dtype


def _latin1_encode(text, encoding="utf-8", *rest):
    # Python 3 pickles bytes with protocol < 3 as _codecs.encode(text, "latin1"); allow only that.
    if not isinstance(text, str) or str(encoding).lower().replace("-", "").replace("_", "") not in (
        "latin1",
        "iso88591",
    ):
        raise UnsafePickleError(f"refused _codecs.encode of a {type(text).__name__} with encoding {encoding!r}")
    return text.encode("latin1")


def _safe_frombuffer(buffer, dtype, shape, order):
    # Pickle protocol 5 rebuilds arrays with numpy's _frombuffer (bytes + dtype, no objects).
    return _numpy_global("_frombuffer", "numeric")(buffer, _safe_dtype(dtype), shape, order)


def _numpy_scalar(*args):
    return _numpy_global("scalar")(*args)  # a numpy bool in issame_list; its dtype went through _safe_dtype


# (module, name) -> what the unpickler gets. numpy 1.x pickles name numpy.core, 2.x numpy._core;
# Python 3 writes builtins as __builtin__ with protocol < 3.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS.update(
        {
            (f"{_core}.multiarray", "_reconstruct"): _safe_reconstruct,
            (f"{_core}.multiarray", "scalar"): _numpy_scalar,
            (f"{_core}.numeric", "_frombuffer"): _safe_frombuffer,
        }
    )
for _module in ("builtins", "__builtin__"):
    _ALLOWED_GLOBALS.update({(_module, "bytes"): bytes, (_module, "bytearray"): bytearray})


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolve only :data:`_ALLOWED_GLOBALS`; anything else (os.system, exec, ...) is refused
    before it can be called, so a crafted file executes nothing."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused global {module}.{name}: a pair .bin holds only bytes, bools and numpy arrays"
            ) from None


def load_restricted_pickle(path: str | os.PathLike, encoding: str = "ASCII"):
    """Unpickle ``path`` allowing only :data:`_ALLOWED_GLOBALS` (``encoding`` as in ``pickle.load``).

    Raises:
        UnsafePickleError: the file names any other global (nothing has run).
        UnicodeDecodeError: a Python 2 ``str`` does not decode with ``encoding``.
        ValueError: the file is not a readable pickle.
    """
    try:
        with open(path, "rb") as handle:
            return _RestrictedUnpickler(handle, encoding=encoding).load()
    except (UnsafePickleError, UnicodeDecodeError):
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise ValueError(f"{path} is not a readable pickle: {error}") from None
