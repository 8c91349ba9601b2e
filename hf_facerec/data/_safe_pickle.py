"""A restricted unpickler for InsightFace verification ``.bin`` files (and nothing more).

A ``.bin`` is a pickle of ``(bins, issame_list)``: encoded images as bytes and booleans, sometimes
numpy bools or arrays. Plain ``pickle.load`` would run whatever callable a crafted file names
(``os.system``, ``exec``, ...); this unpickler resolves only the few globals such files need and
refuses every other one in ``find_class``, before anything is called.

Each allowed global is a wrapper that takes only the arguments ``pickle.dump`` itself writes for
bytes, bools and numpy arrays, so none can allocate from a number in the file (``bytes(10**9)``,
``numpy.ndarray((4, 4096))`` returning uninitialised memory) and only plain bool/integer/float/bytes
dtypes get through. Every byte the wrappers build (new bytes, array data, scalars) is charged to a
budget of twice the file size (a protocol 2 array costs its latin-1 text, then its copy), so a
small file cannot build a large result by reusing one memoised object many times.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

__all__ = ["UnsafePickleError", "load_restricted_pickle"]

#: dtype kinds a pair .bin needs: bool, integers, floats, fixed-length bytes (arrays of encoded images).
_DTYPE_KINDS = frozenset("buifS")
_SLACK = 1 << 16  # the budget's headroom over 2x the file size: tiny files still hold a few scalars


class UnsafePickleError(ValueError):
    """A pickle asked for a global outside the small allow-list a pair ``.bin`` needs, called one with
    arguments ``pickle.dump`` never writes, or would build more than its file size can justify."""


def _numpy_global(name: str, submodule: str = "multiarray"):
    core = getattr(np, "_core", None) or np.core
    return getattr(getattr(core, submodule), name)


class _Budget:
    """Bytes the wrappers may still build; a load that asks for more is refused before allocating."""

    def __init__(self, file_size: int):
        self.left = 2 * file_size + _SLACK

    def charge(self, size: int, what: str) -> None:
        self.left -= size
        if self.left < 0:
            raise UnsafePickleError(f"refused {what}: the pickle builds more bytes than its file can hold")


def _checked_dtype(dtype) -> np.dtype:
    # Re-checked where a dtype is used: a BUILD after numpy.dtype(...) may have changed it.
    if not isinstance(dtype, np.dtype) or dtype.kind not in _DTYPE_KINDS or dtype.fields is not None or (
        dtype.subdtype is not None
    ):
        raise UnsafePickleError(f"refused dtype {dtype!r}: a pair .bin holds only bool, integer, float or bytes arrays")
    return dtype


def _byte_length(data, what: str) -> int:
    if isinstance(data, (bytes, bytearray, str, memoryview)):
        return len(data)
    raise UnsafePickleError(f"refused {what} of a {type(data).__name__}: only bytes or latin-1 text are allowed")


def _is_latin1(encoding) -> bool:
    return encoding == "latin1" or str(encoding).lower().replace("-", "").replace("_", "") in ("latin1", "iso88591")


class _NdarrayType:
    """What ``numpy.ndarray`` resolves to: a marker ``_reconstruct`` accepts as its subtype. Calling it
    (``ndarray(shape)`` returns uninitialised memory) is refused."""

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError("refused numpy.ndarray(...) called directly: it returns uninitialised memory")


_NDARRAY = _NdarrayType()


def _bounded_array_type(budget: _Budget) -> type:
    """The ndarray subclass one load builds: its ``__setstate__`` (pickle's BUILD) charges the data it copies
    (one class per load, so the budget is a class attribute: nothing stored per array)."""

    setstate, checked = np.ndarray.__setstate__, [None]

    class _BoundedArray(np.ndarray):
        def __setstate__(self, state):
            if type(state) is not tuple or len(state) not in (4, 5):
                raise UnsafePickleError("refused an ndarray state outside numpy's own pickle format")
            if state[-3] is not checked[0]:  # a file memoises its one dtype: check each distinct object once
                checked[0] = _checked_dtype(state[-3])
            budget.charge(_byte_length(state[-1], "ndarray data"), "ndarray data")
            setstate(self, state)

    return _BoundedArray


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolve only the wrappers of :meth:`_allowed`; anything else (os.system, exec, ...) is refused
    before it can be called, so a crafted file executes nothing."""

    def __init__(self, handle, encoding: str, file_size: int):
        super().__init__(handle, encoding=encoding)
        self._budget = _Budget(file_size)
        self._globals = self._allowed()

    def _allowed(self) -> dict:
        """(module, name) -> callable. numpy 1.x pickles name numpy.core, 2.x numpy._core; Python 3 writes
        builtins as __builtin__ with protocol < 3."""
        budget = self._budget
        array_type, rebuild = _bounded_array_type(budget), _numpy_global("_reconstruct")

        def new_bytes(kind):
            def build(*args):
                # pickle.dump writes bytes() for b"" and (text, "latin1") / (bytes,) otherwise; never a count.
                if len(args) == 0 or (len(args) == 1 and isinstance(args[0], (bytes, bytearray))) or (
                    len(args) == 2 and isinstance(args[0], str) and _is_latin1(args[1])
                ):
                    budget.charge(len(args[0]) if args else 0, kind.__name__)
                    return kind(*args)
                raise UnsafePickleError(
                    f"refused {kind.__name__}({', '.join(type(a).__name__ for a in args)}): only {kind.__name__}() of bytes "
                    "or latin-1 text is allowed (a number would allocate that many bytes)"
                )

            return build

        def latin1_encode(text, encoding="utf-8", *rest):
            # Python 3 pickles bytes with protocol < 3 as _codecs.encode(text, "latin1"); allow only that.
            if not isinstance(text, str) or not _is_latin1(encoding) or rest:
                raise UnsafePickleError(
                    f"refused _codecs.encode of a {type(text).__name__} with encoding {encoding!r}"
                )
            budget.charge(len(text), "_codecs.encode")
            return text.encode("latin1")

        def dtype(spec, align=False, copy=False):
            if isinstance(spec, bytes) and spec.isascii():
                spec = spec.decode("ascii")  # a Python 2 pickle read with encoding="bytes"
            if not isinstance(spec, str):
                raise UnsafePickleError(f"refused numpy.dtype of a {type(spec).__name__}: only dtype strings")
            try:
                made = np.dtype(spec, align=bool(align), copy=True)  # never the global singleton: BUILD mutates it
            except TypeError as error:
                raise UnsafePickleError(f"refused numpy.dtype({spec!r}): {error}") from None
            if made.hasobject:
                raise UnsafePickleError(f"refused object dtype {made!r} in a pair .bin")
            return _checked_dtype(made)

        def reconstruct(subtype, shape, code):
            # numpy's ndarray.__reduce__ always writes _reconstruct(ndarray, (0,), b"b"): an empty array
            # that BUILD then fills from bytes of the exact size (charged in _BoundedArray.__setstate__).
            if subtype is not _NDARRAY:
                raise UnsafePickleError(f"refused ndarray reconstruction with subtype {subtype!r}")
            if not (isinstance(shape, tuple) and shape == (0,) and code in (b"b", "b")):
                raise UnsafePickleError(f"refused ndarray reconstruction of shape {shape!r}: numpy writes (0,)")
            return rebuild(array_type, (0,), b"b")

        def scalar(dtype_, data=None):
            # A numpy bool/int in issame_list: its raw bytes, of exactly the dtype's size.
            _checked_dtype(dtype_)
            if _byte_length(data, "numpy scalar") != dtype_.itemsize:
                raise UnsafePickleError(f"refused a numpy {dtype_} scalar from {len(data)} bytes")
            budget.charge(dtype_.itemsize, "numpy scalar")
            return _numpy_global("scalar")(dtype_, data)

        def frombuffer(buffer, dtype_, shape, order):
            # Pickle protocol 5 rebuilds arrays as a view of bytes already in the file: nothing allocated.
            if not isinstance(buffer, (bytes, bytearray, pickle.PickleBuffer)):
                raise UnsafePickleError(f"refused _frombuffer of a {type(buffer).__name__}")
            return _numpy_global("_frombuffer", "numeric")(buffer, _checked_dtype(dtype_), shape, order)

        allowed = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): dtype, ("_codecs", "encode"): latin1_encode}
        for core in ("numpy.core", "numpy._core"):
            allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
            allowed[(f"{core}.multiarray", "scalar")] = scalar
            allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
        for module in ("builtins", "__builtin__"):
            allowed[(module, "bytes")], allowed[(module, "bytearray")] = new_bytes(bytes), new_bytes(bytearray)
        return allowed

    def find_class(self, module: str, name: str):
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused global {module}.{name}: a pair .bin holds only bytes, bools and numpy arrays"
            ) from None


def load_restricted_pickle(path: str | os.PathLike, encoding: str = "ASCII"):
    """Unpickle ``path`` allowing only the wrappers of :class:`_RestrictedUnpickler` (``encoding`` as in
    ``pickle.load``). Arrays come back as a private ndarray subclass; ``np.asarray`` gives a plain one.

    Raises:
        UnsafePickleError: the file names any other global, calls one with other arguments, or builds
            more than twice its size (nothing has run, nothing large was allocated); the message names the file.
        UnicodeDecodeError: a Python 2 ``str`` does not decode with ``encoding``.
        ValueError: the file is not a readable pickle (the message names the file).
    """
    try:
        with open(path, "rb") as handle:
            return _RestrictedUnpickler(handle, encoding, os.fstat(handle.fileno()).st_size).load()
    except UnicodeDecodeError:
        raise
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{path}: {error}") from None
    except MemoryError:  # a length field larger than memory (a tiny file can claim 2**60 bytes)
        raise ValueError(f"{path} is not a readable pickle: a length in it exceeds the memory available") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise ValueError(f"{path} is not a readable pickle: {error}") from None
