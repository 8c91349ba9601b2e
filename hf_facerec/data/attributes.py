"""Readers of face attribute labels: UTKFace file names (age, gender, race) and ``labels.csv`` tables (JAFFE
expressions, CMU Faces head pose, ...: a ``file`` column next to any label columns).

Both return an :class:`AttributeTable`: image paths and one array per label column, in sorted file order.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .listing import list_folder_images

__all__ = ["UTKFACE_GENDERS", "UTKFACE_RACES", "AttributeTable", "parse_utkface_name", "read_label_table",
           "read_utkface"]

UTKFACE_GENDERS = ("male", "female")
UTKFACE_RACES = ("white", "black", "asian", "indian", "others")
# age_gender_race_time.jpg.chip.jpg; the race field is missing in a few files of the official release
_UTK = re.compile(r"^(\d{1,3})_([01])_(?:([0-4])_)?\d+")


@dataclass
class AttributeTable:
    """``paths`` (N,) image files; ``labels``: column name -> (N,) array (int, float or str; -1 / "" = missing)."""

    paths: list[str]
    labels: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, index) -> "AttributeTable":
        """The rows ``index`` (indices or a boolean mask)."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index, dtype=np.int64)
        return AttributeTable([self.paths[i] for i in index], {k: v[index] for k, v in self.labels.items()})


def parse_utkface_name(name: str) -> dict[str, int]:
    """``"25_1_2_2017....jpg.chip.jpg"`` -> ``{"age": 25, "gender": 1, "race": 2}`` (race -1 when the field is
    missing). Raises ``ValueError`` naming the file for any other name."""
    match = _UTK.match(os.path.basename(name))
    if match is None:
        raise ValueError(f"{name}: not a UTKFace file name (age_gender_race_time.jpg)")
    age, gender, race = match.groups()
    return {"age": int(age), "gender": int(gender), "race": -1 if race is None else int(race)}


def read_utkface(folder: str | os.PathLike, strict: bool = False) -> AttributeTable:
    """The images of a UTKFace folder (any depth) with their ``age``, ``gender`` and ``race`` (-1 if missing).

    Files whose name does not parse are skipped, or with ``strict`` raise ``ValueError``.
    """
    paths, rows = [], []
    for path in list_folder_images(folder, recursive=True).images:
        try:
            rows.append(parse_utkface_name(path))
        except ValueError:
            if strict:
                raise
            continue
        paths.append(path)
    if not paths:
        raise ValueError(f"{folder}: no UTKFace image (age_gender_race_time.jpg names)")
    return AttributeTable(paths, {key: np.array([r[key] for r in rows], dtype=np.int64)
                                  for key in ("age", "gender", "race")})


def read_label_table(folder: str | os.PathLike, table: str = "labels.csv", images: str = "images",
                     check_files: bool = True) -> AttributeTable:
    """``folder/table`` (a CSV with a ``file`` column) -> paths ``folder/images/<file>`` + its other columns as
    string arrays (JAFFE: expression, subject; CMU Faces: pose, expression, eyes, subject)."""
    folder = Path(folder)
    source = folder / table
    try:
        with open(source, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{source}: cannot read the label table ({error})") from error
    if not rows or "file" not in rows[0]:
        raise ValueError(f"{source}: needs a header with a 'file' column and at least one row")
    rows.sort(key=lambda r: r["file"])
    paths = [str(folder / images / r["file"]) for r in rows]
    if check_files:
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{source}: {len(missing)} listed image(s) missing, e.g. {missing[0]}")
    columns = [c for c in rows[0] if c != "file"]
    return AttributeTable(paths, {c: np.array([r[c] or "" for r in rows], dtype=object) for c in columns})
