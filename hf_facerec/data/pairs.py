"""Verification pair sets as ``datasets.Dataset``: InsightFace ``.bin``, LFW ``pairs.txt``, CSV, RFW.

:func:`load_pair_file` reads any of them by its format; :func:`pair_image_sources` lists a pair set's
distinct images. Every caller (training callbacks, calibration, quickstart, benchmarks) uses these two.
This module is the public face of the pair readers; each format lives in its own module and every reader
returns the one schema of :mod:`hf_facerec.data.pairset` (:data:`PAIR_FEATURES`):

``pairset``     the schema, :func:`make_pair_dataset`, :func:`pair_image_sources`
``pairs_bin``   InsightFace ``.bin`` (restricted unpickler, :mod:`hf_facerec.data._safe_pickle`)
``pairs_lfw``   LFW-style ``pairs.txt``, RFW
``pairs_csv``   ``path1,path2,label`` CSV
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from ._safe_pickle import UnsafePickleError
from .pairs_bin import load_bin_pairs
from .pairs_csv import load_csv_pairs
from .pairs_lfw import LFW_IMAGE_DIRS, RFW_RACES, lfw_images_root, load_lfw_pairs, load_rfw_pairs
from .pairset import PAIR_FEATURES, make_pair_dataset, pair_columns, pair_image_sources, unique_images

# Re-exported: the training callbacks, benchmarks, hub, CLI and scripts import them from here.
__all__ = [
    "PAIR_FEATURES",
    "UnsafePickleError",
    "make_pair_dataset",
    "load_bin_pairs",
    "load_lfw_pairs",
    "load_csv_pairs",
    "load_rfw_pairs",
    "load_pair_file",
    "lfw_images_root",
    "pair_columns",
    "pair_image_sources",
    "unique_images",
    "LFW_IMAGE_DIRS",
    "RFW_RACES",
]


def load_pair_file(path: str | os.PathLike, images: str | os.PathLike | None = None) -> datasets.Dataset:
    """The one reader of a pair set from disk, by its format: a ``.bin`` (InsightFace), a ``.csv``
    (:func:`load_csv_pairs`; relative paths against ``images`` or the CSV's folder), an LFW-style
    ``.txt`` (images under ``images``, else :func:`lfw_images_root`), a folder holding ``pairs.txt``,
    or a ``Dataset.save_to_disk`` folder.

    Raises:
        FileNotFoundError: the file (or the LFW image folder) is absent. ValueError: another format, or a
            malformed file (the message names it, with the line or offset where that makes sense).
    """
    path = Path(path)
    if path.is_dir():
        if (path / "state.json").is_file():
            return datasets.load_from_disk(str(path))
        path = path / "pairs.txt"
    suffix = path.suffix.lower()
    if suffix not in (".bin", ".csv", ".txt"):
        raise ValueError(f"cannot read pair set {path}: expected a .bin, .csv, pairs.txt or a saved Dataset folder")
    if not path.is_file():
        raise FileNotFoundError(f"pair file not found: {path}")
    if suffix == ".bin":
        return load_bin_pairs(path)
    if suffix == ".csv":
        return load_csv_pairs(path, root=images)
    return load_lfw_pairs(path, images if images is not None else lfw_images_root(path))
