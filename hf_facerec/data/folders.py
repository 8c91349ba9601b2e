"""Identity-folder datasets (``root/<identity>/<image>``) as ``datasets.Dataset`` / ``IterableDataset``.

Both loaders give the same two columns, ``image`` (``datasets.Image``; stored as a file path, so
nothing is decoded until an example is read) and ``label`` (``ClassLabel`` whose names are the
selected identity folder names, sorted), and pick identities by the same deterministic rule
(:func:`select_identities`), so the streaming loader yields exactly the in-memory loader's rows.

Images are listed by :mod:`hf_facerec.data.listing`: recognised by content (an extension-less GIF counts, a
text file named ``.jpg`` does not), links leaving the root refused unless ``follow_symlinks=True`` (a root of
identity-folder links, as :func:`~hf_facerec.data.protocols.link_identity_subset` makes, is followed). With
``check_images=True`` (the default) the selected identities' images are decoded once up front (about 6 s for
LFW's 13,233 JPEGs on 2 cores), so a truncated file never stops a training run on its first batch: what is
skipped (non-images, refused links, files that do not decode) is logged as one warning naming each file, and
:func:`scan_identity_folder` returns it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

import datasets

from .listing import IMAGE_EXTENSIONS
from .listing import check_images as _check_images
from .listing import _list_images, list_folder_images

__all__ = [
    "IMAGE_EXTENSIONS",
    "IdentityListing",
    "identity_features",
    "list_identity_images",
    "scan_identity_folder",
    "select_identities",
    "load_identity_folder",
    "stream_identity_folder",
    "identity_disjoint_split",
]

logger = logging.getLogger(__name__)

_WARN_MAX_FILES = 20  # files named in the skip warning; the rest are counted


def identity_features(names: Sequence[str]) -> datasets.Features:
    """``{"image": Image(), "label": ClassLabel(names)}``, the schema of every identity dataset."""
    return datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))})


def _check_root(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"identity folder root not found or not a directory: {root}")
    return root


def _identity_dirs(root: Path) -> list[str]:
    """Sorted names of the sub-directories of ``root`` (hidden ones skipped; links to folders count)."""
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def list_identity_images(
    directory: str | os.PathLike,
    extensions: Sequence[str] | None = None,
    *,
    root: str | os.PathLike | None = None,
    follow_symlinks: bool = False,
) -> list[str]:
    """Sorted paths of the images directly inside one identity directory, recognised by content.

    ``root`` (default: the directory's parent, the dataset root) is the folder links must stay inside;
    ``extensions``, when given, only considers files with those suffixes. What is left out is reported by
    :func:`scan_identity_folder`.
    """
    root = Path(directory).parent if root is None else root
    return list_folder_images(directory, root=root, follow_symlinks=follow_symlinks, extensions=extensions).images


@dataclass
class IdentityListing:
    """The images of each identity (``{name: sorted paths}``), the identities selected, and ``skipped``:
    ``(path, reason)`` of every file left out (not an image, a refused link, not decodable)."""

    images: dict[str, list[str]]
    names: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def scan_identity_folder(
    root: str | os.PathLike,
    min_images_per_identity: int = 1,
    max_identities: int | None = None,
    identity_subset: Literal["first", "random"] = "first",
    seed: int = 0,
    extensions: Sequence[str] | None = None,
    *,
    follow_symlinks: bool = False,
    check_images: bool = True,
    progress: bool | None = None,
) -> IdentityListing:
    """List ``root/<identity>/<image>``, select identities (:func:`select_identities`) and, with
    ``check_images``, decode the selected identities' images once, dropping those that fail.

    Identities are selected on the counts of good images: when a check drops an identity below
    ``min_images_per_identity`` the selection is made again (only newly selected identities are checked).
    ``progress`` (default: more than 1,000 images to check) shows the check's bar.
    """
    root = _check_root(root)
    real_root = os.path.realpath(root)
    images, skipped = {}, []
    for name in _identity_dirs(root):
        directory = os.path.join(root, name)
        real = os.path.realpath(directory) if os.path.islink(directory) else os.path.join(real_root, name)
        listing = _list_images(directory, real, real_root, False, follow_symlinks, extensions)
        images[name] = listing.images
        skipped += listing.skipped
    checked: set[str] = set()
    while True:
        try:
            names = select_identities({n: len(p) for n, p in images.items()}, min_images_per_identity,
                                      max_identities, identity_subset, seed)
        except ValueError as error:
            if not skipped:
                raise
            path, reason = min(skipped)  # say why images are missing: they may all have been skipped
            raise ValueError(f"{root}: {error}; {len(skipped)} file(s) skipped, e.g. {path}: {reason}") from error
        todo = [name for name in names if name not in checked] if check_images else []
        if not todo:
            break
        paths = [path for name in todo for path in images[name]]
        bad = _check_images(paths, progress=len(paths) > 1000 if progress is None else progress)
        bad_paths = {path for path, _ in bad}
        for name in todo:
            images[name] = [path for path in images[name] if path not in bad_paths]
        skipped += bad
        checked.update(todo)
    skipped.sort()
    if skipped:
        shown = "; ".join(f"{path}: {reason}" for path, reason in skipped[:_WARN_MAX_FILES])
        more = f"; and {len(skipped) - _WARN_MAX_FILES} more" if len(skipped) > _WARN_MAX_FILES else ""
        logger.warning("%s: skipped %d file(s): %s%s", root, len(skipped), shown, more)
    return IdentityListing(images, names, skipped)


def select_identities(
    counts: dict[str, int],
    min_images_per_identity: int = 1,
    max_identities: int | None = None,
    identity_subset: Literal["first", "random"] = "first",
    seed: int = 0,
) -> list[str]:
    """The identities to keep, sorted by name.

    Args:
        counts: identity name -> number of images.
        min_images_per_identity: drop identities with fewer images (an identity needs >= 2 to form
            a genuine pair, >= 1 to be a class).
        max_identities: keep this many of the eligible identities: the first K in sorted name order
            (``"first"``) or a seeded random K (``"random"``, ``numpy.random.default_rng(seed)``).
    """
    if min_images_per_identity < 1:
        raise ValueError(f"min_images_per_identity must be >= 1, got {min_images_per_identity}")
    if identity_subset not in ("first", "random"):
        raise ValueError(f"identity_subset must be 'first' or 'random', got {identity_subset!r}")
    eligible = sorted(name for name, count in counts.items() if count >= min_images_per_identity)
    if not eligible:
        raise ValueError(
            f"no identity has >= {min_images_per_identity} images ({len(counts)} identity folders found)"
        )
    if max_identities is None:
        return eligible
    if max_identities < 1 or max_identities > len(eligible):
        raise ValueError(
            f"max_identities must be in [1, {len(eligible)}] (identities with >= {min_images_per_identity} "
            f"images), got {max_identities}"
        )
    if identity_subset == "first":
        return eligible[:max_identities]
    chosen = np.random.default_rng(seed).choice(len(eligible), size=max_identities, replace=False)
    return [eligible[i] for i in np.sort(chosen)]


def load_identity_folder(
    root: str | os.PathLike,
    min_images_per_identity: int = 1,
    max_identities: int | None = None,
    identity_subset: Literal["first", "random"] = "first",
    seed: int = 0,
    extensions: Sequence[str] | None = None,
    *,
    follow_symlinks: bool = False,
    check_images: bool = True,
) -> datasets.Dataset:
    """Load ``root/<identity>/<image>`` into a ``datasets.Dataset`` with ``image`` and ``label``.

    Rows are ordered by identity name, then file name. See :func:`select_identities` for the
    identity filters and :func:`scan_identity_folder` for ``follow_symlinks`` / ``check_images`` (what is
    skipped is logged as a warning). Works on grayscale PGM (ORL) as on JPEG (LFW).
    """
    listing = scan_identity_folder(root, min_images_per_identity, max_identities, identity_subset, seed, extensions,
                                   follow_symlinks=follow_symlinks, check_images=check_images)
    images, labels = [], []
    for label, name in enumerate(listing.names):
        images += [{"path": path, "bytes": None} for path in listing.images[name]]
        labels += [label] * len(listing.images[name])
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=identity_features(listing.names))


def _generate_identity_examples(identities: list[tuple[int, str]], extensions: Sequence[str] | None, root: str,
                                follow_symlinks: bool, exclude: frozenset) -> Iterator[dict]:
    # One directory listing at a time: memory stays at one identity's file names.
    for label, directory in identities:
        for path in list_identity_images(directory, extensions, root=root, follow_symlinks=follow_symlinks):
            if path not in exclude:
                yield {"image": {"path": path, "bytes": None}, "label": label}


def stream_identity_folder(
    root: str | os.PathLike,
    min_images_per_identity: int = 1,
    max_identities: int | None = None,
    identity_subset: Literal["first", "random"] = "first",
    seed: int = 0,
    extensions: Sequence[str] | None = None,
    *,
    follow_symlinks: bool = False,
    check_images: bool = True,
) -> datasets.IterableDataset:
    """Same rows as :func:`load_identity_folder`, as a generator-backed ``datasets.IterableDataset``.

    The folder is listed (and, with ``check_images``, checked) up front to apply the filters; only the
    per-identity counts and the paths that failed the check are kept, and file names are listed again one
    identity directory at a time while iterating. Each identity is one shard, so
    ``.shuffle(seed, buffer_size)`` shuffles identity order and then examples within the buffer,
    and DataLoader workers split identities between them.
    """
    listing = scan_identity_folder(root, min_images_per_identity, max_identities, identity_subset, seed, extensions,
                                   follow_symlinks=follow_symlinks, check_images=check_images)
    root = Path(root)
    identities = [(label, str(root / name)) for label, name in enumerate(listing.names)]
    exclude = frozenset(path for path, _ in listing.skipped)
    return datasets.IterableDataset.from_generator(
        _generate_identity_examples,
        features=identity_features(listing.names),
        gen_kwargs={"identities": identities, "extensions": None if extensions is None else tuple(extensions),
                    "root": str(root), "follow_symlinks": follow_symlinks, "exclude": exclude},
    )


def identity_disjoint_split(
    dataset: datasets.Dataset,
    validation_fraction: float | None = None,
    num_validation_identities: int | None = None,
    seed: int = 0,
    label_column: str = "label",
) -> datasets.DatasetDict:
    """Split by identity: no identity appears in both ``train`` and ``validation``.

    Give exactly one of ``validation_fraction`` (of the identities, rounded, at least 1) or
    ``num_validation_identities``. Validation identities are a seeded random choice. In each split
    the labels are re-indexed ``0..K-1`` (keeping the original sorted order) and the column becomes
    a ``ClassLabel`` with that split's names (the original names, or ``str(label)`` when the column
    was a plain integer). Each split is materialised (``datasets`` rewrites the selected rows when
    it casts the label column), which costs one pass over the rows, image bytes included.
    """
    if (validation_fraction is None) == (num_validation_identities is None):
        raise ValueError("give exactly one of validation_fraction and num_validation_identities")
    if label_column not in dataset.column_names:
        raise ValueError(f"dataset has no column {label_column!r}: {dataset.column_names}")
    labels = np.asarray(dataset[label_column], dtype=np.int64)
    identities = np.unique(labels)
    if identities.size < 2:
        raise ValueError(f"an identity-disjoint split needs >= 2 identities, found {identities.size}")
    if validation_fraction is not None:
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
        num_validation_identities = max(1, int(round(validation_fraction * identities.size)))
    if not 1 <= num_validation_identities < identities.size:
        raise ValueError(
            f"num_validation_identities must be in [1, {identities.size - 1}], got {num_validation_identities}"
        )
    feature = dataset.features[label_column]
    all_names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    chosen = np.random.default_rng(seed).choice(identities.size, size=num_validation_identities, replace=False)
    is_validation = np.zeros(identities.size, dtype=bool)
    is_validation[chosen] = True
    # New labels for all rows at once (each identity numbered within its own split), added as a
    # column of the unsplit dataset, which works whatever the other columns are.
    row_identity = np.searchsorted(identities, labels)
    rank_in_split = np.empty(identities.size, dtype=np.int64)
    for keep in (~is_validation, is_validation):
        rank_in_split[keep] = np.arange(int(keep.sum()))
    relabelled = (
        dataset.add_column("__split_label", rank_in_split[row_identity])
        .remove_columns(label_column)
        .rename_column("__split_label", label_column)
        .select_columns(dataset.column_names)
    )
    splits = {}
    for split_name, keep in (("train", ~is_validation), ("validation", is_validation)):
        names = [all_names[i] if all_names is not None else str(i) for i in identities[keep]]
        part = relabelled.select(np.flatnonzero(keep[row_identity]))
        splits[split_name] = part.cast_column(label_column, datasets.ClassLabel(names=names))
    return datasets.DatasetDict(splits)
