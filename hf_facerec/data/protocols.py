"""Identity-disjoint train/test protocols on a verification pair set (e.g. "train on LFW folds 1-5, test on 6-10").

A pair set in the schema of :mod:`hf_facerec.data.pairs` carries ``fold``, ``identity1`` and ``identity2``
columns. :func:`split_identities_by_folds` turns it into training identities (those of the training folds'
pairs, optionally plus identities that appear in no pair) that are checked to be disjoint from every identity of
the test folds' pairs; :func:`select_folds` keeps the test pairs; :func:`link_identity_subset` exposes the chosen
identities of an identity folder as a folder of symbolic links, so any ``--train_dir`` consumer (``hf-facerec
train``, :func:`~hf_facerec.data.folders.load_identity_folder`) trains on exactly them without copying images.

Fold values are the ones in the ``fold`` column (``load_lfw_pairs``: 0-based, LFW's "fold 1" is 0).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

__all__ = [
    "IdentityLeakError",
    "IdentitySplit",
    "link_identity_subset",
    "pair_identities",
    "parse_fold_range",
    "select_folds",
    "split_identities_by_folds",
]


class IdentityLeakError(ValueError):
    """A training identity also appears in a test pair (the protocol would not be identity-disjoint)."""


@dataclass(frozen=True)
class IdentitySplit:
    """Training identities chosen from a pair set's folds.

    Attributes:
        train: sorted training identities (after the image-count filter when counts were given).
        test: sorted identities of the test folds' pairs.
        from_train_folds: identities of the training folds' pairs (before any filter).
        unpaired: identities of the identity folder that appear in no pair at all (empty without counts).
        dropped_few_images: candidate training identities removed for having fewer than ``min_images``.
        images: training identity -> image count (empty without counts).
    """

    train: tuple[str, ...]
    test: tuple[str, ...]
    from_train_folds: tuple[str, ...]
    unpaired: tuple[str, ...] = ()
    dropped_few_images: tuple[str, ...] = ()
    images: Mapping[str, int] = field(default_factory=dict)

    @property
    def num_train_images(self) -> int:
        return int(sum(self.images.values()))

    def summary(self) -> dict:
        """Counts for a report (JSON-serialisable)."""
        return {
            "train_identities": len(self.train),
            "train_images": self.num_train_images,
            "identities_in_train_fold_pairs": len(self.from_train_folds),
            "identities_in_test_fold_pairs": len(self.test),
            "unpaired_identities_in_folder": len(self.unpaired),
            "dropped_few_images": len(self.dropped_few_images),
            "train_test_overlap": len(set(self.train) & set(self.test)),
        }


def _fold_mask(dataset: datasets.Dataset, folds: Iterable[int]) -> np.ndarray:
    """(P,) bool: pairs whose ``fold`` is in ``folds``; ValueError for a fold the set does not have."""
    if "fold" not in dataset.column_names:
        raise ValueError(f"the pair set has no 'fold' column: {dataset.column_names}")
    wanted = np.unique(np.asarray(list(folds), dtype=np.int64))
    if wanted.size == 0:
        raise ValueError("folds is empty")
    present = np.asarray(dataset["fold"], dtype=np.int64)
    unknown = np.setdiff1d(wanted, np.unique(present))
    if unknown.size:
        raise ValueError(f"fold(s) {unknown.tolist()} not in the pair set (it has {np.unique(present).tolist()})")
    return np.isin(present, wanted)


def pair_identities(dataset: datasets.Dataset, folds: Iterable[int] | None = None) -> set[str]:
    """Identity names of the pairs (of ``folds`` only, when given): ``identity1`` and ``identity2`` together.

    Raises ValueError when the set lacks the identity columns or a selected pair has an empty name (a protocol
    without identity labels, e.g. a ``.bin`` set, cannot define identity-disjoint splits).
    """
    missing = {"identity1", "identity2"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"the pair set lacks {sorted(missing)}: identity-disjoint splits need identity names")
    keep = np.ones(len(dataset), bool) if folds is None else _fold_mask(dataset, folds)
    names = np.concatenate([np.asarray(dataset["identity1"], dtype=object)[keep],
                            np.asarray(dataset["identity2"], dtype=object)[keep]])
    if names.size and (names == "").any():
        raise ValueError("some selected pairs have no identity name (identity1/identity2 empty)")
    return set(names.tolist())


def select_folds(dataset: datasets.Dataset, folds: Iterable[int]) -> datasets.Dataset:
    """The pairs whose ``fold`` is in ``folds`` (fold values kept, so k-fold evaluation uses them)."""
    return dataset.select(np.flatnonzero(_fold_mask(dataset, folds)))


def split_identities_by_folds(
    dataset: datasets.Dataset,
    train_folds: Iterable[int],
    test_folds: Iterable[int],
    image_counts: Mapping[str, int] | None = None,
    min_images: int = 1,
    include_unpaired: bool = False,
) -> IdentitySplit:
    """Training identities = those of ``train_folds`` pairs (+ unpaired ones), never one of ``test_folds``.

    Args:
        dataset: a pair set with ``fold``, ``identity1``, ``identity2`` (e.g. ``load_lfw_pairs``).
        train_folds, test_folds: disjoint fold values.
        image_counts: identity -> number of images in the training identity folder. When given, identities
            without images are an error, ``min_images`` filters, and ``include_unpaired`` can add identities of
            the folder that appear in no pair of the whole set.
        min_images: keep training identities with at least this many images (2: each can form a genuine pair).
        include_unpaired: add the folder's identities that no pair (of any fold) mentions.

    Raises:
        ValueError: overlapping fold lists, bad ``min_images``, ``include_unpaired`` without counts, or a
            training identity missing from ``image_counts``.
        IdentityLeakError: an identity is in both a training-fold pair and a test-fold pair (LFW View 2 folds
            are identity-disjoint, so this flags a wrong file or wrong fold assignment).
    """
    train_folds, test_folds = sorted(set(train_folds)), sorted(set(test_folds))
    overlap_folds = set(train_folds) & set(test_folds)
    if overlap_folds:
        raise ValueError(f"train_folds and test_folds share fold(s) {sorted(overlap_folds)}")
    if min_images < 1:
        raise ValueError(f"min_images must be >= 1, got {min_images}")
    if include_unpaired and image_counts is None:
        raise ValueError("include_unpaired needs image_counts (the identities of the image folder)")
    from_train, test = pair_identities(dataset, train_folds), pair_identities(dataset, test_folds)
    leaked = from_train & test
    if leaked:
        raise IdentityLeakError(
            f"{len(leaked)} identities appear in both train and test fold pairs, e.g. {sorted(leaked)[:5]}"
        )
    unpaired: set[str] = set()
    if image_counts is not None:
        absent = sorted(from_train - set(image_counts))
        if absent:
            raise ValueError(f"{len(absent)} training identities have no images in the folder, e.g. {absent[:5]}")
        unpaired = set(image_counts) - pair_identities(dataset)
    candidates = from_train | (unpaired if include_unpaired else set())
    dropped: set[str] = set()
    if image_counts is not None:
        dropped = {name for name in candidates if image_counts[name] < min_images}
    train = sorted(candidates - dropped)
    if not train:
        raise ValueError(f"no training identity left (min_images={min_images})")
    images = {name: int(image_counts[name]) for name in train} if image_counts is not None else {}
    return IdentitySplit(tuple(train), tuple(sorted(test)), tuple(sorted(from_train)), tuple(sorted(unpaired)),
                         tuple(sorted(dropped)), images)


def link_identity_subset(src_root: str | os.PathLike, dst_root: str | os.PathLike,
                         identities: Iterable[str]) -> Path:
    """Make ``dst_root/<identity>`` symbolic links to ``src_root/<identity>`` for exactly ``identities``.

    The result is an identity folder (``root/<identity>/<image>``) restricted to a list, without copying images.
    ``dst_root`` must be absent or hold only such links (it is then made to match exactly: stale links are
    removed), so re-running with another list is safe and nothing else is ever deleted.

    Raises:
        FileNotFoundError: ``src_root`` or one identity folder missing.
        ValueError: an empty list, a name with a path separator, or ``dst_root`` holding something else.
    """
    src_root, dst_root = Path(src_root).resolve(), Path(dst_root)
    if not src_root.is_dir():
        raise FileNotFoundError(f"identity folder root not found: {src_root}")
    names = sorted(set(identities))
    if not names:
        raise ValueError("identities is empty")
    bad = [name for name in names if not name or name in (".", "..") or "/" in name or os.sep in name]
    if bad:
        raise ValueError(f"identity names must be plain folder names, got {bad[:5]}")
    missing = [name for name in names if not (src_root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} identities have no folder under {src_root}, e.g. {missing[:5]}")
    dst_root.mkdir(parents=True, exist_ok=True)
    existing = {entry.name: entry for entry in os.scandir(dst_root)}
    foreign = [name for name, entry in existing.items() if not entry.is_symlink()]
    if foreign:
        raise ValueError(f"{dst_root} holds entries that are not identity links (e.g. {foreign[:3]}); use an "
                         "empty or new folder")
    wanted = set(names)
    for name, entry in existing.items():
        target = src_root / name
        if name not in wanted or os.readlink(entry.path) != str(target):
            os.unlink(entry.path)  # stale: another list or another source; re-made below if wanted
    for name in names:
        link = dst_root / name
        if not link.is_symlink():
            link.symlink_to(src_root / name, target_is_directory=True)
    return dst_root


def parse_fold_range(text: str) -> list[int]:
    """``"1-5"`` / ``"1,3,5"`` / ``"6-8,10"`` (1-based protocol fold numbers) -> 0-based fold values, sorted.

    Raises ValueError on malformed text, a number < 1, or a reversed range.
    """
    folds: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        low, sep, high = part.partition("-")
        try:
            start, stop = (int(low), int(high)) if sep else (int(part), int(part))
        except ValueError as error:
            raise ValueError(f"folds must look like '1-5' or '1,3,5', got {text!r}") from error
        if start < 1 or stop < start:
            raise ValueError(f"fold numbers are 1-based and ranges ascending, got {part!r} in {text!r}")
        folds.update(range(start - 1, stop))
    return sorted(folds)
