"""Verification pair sets as ``datasets.Dataset``: InsightFace ``.bin``, LFW ``pairs.txt``, CSV, RFW.

:func:`load_pair_file` reads any of them by its format; :func:`pair_image_sources` lists a pair set's
distinct images. Every caller (training callbacks, calibration, quickstart, benchmarks) uses these two.

Every reader returns the one pair schema, :data:`PAIR_FEATURES`:

``image1``, ``image2``  ``datasets.Image`` (a file path or encoded bytes; nothing decoded here)
``is_same``             ``bool``, True for a genuine (same identity) pair
``fold``                ``int32``, the protocol's cross-validation fold (0 when it has none)
``group``               ``string``, e.g. the RFW race; ``""`` when there is no group
``identity1/2``         ``string``, the identity names when the protocol gives them, else ``""``
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import datasets

from ._safe_pickle import UnsafePickleError, load_restricted_pickle

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
RFW_RACES: tuple[str, ...] = ("African", "Asian", "Caucasian", "Indian")
LFW_FILENAME_FORMAT = "{name}/{name}_{number:04d}.jpg"


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
        folds: ``(P,)`` non-negative fold indices; None puts every pair in fold 0.
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


# ---- InsightFace .bin ----------------------------------------------------------------------------


def _to_bytes(item, index: int) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):  # a Python 2 str read with a text encoding
        return item.encode("latin1")
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        return item.tobytes()
    raise ValueError(f"image {index} of the .bin is a {type(item).__name__}, expected encoded bytes")


def load_bin_pairs(
    path: str | os.PathLike, encoding: str = "auto", num_folds: int = 10, group: str = ""
) -> datasets.Dataset:
    """Read an InsightFace verification ``.bin`` (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...).

    The file is a pickle of ``(bins, issame_list)``: ``2P`` encoded images, pair ``i`` being images
    ``2i`` and ``2i+1``, and ``P`` booleans. It is read with a restricted unpickler that resolves
    only numpy array/bool reconstruction (no object dtypes), ``bytes``/``bytearray`` and latin-1
    ``_codecs.encode``; any other global raises :class:`UnsafePickleError` before anything runs.

    Args:
        encoding: how Python 2 ``str`` objects are decoded: ``"auto"`` tries the default and
            falls back to ``"bytes"`` (as InsightFace does), or ``"bytes"`` / ``"latin1"`` / ``"ASCII"``.
        num_folds: contiguous folds (:func:`contiguous_folds`), 10 as in InsightFace.
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
    issame = np.asarray(issame)
    if issame.ndim != 1 or len(bins) != 2 * issame.size:
        raise ValueError(f"{path}: {len(bins)} images for {issame.size} pairs (need 2 per pair)")
    images = [_to_bytes(item, index) for index, item in enumerate(bins)]
    return make_pair_dataset(images[0::2], images[1::2], issame, contiguous_folds(issame.size, num_folds), group)


# ---- LFW-style pairs.txt (LFW View 2, RFW) -------------------------------------------------------


def _parse_pairs_txt(path: Path) -> tuple[list[tuple[str, int, str, int]], np.ndarray, np.ndarray]:
    """Parse a ``pairs.txt``: ``([(name1, n1, name2, n2)], is_same (P,), fold (P,))``.

    Lines ``name n1 n2`` are genuine, ``name1 n1 name2 n2`` impostor. An optional first line
    ``folds pairs_per_fold`` (or a single count, as in ``pairsDevTest.txt``) is checked against
    the body. A fold is a run of genuine lines followed by a run of impostor lines, so the fold
    index is found from the lines themselves (RFW's files have no count line).
    """
    with open(path, encoding="utf-8") as handle:
        lines = [(number, line.split()) for number, line in enumerate(handle, 1) if line.strip()]
    if not lines:
        raise ValueError(f"{path} holds no pairs")
    header = None
    if len(lines[0][1]) <= 2 and all(field.isdigit() for field in lines[0][1]):
        header = [int(field) for field in lines[0][1]]
        lines = lines[1:]
    pairs, same, folds = [], [], []
    fold, previous_same = 0, True
    for number, fields in lines:
        try:
            if len(fields) == 3:
                pair, is_same = (fields[0], int(fields[1]), fields[0], int(fields[2])), True
            elif len(fields) == 4:
                pair, is_same = (fields[0], int(fields[1]), fields[2], int(fields[3])), False
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{path}:{number}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {' '.join(fields)!r}"
            ) from None
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
        num_folds, per_fold = (1, header[0]) if len(header) == 1 else header
        expected = np.tile(np.repeat([True, False], per_fold), num_folds)
        if same_array.shape != expected.shape or not np.array_equal(same_array, expected):
            raise ValueError(
                f"{path}: header announces {num_folds} fold(s) of {per_fold} genuine + {per_fold} impostor pairs, "
                f"the body has {int(same_array.sum())} genuine and {int((~same_array).sum())} impostor pairs in "
                f"{fold_array.max() + 1} fold(s)"
            )
    return pairs, same_array, fold_array


def _check_files_exist(paths: Sequence[str], where: str) -> None:
    missing = [path for path in dict.fromkeys(paths) if not os.path.isfile(path)]
    if missing:
        shown = ", ".join(missing[:5])
        raise FileNotFoundError(f"{len(missing)} pair image(s) missing under {where}, e.g. {shown}")


def _load_pairs_txt(
    pairs_txt: Path, images_root: Path, filename_format: str, check_files: bool, group: str
) -> datasets.Dataset:
    if not pairs_txt.is_file():
        raise FileNotFoundError(f"pairs file not found: {pairs_txt}")
    pairs, same, folds = _parse_pairs_txt(pairs_txt)
    paths1 = [str(images_root / filename_format.format(name=n, number=i)) for n, i, _, _ in pairs]
    paths2 = [str(images_root / filename_format.format(name=n, number=i)) for _, _, n, i in pairs]
    if check_files:
        _check_files_exist(paths1 + paths2, str(images_root))
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
    ``identity1/2`` columns hold the LFW names (for per-identity or per-gender grouping).
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


# ---- CSV ----------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "same", "genuine"}
_FALSE = {"0", "false", "no", "different", "impostor"}


def load_csv_pairs(
    csv_path: str | os.PathLike, root: str | os.PathLike | None = None, check_files: bool = True
) -> datasets.Dataset:
    """Read pairs from a CSV with header ``path1,path2,label`` and optional ``group``, ``fold``,
    ``identity1``, ``identity2`` columns (other columns are ignored).

    ``label`` is 1/0 (or true/false, same/different, genuine/impostor); a relative path is resolved
    against ``root``, or the CSV's folder when ``root`` is None. Without a ``fold`` column every
    pair is in fold 0.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"pairs CSV not found: {csv_path}")
    base = Path(root) if root is not None else csv_path.parent
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in reader.fieldnames or []]
        missing = {"path1", "path2", "label"} - set(columns)
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {sorted(missing)}; header is {columns}")
        reader.fieldnames = columns
        rows = list(reader)
    if not rows:
        raise ValueError(f"{csv_path} holds no pairs")
    same, folds = [], []
    for line, row in enumerate(rows, 2):
        label = (row["label"] or "").strip().lower()
        if label not in _TRUE | _FALSE:
            raise ValueError(f"{csv_path}:{line}: label must be 1/0 or true/false, got {row['label']!r}")
        same.append(label in _TRUE)
        fold = (row.get("fold") or "0").strip()
        if not fold.isdigit():
            raise ValueError(f"{csv_path}:{line}: fold must be a non-negative integer, got {row.get('fold')!r}")
        folds.append(int(fold))
    paths1 = [str(base / row["path1"].strip()) for row in rows]  # an absolute path1 stays as it is
    paths2 = [str(base / row["path2"].strip()) for row in rows]
    if check_files:
        _check_files_exist(paths1 + paths2, str(base))

    def optional(name: str) -> list[str] | None:
        return [(row.get(name) or "").strip() for row in rows] if name in columns else None

    identities = optional("identity1"), optional("identity2")
    return make_pair_dataset(paths1, paths2, same, folds, optional("group"), *identities)


# ---- any pair file by its format; the images of a pair set ----------------------------------------

#: Where the images of an LFW-style ``pairs.txt`` are looked for, next to it (person folders inside).
LFW_IMAGE_DIRS: tuple[str, ...] = ("images", "lfw", "lfw-deepfunneled", ".")


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


def load_pair_file(path: str | os.PathLike, images: str | os.PathLike | None = None) -> datasets.Dataset:
    """The one reader of a pair set from disk, by its format: a ``.bin`` (InsightFace), a ``.csv``
    (:func:`load_csv_pairs`; relative paths against ``images`` or the CSV's folder), an LFW-style
    ``.txt`` (images under ``images``, else :func:`lfw_images_root`), a folder holding ``pairs.txt``,
    or a ``Dataset.save_to_disk`` folder.

    Raises:
        FileNotFoundError: the file (or the LFW image folder) is absent. ValueError: another format.
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
