"""Pair lists as CSV (``path1,path2,label`` and optional columns) as pair sets."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import datasets

from ._text import read_text
from .pairset import FOLD_MAX, check_pair_files, make_pair_dataset

__all__ = ["load_csv_pairs"]

_TRUE = {"1", "true", "yes", "same", "genuine"}
_FALSE = {"0", "false", "no", "different", "impostor"}
_REQUIRED = ("path1", "path2", "label")
_COLUMNS = (*_REQUIRED, "group", "fold", "identity1", "identity2")


def _read_rows(csv_path: Path) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    """``({column: position}, [(line, cells)])`` of the CSV; ValueError naming ``file:line`` for a bad header."""
    reader = csv.reader(io.StringIO(read_text(csv_path), newline=""))
    try:
        header = next(reader, None)
        columns = [name.strip() for name in header or []]
        duplicated = sorted({name for name in columns if name in _COLUMNS and columns.count(name) > 1})
        if duplicated:  # which copy would win is arbitrary: refuse rather than guess
            raise ValueError(f"{csv_path}:1: column(s) {duplicated} appear more than once; header is {columns}")
        missing = [name for name in _REQUIRED if name not in columns]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; header is {columns}")
        rows = [(reader.line_num, row) for row in reader if row]  # a blank line is no row
    except csv.Error as error:  # a NUL byte, an over-long field, ...: not a ValueError of its own
        raise ValueError(f"{csv_path}:{reader.line_num}: not a readable CSV: {error}") from None
    return {name: columns.index(name) for name in _COLUMNS if name in columns}, rows


def load_csv_pairs(
    csv_path: str | os.PathLike, root: str | os.PathLike | None = None, check_files: bool = True
) -> datasets.Dataset:
    """Read pairs from a CSV with header ``path1,path2,label`` and optional ``group``, ``fold``,
    ``identity1``, ``identity2`` columns (other columns are ignored).

    ``label`` is 1/0 (or true/false, same/different, genuine/impostor); a relative path is resolved
    against ``root``, or the CSV's folder when ``root`` is None. Without a ``fold`` column every
    pair is in fold 0; a fold is an integer in ``[0, FOLD_MAX]``. The text is UTF-8 (an Excel BOM is
    accepted, :func:`hf_facerec.data._text.read_text`). A known column given twice, a bad label, fold or
    empty path raises ValueError naming ``file:line``.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"pairs CSV not found: {csv_path}")
    base = Path(root) if root is not None else csv_path.parent
    where, rows = _read_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} holds no pairs")

    def cell(row: list[str], name: str) -> str:
        position = where.get(name)
        return row[position].strip() if position is not None and position < len(row) else ""

    paths1, paths2, same, folds = [], [], [], []
    for line, row in rows:
        path1, path2, label = cell(row, "path1"), cell(row, "path2"), cell(row, "label").lower()
        if not path1 or not path2:
            raise ValueError(f"{csv_path}:{line}: path1 and path2 must not be empty, got {row!r}")
        if label not in _TRUE | _FALSE:
            raise ValueError(f"{csv_path}:{line}: label must be 1/0 or true/false, got {cell(row, 'label')!r}")
        fold = cell(row, "fold") or "0"
        if not (fold.isascii() and fold.isdigit() and len(fold) <= 10 and int(fold) <= FOLD_MAX):
            raise ValueError(f"{csv_path}:{line}: fold must be an integer in [0, {FOLD_MAX}], got {fold!r}")
        paths1.append(str(base / path1))  # an absolute path stays as it is
        paths2.append(str(base / path2))
        same.append(label in _TRUE)
        folds.append(int(fold))
    if check_files:
        check_pair_files(paths1 + paths2, str(base))

    def optional(name: str) -> list[str] | None:
        return [cell(row, name) for _, row in rows] if name in where else None

    identities = optional("identity1"), optional("identity2")
    return make_pair_dataset(paths1, paths2, same, folds, optional("group"), *identities)
