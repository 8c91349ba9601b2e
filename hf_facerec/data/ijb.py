"""IJB-B / IJB-C template protocols in the InsightFace release layout (read only).

Layout under ``root`` (the ``IJBC`` folder, or its parent):

``loose_crop/<img>``                         the face crops
``meta/ijbc_face_tid_mid.txt``               ``img template_id media_id`` per image
``meta/ijbc_name_5pts_score.txt``            ``img x1 y1 ... x5 y5 faceness`` per image (same order)
``meta/ijbc_template_pair_label.txt``        ``template1 template2 label`` per 1:1 pair
``meta/ijbc_1N_*.csv`` (optional)            1:N gallery/probe sets, columns ``TEMPLATE_ID,SUBJECT_ID,FILENAME,...``

(``ijbb_`` for IJB-B.) Template pooling and scoring belong to the evaluation code; this module only
returns arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import datasets

__all__ = ["IJBProtocol", "IJBTemplateSet", "load_ijb", "IJB_IMAGE_FEATURES"]

IJB_IMAGE_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "template_id": datasets.Value("int64"),
        "media_id": datasets.Value("int64"),
        "landmarks": datasets.Array2D((5, 2), "float32"),
        "faceness_score": datasets.Value("float32"),
    }
)


@dataclass
class IJBTemplateSet:
    """One 1:N set (a gallery or the probes): ``(T,)`` template ids, sorted, and their subject ids."""

    template_ids: np.ndarray
    subject_ids: np.ndarray


@dataclass
class IJBProtocol:
    """The per-image metadata and the 1:1 / 1:N protocol of IJB-B or IJB-C.

    Attributes:
        name: ``"IJBB"`` or ``"IJBC"``.
        image_paths: ``M`` paths under ``loose_crop``.
        template_ids, media_ids: ``(M,)`` int64, the template and media of each image.
        landmarks: ``(M, 5, 2)`` float32, five points (eyes, nose, mouth corners) in crop pixels.
        faceness_scores: ``(M,)`` float32 detector scores (InsightFace weights features by them).
        pair_templates: ``(P, 2)`` int64 template ids of the 1:1 verification pairs.
        pair_labels: ``(P,)`` bool, True for a genuine pair.
        identification: 1:N sets by name, e.g. ``"gallery_G1"``, ``"gallery_G2"``, ``"probe_mixed"``
            (empty when the CSVs are absent).
    """

    name: str
    image_paths: list[str]
    template_ids: np.ndarray
    media_ids: np.ndarray
    landmarks: np.ndarray
    faceness_scores: np.ndarray
    pair_templates: np.ndarray
    pair_labels: np.ndarray
    identification: dict[str, IJBTemplateSet] = field(default_factory=dict)

    def to_dataset(self) -> datasets.Dataset:
        """One row per image (:data:`IJB_IMAGE_FEATURES`), for batched embedding extraction."""
        return datasets.Dataset.from_dict(
            {
                "image": [{"path": path, "bytes": None} for path in self.image_paths],
                "template_id": self.template_ids,
                "media_id": self.media_ids,
                "landmarks": self.landmarks,
                "faceness_score": self.faceness_scores,
            },
            features=IJB_IMAGE_FEATURES,
        )


def _resolve_root(root: Path, name: str) -> Path:
    for candidate in (root, root / name):
        if (candidate / "meta").is_dir():
            return candidate
    raise FileNotFoundError(f"no IJB 'meta' folder under {root} or {root / name}")


def _read_table(path: Path, dtypes: list, what: str) -> pd.DataFrame:
    """Whitespace-separated table without header, parsed straight to ``dtypes`` by pandas' C parser
    (IJB-C has 15.6M pair lines: no Python object per number)."""
    if not path.is_file():
        raise FileNotFoundError(f"IJB {what} file not found: {path}")
    try:
        # No `names`: pandas then rejects a line longer than the first, and the width check below a
        # first line of the wrong length. Nullable Int64 keeps short lines visible as NA.
        dtype = {k: ("Int64" if d is np.int64 else d) for k, d in enumerate(dtypes)}
        table = pd.read_csv(path, sep=r"\s+", header=None, dtype=dtype, engine="c")
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty {what} file") from None
    except (ValueError, TypeError, OverflowError) as error:  # ParserError is a ValueError; OverflowError: > int64
        raise ValueError(f"{path}: malformed {what} file (expected {len(dtypes)} columns per line): {error}") from None
    if table.shape[1] != len(dtypes):
        raise ValueError(f"{path}:1: expected {len(dtypes)} columns in the {what} file, found {table.shape[1]}")
    if table.isna().to_numpy().any():
        row = int(np.flatnonzero(table.isna().to_numpy().any(axis=1))[0])
        raise ValueError(f"{path}:{row + 1}: expected {len(dtypes)} columns of numbers in the {what} file (a field "
                         "is missing or NaN)")
    floats = [k for k, d in enumerate(dtypes) if d is np.float32]
    if floats:  # an inf landmark or score would pass as a number
        finite = np.isfinite(table.iloc[:, floats].to_numpy(dtype=np.float32)).all(axis=1)
        if not finite.all():
            raise ValueError(f"{path}:{int(np.flatnonzero(~finite)[0]) + 1}: a {what} value is not finite")
    return table


def _column(table: pd.DataFrame, columns, dtype) -> np.ndarray:
    return np.ascontiguousarray(table.iloc[:, columns].to_numpy(dtype=dtype))


def _read_template_set(path: Path) -> IJBTemplateSet:
    try:
        table = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except (ValueError, TypeError) as error:  # EmptyDataError, ParserError, UnicodeDecodeError: all ValueErrors
        raise ValueError(f"{path}: not a readable 1:N template CSV: {error}") from None
    table.columns = [column.strip().upper() for column in table.columns]
    if not {"TEMPLATE_ID", "SUBJECT_ID"} <= set(table.columns):
        raise ValueError(f"{path}: needs TEMPLATE_ID and SUBJECT_ID columns, has {list(table.columns)}")
    try:
        templates = table["TEMPLATE_ID"].to_numpy().astype(np.int64)
        subjects = table["SUBJECT_ID"].to_numpy().astype(np.int64)
    except (ValueError, TypeError, OverflowError) as error:
        raise ValueError(f"{path}: TEMPLATE_ID and SUBJECT_ID must be integers (int64): {error}") from None
    # One row per image: reduce to one row per template and insist each template has one subject.
    unique, first = np.unique(templates, return_index=True)
    per_template = subjects[first]
    inconsistent = subjects != per_template[np.searchsorted(unique, templates)]
    if inconsistent.any():
        template = templates[np.flatnonzero(inconsistent)[0]]
        raise ValueError(f"{path}: template {template} is listed with more than one SUBJECT_ID")
    return IJBTemplateSet(unique, per_template)


def load_ijb(root: str | os.PathLike, name: str = "IJBC", check_files: bool = True) -> IJBProtocol:
    """Read an IJB-B/IJB-C release laid out as InsightFace's ``IJB_release``.

    Args:
        root: the ``IJBC`` (``IJBB``) folder or the folder holding it.
        name: ``"IJBC"`` or ``"IJBB"`` (``"IJB-C"`` and lower case also accepted).
        check_files: verify every image listed exists under ``loose_crop`` (one ``stat`` each).
    """
    name = name.upper().replace("-", "").replace("_", "")
    if name not in ("IJBB", "IJBC"):
        raise ValueError(f"name must be 'IJBB' or 'IJBC', got {name!r}")
    base = _resolve_root(Path(root), name)
    meta, prefix = base / "meta", name.lower()

    media_path = meta / f"{prefix}_face_tid_mid.txt"
    media = _read_table(media_path, [str, np.int64, np.int64], "template/media")
    points_path = meta / f"{prefix}_name_5pts_score.txt"
    points = _read_table(points_path, [str] + [np.float32] * 11, "landmark")
    if len(media) != len(points):
        raise ValueError(f"{media_path} lists {len(media)} images but {points_path} lists {len(points)}")
    differ = np.flatnonzero(media.iloc[:, 0].to_numpy() != points.iloc[:, 0].to_numpy())
    if differ.size:
        row = int(differ[0])
        raise ValueError(
            f"image order differs at line {row + 1}: {media.iloc[row, 0]!r} in {media_path.name}, "
            f"{points.iloc[row, 0]!r} in {points_path.name}"
        )
    pairs_path = meta / f"{prefix}_template_pair_label.txt"
    pairs = _read_table(pairs_path, [np.int64] * 3, "template pair")
    labels = _column(pairs, 2, np.int64)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{pairs_path}: pair labels must be 0 or 1")

    crops = base / "loose_crop"
    if not crops.is_dir():
        raise FileNotFoundError(f"IJB image folder not found: {crops}")
    image_paths = [str(crops / image) for image in points.iloc[:, 0]]
    if check_files:
        missing = [path for path in image_paths if not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} IJB image(s) missing under {crops}, e.g. {', '.join(missing[:5])}")

    identification = {
        csv_path.stem[len(f"{prefix}_1N_") :]: _read_template_set(csv_path)
        for csv_path in sorted(meta.glob(f"{prefix}_1N_*.csv"))
    }
    return IJBProtocol(
        name=name,
        image_paths=image_paths,
        template_ids=_column(media, 1, np.int64),
        media_ids=_column(media, 2, np.int64),
        landmarks=_column(points, slice(1, 11), np.float32).reshape(-1, 5, 2),
        faceness_scores=_column(points, 11, np.float32),
        pair_templates=_column(pairs, [0, 1], np.int64),
        pair_labels=labels.astype(bool),
        identification=identification,
    )
