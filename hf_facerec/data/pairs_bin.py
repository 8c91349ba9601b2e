"""InsightFace verification ``.bin`` files (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...) as pair sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import datasets

from ._safe_pickle import load_restricted_pickle
from .pairset import contiguous_folds, make_pair_dataset

__all__ = ["load_bin_pairs"]


def _to_bytes(item, index: int, path: Path) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):  # a Python 2 str read with a text encoding
        return item.encode("latin1")
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        return item.tobytes()
    raise ValueError(f"{path}: image {index} of the .bin is a {type(item).__name__}, expected encoded bytes")


def load_bin_pairs(
    path: str | os.PathLike, encoding: str = "auto", num_folds: int = 10, group: str = ""
) -> datasets.Dataset:
    """Read an InsightFace verification ``.bin`` (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...).

    The file is a pickle of ``(bins, issame_list)``: ``2P`` encoded images, pair ``i`` being images
    ``2i`` and ``2i+1``, and ``P`` booleans. It is read with a restricted unpickler
    (:mod:`hf_facerec.data._safe_pickle`) that resolves only numpy bool/number/bytes arrays and scalars,
    ``bytes``/``bytearray`` of bytes and latin-1 ``_codecs.encode``, each only with the arguments
    ``pickle.dump`` writes and within twice the file size; anything else raises
    :class:`~hf_facerec.data._safe_pickle.UnsafePickleError` naming the file, before anything runs.

    Args:
        encoding: how Python 2 ``str`` objects are decoded: ``"auto"`` tries the default and
            falls back to ``"bytes"`` (as InsightFace does), or ``"bytes"`` / ``"latin1"`` / ``"ASCII"``.
        num_folds: contiguous folds (:func:`~hf_facerec.data.pairset.contiguous_folds`), 10 as in InsightFace.
        group: the ``group`` value of every pair.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair .bin not found: {path}")
    try:
        loaded = load_restricted_pickle(path, "ASCII" if encoding == "auto" else encoding)
    except UnicodeDecodeError:
        if encoding != "auto":
            raise
        loaded = load_restricted_pickle(path, "bytes")  # Python 2 era file: its str objects are raw bytes
    if not (isinstance(loaded, (tuple, list)) and len(loaded) == 2):
        raise ValueError(f"{path}: expected a pickled (bins, issame_list) pair, got {type(loaded).__name__}")
    bins, issame = loaded
    if not isinstance(bins, (list, tuple, np.ndarray)):
        raise ValueError(f"{path}: bins must be a list of encoded images, got {type(bins).__name__}")
    try:
        issame = np.asarray(issame)
    except (ValueError, TypeError) as error:  # ragged or odd objects
        raise ValueError(f"{path}: issame_list is not a list of booleans: {error}") from None
    if issame.ndim != 1 or len(bins) != 2 * issame.size:
        raise ValueError(f"{path}: {len(bins)} images for {issame.size} pairs (need 2 per pair)")
    images = [_to_bytes(item, index, path) for index, item in enumerate(bins)]
    try:
        folds = contiguous_folds(issame.size, num_folds)
        return make_pair_dataset(images[0::2], images[1::2], issame, folds, group)
    except ValueError as error:  # e.g. issame holding 2 or "yes": name the file
        raise ValueError(f"{path}: {error}") from None
