"""The one pair-set schema: :data:`PAIR_FEATURES`, its constructor, and the lister of a pair set's images.

Every pair reader (:mod:`hf_facerec.data.pairs` and the per-format modules behind it) returns this schema:

``image1``, ``image2``  ``datasets.Image`` (a file path or encoded bytes; nothing decoded here)
``is_same``             ``bool``, True for a genuine (same identity) pair
``fold``                ``int32``, the protocol's cross-validation fold (0 when it has none)
``group``               ``string``, e.g. the RFW race; ``""`` when there is no group
``identity1/2``         ``string``, the identity names when the protocol gives them, else ``""``
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

import datasets

__all__ = [
    "FOLD_MAX",
    "PAIR_FEATURES",
    "check_pair_files",
    "contiguous_folds",
    "make_pair_dataset",
    "pair_columns",
    "pair_image_sources",
    "unique_images",
]

PAIR_FEATURES = datasets.Features(
    {
        "image1": datasets.Image(),
        "image2": datasets.Image(),
        "is_same": datasets.Value("bool"),
        "fold": datasets.Value("int32"),
        "group": datasets.Value("string"),
        "identity1": datasets.Value("string"),
        "identity2": datasets.Value("string"),
    }
)
#: The largest fold index the ``int32`` fold column holds; larger ones are refused, never wrapped.
FOLD_MAX = np.iinfo(np.int32).max


def _image_value(image) -> dict:
    """``datasets.Image`` storage for a path or encoded bytes (never decoded here)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(image), "path": None}
    if isinstance(image, (str, os.PathLike)):
        return {"bytes": None, "path": os.fspath(image)}
    raise ValueError(f"an image must be a file path or encoded bytes, got {type(image).__name__}")


def _string_column(values: Sequence[str] | None, length: int, name: str) -> list[str]:
    if values is None:
        return [""] * length
    if isinstance(values, str):
        return [values] * length  # one group for every pair
    values = ["" if v is None else str(v) for v in values]
    if len(values) != length:
        raise ValueError(f"{name} has {len(values)} values for {length} pairs")
    return values


def make_pair_dataset(
    images1: Sequence,
    images2: Sequence,
    is_same: Sequence[bool] | np.ndarray,
    folds: Sequence[int] | np.ndarray | None = None,
    groups: Sequence[str] | str | None = None,
    identities1: Sequence[str] | None = None,
    identities2: Sequence[str] | None = None,
) -> datasets.Dataset:
    """Build a pair dataset with :data:`PAIR_FEATURES`; the one constructor every reader uses.

    Args:
        images1, images2: ``P`` file paths (str / PathLike) or encoded image bytes each.
        is_same: ``(P,)`` booleans (or 0/1).
        folds: ``(P,)`` fold indices in ``[0, FOLD_MAX]``; None puts every pair in fold 0.
        groups: ``(P,)`` group names, one string for all pairs, or None (``""``).
        identities1, identities2: ``(P,)`` identity names, or None (``""``).
    """
    count = len(images1)
    if len(images2) != count:
        raise ValueError(f"images1 has {count} entries but images2 has {len(images2)}")
    same = np.asarray(is_same)
    if same.shape != (count,):
        raise ValueError(f"is_same must have shape ({count},), got {same.shape}")
    if same.dtype != bool:
        if not np.isin(same, (0, 1)).all():
            raise ValueError("is_same must hold booleans or 0/1")
        same = same.astype(bool)
    fold = np.zeros(count, np.int64) if folds is None else np.asarray(folds)
    if fold.shape != (count,) or not np.issubdtype(fold.dtype, np.integer) or (fold < 0).any():
        raise ValueError(f"folds must be {count} non-negative integers")
    if count and fold.max() > FOLD_MAX:  # the int32 column would wrap it (99999999999 -> 1215752191)
        raise ValueError(f"fold {int(fold.max())} is out of range: folds are at most {FOLD_MAX}")
    columns = {
        "image1": [_image_value(image) for image in images1],
        "image2": [_image_value(image) for image in images2],
        "is_same": same.tolist(),
        "fold": fold.astype(np.int32).tolist(),
        "group": _string_column(groups, count, "groups"),
        "identity1": _string_column(identities1, count, "identities1"),
        "identity2": _string_column(identities2, count, "identities2"),
    }
    return datasets.Dataset.from_dict(columns, features=PAIR_FEATURES)


def contiguous_folds(num_pairs: int, num_folds: int = 10) -> np.ndarray:
    """``(P,)`` fold of each pair for ``num_folds`` contiguous folds, sized like scikit-learn's
    ``KFold(num_folds, shuffle=False)`` (the first ``P % num_folds`` folds get one extra pair),
    which is how InsightFace evaluates ``.bin`` sets."""
    if not 1 <= num_folds <= max(num_pairs, 1):
        raise ValueError(f"num_folds must be in [1, {num_pairs}], got {num_folds}")
    sizes = np.full(num_folds, num_pairs // num_folds)
    sizes[: num_pairs % num_folds] += 1
    return np.repeat(np.arange(num_folds), sizes)


def check_pair_files(paths: Sequence[str], where: str) -> None:
    """FileNotFoundError naming the first few of ``paths`` that are not files (each distinct path checked once)."""
    missing = [path for path in dict.fromkeys(paths) if not os.path.isfile(path)]
    if missing:
        shown = ", ".join(missing[:5])
        raise FileNotFoundError(f"{len(missing)} pair image(s) missing under {where}, e.g. {shown}")


def pair_columns(pairs: datasets.Dataset) -> tuple[list, list]:
    """The two image columns of a pair set as sources (encoded bytes when present, else paths), never
    decoded: what :class:`~hf_facerec.FaceEmbedder` and :func:`unique_images` take."""
    for column in ("image1", "image2"):
        if not isinstance(pairs.features.get(column), datasets.Image):
            raise ValueError(f"column {column!r} must be a datasets.Image, got {pairs.features.get(column)!r}")
    undecoded = datasets.Image(decode=False)
    raw = pairs.cast_column("image1", undecoded).cast_column("image2", undecoded)
    pick = lambda cell: cell["bytes"] if cell["bytes"] is not None else cell["path"]  # noqa: E731
    return [pick(cell) for cell in raw["image1"]], [pick(cell) for cell in raw["image2"]]


def unique_images(images1: Sequence, images2: Sequence) -> tuple[list, np.ndarray, np.ndarray]:
    """Deduplicate the images of P pairs (a pair set reuses images: LFW's 12,000 slots hold 7,701).

    Args:
        images1, images2: P sources each: paths (one image per absolute path) or encoded bytes (one per
            content), or any other hashable source.
    Returns:
        ``(sources (M,), index1 (P,), index2 (P,))``: pair i is ``sources[index1[i]]`` vs
        ``sources[index2[i]]``; sources in first-seen order.
    """
    if len(images1) != len(images2):
        raise ValueError(f"images1 has {len(images1)} entries but images2 has {len(images2)}")
    position: dict = {}
    sources, index = [], np.empty(2 * len(images1), dtype=np.int64)
    for i, source in enumerate([*images1, *images2]):
        identity = os.path.abspath(source) if isinstance(source, (str, os.PathLike)) else source
        if isinstance(identity, (bytearray, memoryview)):
            identity = bytes(identity)
        if identity not in position:
            position[identity] = len(sources)
            sources.append(source)
        index[i] = position[identity]
    return sources, index[: len(images1)], index[len(images1) :]


def pair_image_sources(pairs: datasets.Dataset) -> tuple[list, np.ndarray, np.ndarray]:
    """The distinct image sources of a pair set and, per pair, the index of each of its images: the one
    lister (:func:`pair_columns` then :func:`unique_images`) every evaluation path uses."""
    return unique_images(*pair_columns(pairs))
