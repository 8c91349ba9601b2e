"""LFW-style ``pairs.txt`` pair lists (LFW View 2, ``pairsDevTest.txt``, RFW) as pair sets."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import datasets

from ._text import read_text
from .pairset import check_pair_files, make_pair_dataset

__all__ = ["LFW_FILENAME_FORMAT", "LFW_IMAGE_DIRS", "RFW_RACES", "lfw_images_root", "load_lfw_pairs", "load_rfw_pairs"]

RFW_RACES: tuple[str, ...] = ("African", "Asian", "Caucasian", "Indian")
LFW_FILENAME_FORMAT = "{name}/{name}_{number:04d}.jpg"
#: Where the images of an LFW-style ``pairs.txt`` are looked for, next to it (person folders inside).
LFW_IMAGE_DIRS: tuple[str, ...] = ("images", "lfw", "lfw-deepfunneled", ".")


def _count(field: str) -> int | None:
    """A non-negative ASCII integer of at most 18 digits (``int`` alone also takes ``"+1"``, ``"1_0"``, ``"١"``
    and raises past 4300 digits), else None."""
    return int(field) if field.isascii() and field.isdigit() and len(field) <= 18 else None


def _check_header(path: Path, header: list[int], same: np.ndarray, folds: np.ndarray) -> None:
    """The body must be ``num_folds`` runs of ``per_fold`` genuine then ``per_fold`` impostor lines."""
    num_folds, per_fold = (1, header[0]) if len(header) == 1 else header
    # Compared with the line count before anything is built: a 40-byte header can announce 1e18 pairs.
    if num_folds * 2 * per_fold == same.size:
        expected = np.tile(np.repeat([True, False], per_fold), num_folds)
        if np.array_equal(same, expected):
            return
    raise ValueError(
        f"{path}:1: header announces {num_folds} fold(s) of {per_fold} genuine + {per_fold} impostor pairs, "
        f"the body has {int(same.sum())} genuine and {int((~same).sum())} impostor pairs in "
        f"{folds.max() + 1} fold(s)"
    )


def _parse_pairs_txt(path: Path) -> tuple[list[tuple[str, int, str, int]], np.ndarray, np.ndarray]:
    """Parse a ``pairs.txt``: ``([(name1, n1, name2, n2)], is_same (P,), fold (P,))``.

    Lines ``name n1 n2`` are genuine, ``name1 n1 name2 n2`` impostor. An optional first line
    ``folds pairs_per_fold`` (or a single count, as in ``pairsDevTest.txt``) is checked against
    the body. A fold is a run of genuine lines followed by a run of impostor lines, so the fold
    index is found from the lines themselves (RFW's files have no count line). The text is decoded by
    :func:`hf_facerec.data._text.read_text` (UTF-8, BOM accepted).
    """
    text = read_text(path)
    ascii_only = text.isascii()  # then str.isdigit() means 0-9 alone: no per-field isascii() below
    lines = [(n, line.split()) for n, line in enumerate(io.StringIO(text, newline=None), 1) if line.strip()]
    if not lines:
        raise ValueError(f"{path} holds no pairs")
    header = None
    if len(lines[0][1]) <= 2 and all(_count(field) is not None for field in lines[0][1]):
        header = [int(field) for field in lines[0][1]]
        lines = lines[1:]
    pairs, same, folds = [], [], []
    fold, previous_same = 0, True
    for number, fields in lines:
        count = len(fields)
        first, second = (fields[1], fields[count - 1]) if count in (3, 4) else ("", "")
        # Plain digits only: int() alone takes "+1", "-1", "1_0" and "١" (checked inline: the hot loop).
        if not (first.isdigit() and second.isdigit() and (ascii_only or first.isascii() and second.isascii())):
            raise ValueError(
                f"{path}:{number}: expected 'name n1 n2' or 'name1 n1 name2 n2' (n: a non-negative integer), "
                f"got {' '.join(fields)!r}"
            )
        try:
            numbers = int(first), int(second)
        except ValueError:  # more than 4300 digits
            raise ValueError(f"{path}:{number}: expected 'name n1 n2' or 'name1 n1 name2 n2', an image number "
                             f"has {max(len(first), len(second))} digits") from None
        if count == 3:
            pair, is_same = (fields[0], numbers[0], fields[0], numbers[1]), True
        else:
            pair, is_same = (fields[0], numbers[0], fields[2], numbers[1]), False
        if is_same and not previous_same:
            fold += 1  # a genuine line after impostor lines starts the next fold
        previous_same = is_same
        pairs.append(pair)
        same.append(is_same)
        folds.append(fold)
    if not pairs:
        raise ValueError(f"{path} holds no pairs after its header line")
    same_array, fold_array = np.array(same), np.array(folds)
    if header is not None:
        _check_header(path, header, same_array, fold_array)
    return pairs, same_array, fold_array


def _load_pairs_txt(
    pairs_txt: Path, images_root: Path, filename_format: str, check_files: bool, group: str
) -> datasets.Dataset:
    if not pairs_txt.is_file():
        raise FileNotFoundError(f"pairs file not found: {pairs_txt}")
    pairs, same, folds = _parse_pairs_txt(pairs_txt)
    paths1 = [str(images_root / filename_format.format(name=n, number=i)) for n, i, _, _ in pairs]
    paths2 = [str(images_root / filename_format.format(name=n, number=i)) for _, _, n, i in pairs]
    if check_files:
        check_pair_files(paths1 + paths2, str(images_root))
    return make_pair_dataset(
        paths1, paths2, same, folds, group, [p[0] for p in pairs], [p[2] for p in pairs]
    )


def load_lfw_pairs(
    pairs_txt: str | os.PathLike,
    images_root: str | os.PathLike,
    filename_format: str = LFW_FILENAME_FORMAT,
    check_files: bool = True,
    group: str = "",
) -> datasets.Dataset:
    """Read LFW's official ``pairs.txt`` (View 2: ``10 300``, then per fold 300 genuine + 300 impostor).

    Image paths are ``images_root / filename_format.format(name=..., number=...)``; with
    ``check_files`` a missing image raises ``FileNotFoundError`` naming the first few. The
    ``identity1/2`` columns hold the LFW names (for per-identity or per-gender grouping). A malformed
    line, a header the body does not match, or text that is not UTF-8 raises ValueError naming ``file:line``.
    """
    return _load_pairs_txt(Path(pairs_txt), Path(images_root), filename_format, check_files, group)


def load_rfw_pairs(
    root: str | os.PathLike,
    races: Sequence[str] = RFW_RACES,
    filename_format: str = LFW_FILENAME_FORMAT,
    check_files: bool = True,
) -> datasets.Dataset:
    """Read Racial Faces in-the-Wild: ``root/txts/<race>/<race>_pairs.txt`` (LFW-like lines, 10 folds)
    with images under ``root/data/<race>/``; ``group`` is the race, folds are per race."""
    root = Path(root)
    if not races:
        raise ValueError("races must name at least one race")
    parts = [
        _load_pairs_txt(
            root / "txts" / race / f"{race}_pairs.txt", root / "data" / race, filename_format, check_files, race
        )
        for race in races
    ]
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def lfw_images_root(pairs_txt: str | os.PathLike) -> Path:
    """The image folder of an LFW ``pairs.txt``: the first of :data:`LFW_IMAGE_DIRS` next to it that
    holds person folders. FileNotFoundError listing the places looked at when none does."""
    parent = Path(pairs_txt).parent
    for folder in LFW_IMAGE_DIRS:
        images = (parent / folder).resolve()
        if images.is_dir() and any(child.is_dir() for child in images.iterdir()):
            return images
    looked = ", ".join(str(parent / folder) for folder in LFW_IMAGE_DIRS)
    raise FileNotFoundError(f"no image folder for {pairs_txt}: none of {looked} holds <Name>/<Name>_0001.jpg folders")
