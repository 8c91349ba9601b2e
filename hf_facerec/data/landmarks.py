"""Reader of 68-point landmark sets in the ``labels.csv`` + ``metadata.csv`` layout (300-W here: ``file,x0,y0,...,
x67,y67`` in crop pixels, and ``file,subset,split_300w,...``)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LandmarkSet", "read_landmarks"]


@dataclass
class LandmarkSet:
    """``paths`` (N,); ``points`` (N, P, 2) float32 pixel (x, y); ``subset`` / ``split`` (N,) str ("" if none)."""

    paths: list[str]
    points: np.ndarray
    subset: np.ndarray
    split: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, index) -> "LandmarkSet":
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index, dtype=np.int64)
        return LandmarkSet([self.paths[i] for i in index], self.points[index], self.subset[index], self.split[index])


def _rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: cannot read ({error})") from error


def read_landmarks(folder: str | os.PathLike, labels: str = "labels.csv", metadata: str | None = "metadata.csv",
                   images: str = "images", check_files: bool = True) -> LandmarkSet:
    """``folder/labels`` -> points; ``folder/metadata`` (optional) -> ``subset`` and ``split_300w`` columns."""
    folder = Path(folder)
    rows = _rows(folder / labels)
    if not rows or "file" not in rows[0]:
        raise ValueError(f"{folder / labels}: needs a 'file' column and at least one row")
    n_points = sum(1 for c in rows[0] if c.startswith("x") and c[1:].isdigit())
    if n_points == 0 or any(f"y{i}" not in rows[0] for i in range(n_points)):
        raise ValueError(f"{folder / labels}: needs x0,y0,...,xP,yP columns")
    try:
        points = np.array([[[float(r[f"x{i}"]), float(r[f"y{i}"])] for i in range(n_points)] for r in rows],
                          dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{folder / labels}: a coordinate is not a number ({error})") from error
    files = [r["file"] for r in rows]
    meta = {r["file"]: r for r in _rows(folder / metadata)} if metadata and (folder / metadata).is_file() else {}
    subset = np.array([meta.get(f, {}).get("subset", "") for f in files], dtype=object)
    split = np.array([meta.get(f, {}).get("split_300w", "") for f in files], dtype=object)
    paths = [str(folder / images / f) for f in files]
    if check_files:
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{folder / labels}: {len(missing)} listed image(s) missing, e.g. {missing[0]}")
    return LandmarkSet(paths, points, subset, split)
